"""Errors: one class per kind of answer, carrying the API's code and message.

The API answers every error as ``{"error": code, "message": ..., ...}``;
:func:`error_from_response` turns that into the matching class. Errors the
SDK raises itself (a full queue, a network failure, a bad checksum) are
subclasses of :class:`ChainlogError` too, so ``except ChainlogError`` is
enough to catch everything this package raises on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

Violation = dict[str, str]


class ChainlogError(Exception):
    """An error answered by the API (``status`` set) or raised by the SDK (``status`` None)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.body: dict[str, Any] = dict(body or {})
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"

    @property
    def retry_after(self) -> float | None:
        """Seconds from the ``Retry-After`` header, if the answer had one."""
        return parse_retry_after(self.headers.get("retry-after"))


class ValidationError(ChainlogError):
    """422 ``validation_failed``: ``violations`` names every bad field."""

    @property
    def violations(self) -> list[Violation]:
        found = self.body.get("violations")
        return list(found) if isinstance(found, list) else []


class Unauthenticated(ChainlogError):
    """401: no key, or a key that is unknown or revoked."""


class Forbidden(ChainlogError):
    """403: the key lacks the scope, or the IP allowlist refuses the caller."""


class PlanLimitReached(Forbidden):
    """403 ``plan_limit_reached``: creating one more would go over the plan."""

    @property
    def limit(self) -> int | None:
        value = self.body.get("limit")
        return value if isinstance(value, int) else None

    @property
    def used(self) -> int | None:
        value = self.body.get("used")
        return value if isinstance(value, int) else None


class NotFound(ChainlogError):
    """404: no such resource in this workspace."""


class Conflict(ChainlogError):
    """409: e.g. ``export_not_ready``, downloading an export that is not completed."""


class Gone(ChainlogError):
    """410: e.g. ``export_expired``; request a new export."""


class RateLimited(ChainlogError):
    """429 (``rate_limited``, ``too_many_exports``): retry after :attr:`retry_after` seconds."""

    @property
    def limit(self) -> int | None:
        return _int(self.headers.get("x-ratelimit-limit"))

    @property
    def remaining(self) -> int | None:
        return _int(self.headers.get("x-ratelimit-remaining"))

    @property
    def reset(self) -> int | None:
        return _int(self.headers.get("x-ratelimit-reset"))


class ServerError(ChainlogError):
    """5xx: the server failed; the request may be retried."""


class Unavailable(ServerError):
    """503 ``unavailable``: the pipeline cannot take the write now; retry later."""


class NetworkError(ChainlogError):
    """No answer: the connection failed or timed out.

    ``sent`` is False when the request certainly never reached the server
    (the connection was not established), so even a non-idempotent request
    may be sent again.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message, code="network_error")
        self.sent = sent


class QueueFull(ChainlogError):
    """The background queue is full and its policy is ``on_full="raise"``."""

    def __init__(self, max_queue: int) -> None:
        super().__init__(
            f"the background queue holds {max_queue} events already; flush, or slow down",
            code="queue_full",
        )


class ClientClosed(ChainlogError):
    """The client was closed: it sends nothing more."""

    def __init__(self) -> None:
        super().__init__("the Chainlog client is closed", code="client_closed")


class ExportFailed(ChainlogError):
    """The export job ended with status ``failed``; ``export`` is its document."""

    def __init__(self, export: Mapping[str, Any]) -> None:
        super().__init__(
            f"export {export.get('id')} failed: {export.get('error') or 'no reason given'}",
            code="export_failed",
            body=export,
        )
        self.export = dict(export)


class ChecksumMismatch(ChainlogError):
    """The downloaded bytes do not hash to the server's ``x-chainlog-sha256``."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"the download hashes to {actual}, the server announced {expected}",
            code="checksum_mismatch",
        )
        self.expected = expected
        self.actual = actual


_BY_STATUS: dict[int, type[ChainlogError]] = {
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: ValidationError,
    429: RateLimited,
    503: Unavailable,
}


def error_from_response(status: int, headers: Mapping[str, str], content: bytes) -> ChainlogError:
    """The error for an answer with ``status`` >= 400."""
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(content) if content else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        body = parsed
    code = str(body.get("error") or f"http_{status}")
    message = str(body.get("message") or content[:200].decode("utf-8", "replace") or "no body")
    if code == "plan_limit_reached":
        cls: type[ChainlogError] = PlanLimitReached
    else:
        cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ChainlogError)
    return cls(message, status=status, code=code, body=body, headers=dict(headers.items()))


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
