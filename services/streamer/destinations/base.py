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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from libs.common.ssrf import UnsafeDestination, check_url_syntax
from services.alerter.webhook import classify

Outcome = Literal["delivered", "retry", "failed"]
Violations = list[dict[str, str]]
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


# ---- config validation -------------------------------------------------------------------


def bad(key: str, message: str) -> dict[str, str]:
    return {"field": f"config.{key}", "message": message}


class Checker:
    """Reads a config object key by key, collecting violations instead of stopping at the first."""

    def __init__(self, config: object, allowed: Sequence[str]) -> None:
        self.violations: Violations = []
        self.out: dict[str, Any] = {}
        self.is_object = isinstance(config, dict)
        if not isinstance(config, dict):
            self.raw: dict[str, Any] = {}
            self.violations.append({"field": "config", "message": "config must be a JSON object"})
            return
        self.raw = config
        self.violations.extend(
            bad(str(k), f"{k} is not a setting of this destination type")
            for k in config
            if k not in allowed
        )

    def fail(self, key: str, message: str) -> None:
        # a config that is no object has one violation, not one per missing key
        if self.is_object:
            self.violations.append(bad(key, message))

    def string(
        self,
        key: str,
        *,
        default: str | None = None,
        required: bool = False,
        max_len: int = 256,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
    ) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, f"{key} is required")
                return None
            if default is not None:
                self.out[key] = default
            return default
        if not isinstance(value, str) or not value or len(value) > max_len or "\x00" in value:
            self.fail(key, f"{key} must be a non-empty string of at most {max_len} characters")
            return None
        if pattern is not None and pattern.match(value) is None:
            self.fail(key, f"{key} {hint or 'has an invalid format'}")
            return None
        self.out[key] = value
        return value

    def secret(self, key: str, *, required: bool = True, max_len: int = 1024) -> str | None:
        """Secret values are never echoed back in a message."""
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, f"{key} is required")
            return None
        if (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > max_len
            or any(c in value for c in "\r\n\x00")
        ):
            self.fail(key, f"{key} must be a non-empty single-line string")
            return None
        self.out[key] = value
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"{key} must be true or false")
            return default
        self.out[key] = value
        return value

    def url(self, key: str, *, required: bool = True, base: bool = False) -> str | None:
        """An absolute http(s) URL (syntax only); ``base`` ones take no query and lose a final '/'."""
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, f"{key} is required")
            return None
        if not isinstance(value, str):
            self.fail(key, f"{key} must be an absolute http(s) URL")
            return None
        try:
            normal = check_url_syntax(value)
        except UnsafeDestination as exc:
            # the reason starts with "url:" whatever the key is called
            self.fail(key, f"{key}{exc.reason.removeprefix('url')}")
            return None
        if base:
            parsed = httpx.URL(normal)
            if parsed.query:
                self.fail(key, f"{key} must be a base URL without a query string")
                return None
            normal = normal.rstrip("/")
        self.out[key] = normal
        return normal


def without_secrets(config: Mapping[str, Any], secret_fields: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in secret_fields}


# ---- batches -----------------------------------------------------------------------------


def split_by(
    events: Sequence[Event],
    *,
    max_events: int,
    max_bytes: int | None,
    size: Callable[[Event], int],
    overhead: int = 0,
) -> list[list[Event]]:
    """Greedy, order-keeping cut; an event larger than ``max_bytes`` travels alone.

    ``size(event)`` counts the event with its separator; ``overhead`` is a
    request's fixed framing (``[]`` of a JSON array).
    """
    batches: list[list[Event]] = []
    current: list[Event] = []
    used = overhead
    for event in events:
        n = size(event) if max_bytes is not None else 0
        too_big = max_bytes is not None and current and used + n > max_bytes
        if len(current) >= max_events or too_big:
            batches.append(current)
            current, used = [], overhead
        current.append(event)
        used += n
    if current:
        batches.append(current)
    return batches


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
        if isinstance(value, str) and value:
            text = text.replace(value, "***")
    return text


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
