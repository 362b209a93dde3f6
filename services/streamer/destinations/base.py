"""What every log-stream destination is: the contract, one attempt's result, shared helpers.

A destination turns a batch of served events (the canonical fields plus
``hash``, ``ip_country``, ``ip_city``; every one carries ``seq``, ``hash``
and ``prev_hash``) into the wire format its receiver documents, and sends
it once. Retrying, backing off, pausing a stream and dead-lettering are the
caller's: ``send`` only says what the attempt means.

TLS verification is the client's, not the request's: for a config with
``verify_tls: false`` the caller MUST pass a client built on
``GuardedTransport(allow_private=..., verify=False)``; ``send`` uses the
client it is given as it is.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from libs.common.ssrf import UnsafeDestination
from services.alerter.webhook import classify
from services.streamer.destinations.checks import Violations
from services.streamer.formats import ocsf

Outcome = Literal["delivered", "retry", "failed"]
Event = dict[str, Any]

USER_AGENT = "Chainlog-Streamer/1"
#: Bounds one whole attempt (connect, send, answer), not each read: a
#: receiver that trickles bytes cannot hold a stream worker.
ATTEMPT_TIMEOUT_S = 30.0
#: What is read of an answer: enough for an Elasticsearch ``_bulk`` answer
#: about 1,000 items with errors, and no more from a hostile receiver.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
_ERROR_MAX = 200
_GZIP_LEVEL = 6


@dataclass(frozen=True)
class Result:
    """One attempt. ``error`` is short and MUST NOT contain a secret or a URL.

    ``delivered``: the first ``delivered`` events of the batch are stored
    by the receiver. After ``retry`` the caller resends ``events[delivered:]``
    (with the same ``batch_id`` when that is the whole batch); after
    ``delivered`` it equals ``len(events)``.
    """

    outcome: Outcome
    status: int | None
    error: str | None
    delivered: int


class Destination(Protocol):
    """A log-stream destination type; one stateless instance serves every stream of that type."""

    @property
    def type(self) -> str: ...

    @property
    def SECRET_FIELDS(self) -> tuple[str, ...]:
        """Config keys the caller MUST store encrypted and MUST NOT return."""
        ...

    @property
    def MAX_BATCH(self) -> int: ...

    @property
    def MAX_BYTES(self) -> int | None:
        """Uncompressed bytes a request may carry, where the receiver sets a limit."""
        ...

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        """The config normalised with its defaults, and every problem as ``config.<key>``.

        Unknown keys are refused. URLs get the syntax check only: the caller
        resolves ``endpoint(config)`` with ``ssrf.check_url``. For an update
        the caller merges the stored config (secrets included) with the
        change first, so a secret need not be sent again.
        """
        ...

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The config without its secrets, for API answers."""
        ...

    def endpoint(self, config: Mapping[str, Any]) -> str:
        """The URL whose host a delivery connects to (for the caller's SSRF check)."""
        ...

    def split(self, events: Sequence[Event]) -> list[list[Event]]:
        """``events`` in order, cut into batches within ``MAX_BATCH`` and ``MAX_BYTES``."""
        ...

    async def send(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, Any],
        events: Sequence[Event],
        *,
        batch_id: str,
        timeout: float = ATTEMPT_TIMEOUT_S,  # noqa: ASYNC109 (a timeout is an outcome here)
    ) -> Result:
        """Deliver ``events`` (one workspace, seq order) once; never raises for
        what the network or the receiver does.

        ``batch_id`` MUST be the same on every retry of one batch: receivers
        that can deduplicate (webhook-id, S3 object key) use it.
        """
        ...


# ---- configs and records ------------------------------------------------------------------


def without_secrets(config: Mapping[str, Any], secret_fields: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in secret_fields}


def shaper(config: Mapping[str, Any]) -> Callable[[Event], Event]:
    """What a JSON destination sends for one event under the config's ``format``.

    ``chainlog`` (the default): the served event as it is. ``ocsf``: its
    OCSF 1.1.0 record (``formats.ocsf``), classed by ``ocsf_mappings``
    first. Either way the event id, ``seq``, ``hash`` and ``prev_hash``
    travel with it.
    """
    if config.get("format") == "ocsf":
        rules = config.get("ocsf_mappings") or ()
        return lambda event: ocsf.record(event, rules)
    return lambda event: event


# ---- batches -----------------------------------------------------------------------------


def cut(
    sizes: Sequence[int], *, max_events: int, max_bytes: int | None, overhead: int = 0
) -> list[range]:
    """Greedy, order-keeping cut of items of ``sizes`` into index ranges; an item
    larger than ``max_bytes`` travels alone.

    ``sizes[i]`` counts item ``i`` with its separator; ``overhead`` is a
    request's fixed framing (``[]`` of a JSON array).
    """
    ranges: list[range] = []
    start, used = 0, overhead
    for i, n in enumerate(sizes):
        too_big = max_bytes is not None and i > start and used + n > max_bytes
        if i - start >= max_events or too_big:
            ranges.append(range(start, i))
            start, used = i, overhead
        used += n
    if start < len(sizes):
        ranges.append(range(start, len(sizes)))
    return ranges


