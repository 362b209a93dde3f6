"""Events on the wire: preparing, encoding, splitting into requests, reading results.

Pure functions: no I/O, no clock but the one passed in.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from chainlog_sdk import context
from chainlog_sdk.errors import ChainlogError, ValidationError, Violation

Event = dict[str, Any]
Status = Literal["queued", "duplicate", "rejected"]

#: The gateway's defaults (``CHAINLOG_MAX_BATCH_EVENTS``, ``CHAINLOG_MAX_BODY_BYTES``).
MAX_BATCH_EVENTS = 1000
MAX_BODY_BYTES = 5 * 1024 * 1024

_OPEN, _CLOSE = b'{"events":[', b"]}"
#: The bytes of a batch body beyond its events and their commas.
BATCH_OVERHEAD = len(_OPEN) + len(_CLOSE)
_ITEM = re.compile(r"^events\[(\d+)\]")


def utc_now() -> datetime:
    return datetime.now(UTC)


def prepare(fields: Mapping[str, Any], now: Callable[[], datetime] = utc_now) -> Event:
    """The event to send: the caller's fields, the request context, and two stamps.

    * ``idempotency_key``: a fresh UUID unless given, so that sending again
      (a retry) never records the event twice.
    * ``occurred_at``: now, unless given, so that queueing and retries do not
      move the time of the action to the time it reached the server.

    A field given as None is left out (and not filled from the context).
    """
    event = dict(fields)
    context.fill(event)
    if "idempotency_key" not in event or event["idempotency_key"] is None:
        event["idempotency_key"] = str(uuid.uuid4())
    if "occurred_at" not in event:
        event["occurred_at"] = now()
    return {k: v for k, v in event.items() if v is not None}


def encode(event: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; raises TypeError/ValueError for what JSON cannot hold."""
    return json.dumps(
        event, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
    ).encode()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("datetimes must be timezone-aware (RFC 3339 needs an offset)")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def batch_body(items: Sequence[bytes]) -> bytes:
    return _OPEN + b",".join(items) + _CLOSE


def chunks(
    items: Sequence[bytes], max_events: int = MAX_BATCH_EVENTS, max_bytes: int = MAX_BODY_BYTES
) -> list[range]:
    """Split encoded events into requests of at most ``max_events`` and ``max_bytes``.

    An event too big on its own gets a request of its own (the API answers 413).
    """
    out: list[range] = []
    start, size = 0, BATCH_OVERHEAD
    for i, item in enumerate(items):
        grown = size + len(item) + (1 if i > start else 0)
        if i > start and (i - start >= max_events or grown > max_bytes):
            out.append(range(start, i))
            start, grown = i, BATCH_OVERHEAD + len(item)
        size = grown
    if start < len(items):
        out.append(range(start, len(items)))
    return out


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What the API answered for one event of a batch."""

    index: int
    status: Status
    idempotency_key: str | None
    id: str | None = None
    error: str | None = None
    violations: list[Violation] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-event results, in the order the events were given."""

    items: list[ItemResult]

    @property
    def accepted(self) -> int:
        """Events recorded now (``queued``)."""
        return sum(1 for r in self.items if r.status == "queued")

    @property
    def duplicates(self) -> int:
        """Events the API had already recorded under the same ``idempotency_key``."""
        return sum(1 for r in self.items if r.status == "duplicate")

    @property
    def rejected(self) -> list[ItemResult]:
        return [r for r in self.items if r.status == "rejected"]

    @property
    def ok(self) -> bool:
        return not self.rejected


def parse_results(body: Any, keys: Sequence[str | None], offset: int = 0) -> list[ItemResult]:
    """The items of a 202 answer to a batch of ``len(keys)`` events."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or len(results) != len(keys):
        raise ChainlogError("the batch answer does not hold one result per event", code="protocol")
    out = []
    for i, item in enumerate(results):
        status = item.get("status")
        if status not in ("queued", "duplicate", "rejected"):
            raise ChainlogError(f"unknown item status {status!r}", code="protocol")
        out.append(
            ItemResult(
                index=offset + i,
                status=status,
                idempotency_key=keys[i],
                id=item.get("id"),
                error=item.get("error"),
                violations=list(item.get("violations") or []),
            )
        )
    return out


def all_rejected(
    error: ValidationError, keys: Sequence[str | None], offset: int = 0
) -> list[ItemResult] | None:
    """The items of a 422 "no event in the batch is valid", or None for another 422.

    Every violation then names its event (``events[3].action``).
    """
    by_item: dict[int, list[Violation]] = {}
    for v in error.violations:
        found = _ITEM.match(str(v.get("field", "")))
        if found is None or int(found.group(1)) >= len(keys):
            return None
        by_item.setdefault(int(found.group(1)), []).append(v)
    if len(by_item) != len(keys):
        return None
    return [
        ItemResult(
            index=offset + i,
            status="rejected",
            idempotency_key=keys[i],
            error=error.code,
            violations=by_item[i],
        )
        for i in range(len(keys))
    ]
