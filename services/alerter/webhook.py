"""Alert webhooks: Standard Webhooks signing, one delivery attempt, the retry policy.

Signing follows https://www.standardwebhooks.com: the signed content is
``"{webhook-id}.{webhook-timestamp}.{body}"``, the key is the base64 part
of the endpoint's ``whsec_`` secret, the signature ``v1,<base64 HMAC-SHA256>``.
Any Standard Webhooks library verifies our deliveries; ``docs/webhooks.md``
shows a stdlib-only check for receivers (and a test runs it).

A delivery is at least once: ``webhook-id`` MUST stay the same on every
retry of one message so receivers can drop duplicates; the timestamp and
signature are made fresh for each attempt.

No function here logs, and no ``Attempt`` carries, a secret or the URL
(receivers sometimes put a token in the query string).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

from libs.common.ssrf import UnsafeDestination

SECRET_PREFIX = "whsec_"
USER_AGENT = "Chainlog-Webhooks/1"
EVENT_TYPE = "alert.triggered"
CHECKPOINT_TYPE = "checkpoint.signed"
ALERT_FIELDS = ("id", "rule_id", "rule_name", "rule_type", "event_id", "reason", "triggered_at")

#: Ten attempts over at least about 2.7 hours (at most 5.5): a receiver that
#: is down for a deploy or an incident still gets the alert.
MAX_ATTEMPTS = 10
BACKOFF_BASE_S = 5.0
BACKOFF_FACTOR = 3.0
BACKOFF_CAP_S = 7200.0
_ERROR_MAX = 200

Outcome = Literal["delivered", "retry", "failed"]
_RETRY_STATUSES = frozenset({408, 425, 429})
_RNG = random.Random()


class InvalidSignature(ValueError):
    """The request is not a valid signed delivery: headers, timestamp or signature."""


def new_endpoint_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ValueError("a webhook secret is 'whsec_' followed by non-empty base64")
    return key


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    return "v1," + base64.b64encode(_mac(_key(secret), msg_id, timestamp, body)).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> None:
    """Raise ``InvalidSignature`` unless one ``v1`` signature in the headers matches.

    Header names are matched case-insensitively. ``now`` (epoch seconds)
    defaults to the system clock.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    raw_ts = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (msg_id and raw_ts and signatures):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(raw_ts)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise InvalidSignature("webhook-timestamp is outside the tolerance")
    expected = _mac(_key(secret), msg_id, timestamp, body)
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            return
    raise InvalidSignature("no matching signature")


def payload(*, workspace_id: str, alert: Mapping[str, Any], event: Mapping[str, Any]) -> bytes:
    """The JSON body of ``alert.triggered``, with exactly the alert fields documented."""
    return orjson.dumps(
        {
            "type": EVENT_TYPE,
            "workspace_id": workspace_id,
            "alert": {name: alert[name] for name in ALERT_FIELDS},
            "event": dict(event),
        }
    )


def checkpoint_payload(*, workspace_id: str, checkpoint: Mapping[str, Any]) -> bytes:
    """The JSON body of ``checkpoint.signed``: the checkpoint as the API serves it."""
    return orjson.dumps(
        {"type": CHECKPOINT_TYPE, "workspace_id": workspace_id, "checkpoint": dict(checkpoint)}
    )


def backoff_seconds(
    attempt: int, rng: random.Random | None = None, base: float = BACKOFF_BASE_S
) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): equal jitter.

    Uniform in ``[c / 2, c]`` with ``c = min(cap, base * factor ** (attempt - 1))``:
    spread out, so receivers recovering from an outage are not hit by every
    sender at once, yet never so short that the attempts run out early.
    """
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    # The cap is reached long before the exponent could overflow a float.
    ceiling = min(BACKOFF_CAP_S, base * BACKOFF_FACTOR ** min(attempt - 1, 64))
    return (rng or _RNG).uniform(ceiling / 2, ceiling)


def classify(status: int | None, error: str | None) -> Outcome:
    """What one attempt means for the message.

    No status (timeout, refused connection, broken response: ``error`` says
    which) is worth another try, as are 408, 425, 429 and 5xx. Any other
    status is the receiver's final word: 3xx too, since following a redirect
    would bypass the SSRF check.
    """
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    if status in _RETRY_STATUSES or 500 <= status < 600:
        return "retry"
    return "failed"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST. ``outcome`` is ``classify(status, error)``, except a URL the
    client refuses (SSRF guard at connect time, malformed URL): ``failed``."""

    status: int | None
    error: str | None
    duration_ms: int
    outcome: Outcome


def _describe(exc: Exception, timeout: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timeout: no complete answer within {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {exc}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"invalid HTTP answer: {exc}"
    return f"request failed: {type(exc).__name__}"


async def post(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    msg_id: str,
    body: bytes,
    *,
    timeout: float,  # noqa: ASYNC109 (a timeout is an outcome here, not an exception)
    timestamp: int | None = None,
) -> Attempt:
    """POST ``body`` signed now; never raises for what the network or receiver does.

    ``timeout`` bounds the whole attempt, not each read: a receiver that
    trickles bytes cannot hold a delivery worker. The response body is never
    read. Use ``libs.common.ssrf.guarded_client`` as ``client`` outside tests.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    request_headers = headers(secret, msg_id, ts, body)
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    refused = False
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                "POST", url, content=body, headers=request_headers, timeout=timeout
            ) as response:
                status = response.status_code
    except UnsafeDestination as exc:
        refused, error = True, f"refused: {exc.reason}"
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        refused, error = True, "refused: url: must be an absolute http(s) URL"
    except (TimeoutError, httpx.HTTPError) as exc:
        error = _describe(exc, timeout)
    duration_ms = round((time.monotonic() - started) * 1000)
    if error is not None and len(error) > _ERROR_MAX:
        error = error[: _ERROR_MAX - 1] + "…"
    outcome: Outcome = "failed" if refused else classify(status, error)
    return Attempt(status=status, error=error, duration_ms=duration_ms, outcome=outcome)