def split_by(
    events: Sequence[Event],
    *,
    max_events: int,
    max_bytes: int | None,
    size: Callable[[Event], int],
    overhead: int = 0,
) -> list[list[Event]]:
    """``events`` cut by ``cut``, ``size(event)`` counting an event with its separator."""
    sizes = [size(e) for e in events] if max_bytes is not None else [0] * len(events)
    ranges = cut(sizes, max_events=max_events, max_bytes=max_bytes, overhead=overhead)
    return [list(events[r.start : r.stop]) for r in ranges]


async def send_parts(
    ranges: Sequence[range], send_one: Callable[[range], Awaitable[Result]]
) -> Result:
    """Send a batch as several requests, in order; stop at the first that is not delivered.

    ``send_one(part)`` reports ``delivered`` within its part; the result
    counts the parts before it too, so the caller resends only the rest
    (for receivers that cannot de-duplicate). Used when a receiver's limit
    per request is smaller than what the caller's batch may encode to.
    """
    delivered = 0
    status: int | None = None
    for part in ranges:
        result = await send_one(part)
        if result.outcome != "delivered":
            return Result(result.outcome, result.status, result.error, delivered + result.delivered)
        delivered += len(part)
        status = result.status
    return Result("delivered", status, None, delivered)


def workspace_of(events: Sequence[Event]) -> str:
    """The one workspace of a batch; a batch mixing workspaces is a caller's bug."""
    ids = {str(e["workspace_id"]) for e in events}
    if len(ids) != 1:
        raise ValueError(f"a batch holds the events of one workspace, got {len(ids)}")
    return ids.pop()


def compress(body: bytes) -> bytes:
    # mtime=0: the same batch compresses to the same bytes on every attempt
    return gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)


# ---- one request ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back, or why nothing did. ``refused``: the URL itself is refused."""

    status: int | None
    body: bytes
    error: str | None
    refused: bool = False

    def result(self, delivered: int, *, total: int) -> Result:
        """The plain status-based classification (``webhook.classify``)."""
        if self.refused:
            return Result("failed", None, self.error, delivered)
        outcome = classify(self.status, self.error)
        if outcome == "delivered":
            return Result("delivered", self.status, None, total)
        return Result(outcome, self.status, self.error or f"HTTP {self.status}", delivered)


def redact(text: str, config: Mapping[str, Any], secret_fields: Sequence[str]) -> str:
    """``text`` from a receiver with the config's secrets cut out: some echo what they got."""
    for key in secret_fields:
        value = config.get(key)
        # a secret object (OTLP's headers) hides each of its values
        for secret in value.values() if isinstance(value, Mapping) else [value]:
            if isinstance(secret, str) and secret:
                text = text.replace(secret, "***")
    return text


def explained(result: Result, detail: str) -> Result:
    """``result`` with the receiver's own words (``HTTP 403: ...``) when it refused and said some.

    ``detail`` MUST already have the config's secrets cut out (``redact``).
    """
    if result.outcome == "delivered" or not detail or result.status is None:
        return result
    message = shorten(f"HTTP {result.status}: {detail}")
    return Result(result.outcome, result.status, message, result.delivered)


def shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 1] + "…"


def _describe(exc: Exception, timeout: float) -> str:
    # As the alert webhooks: a connect error's text comes from the OS or the
    # resolver (a host name at most), never the URL with its path or query.
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timeout: no complete answer within {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return shorten(f"connection failed: {exc}")
    if isinstance(exc, httpx.RemoteProtocolError):
        return "invalid HTTP answer"
    if isinstance(exc, httpx.DecodingError):
        return "undecodable answer"
    return f"request failed: {type(exc).__name__}"


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 (a timeout is an outcome here, not an exception)
    read_answer: bool = True,
) -> Answer:
    """One request; never raises for what the network or the receiver does.

    At most ``MAX_ANSWER_BYTES`` of the answer are read (none unless
    ``read_answer``); a longer answer is cut, which a caller parsing it
    sees as an unreadable answer.
    """
    status: int | None = None
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                method,
                url,
                content=content,
                headers={"user-agent": USER_AGENT, **headers},
                timeout=timeout,
            ) as response:
                status = response.status_code
                if read_answer:
                    size = 0
                    async for chunk in response.aiter_bytes():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > MAX_ANSWER_BYTES:
                            break
    except UnsafeDestination as exc:
        return Answer(None, b"", shorten(f"refused: {exc.reason}"), refused=True)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        return Answer(None, b"", "refused: url: must be an absolute http(s) URL", refused=True)
    except (TimeoutError, httpx.HTTPError) as exc:
        if status is None or isinstance(exc, TimeoutError | httpx.TimeoutException):
            return Answer(None, b"", _describe(exc, timeout))
        # the status arrived but the answer broke off: the status still counts
        return Answer(status, b"".join(chunks), None)
    return Answer(status, b"".join(chunks)[:MAX_ANSWER_BYTES], None)
