"""Background batching: its options, its counters, and what happens to each event.

The queues themselves are :mod:`chainlog_sdk.thread_batcher` (``Client``)
and :mod:`chainlog_sdk.async_batcher` (``AsyncClient``); both settle their
events through one :class:`Ledger`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Literal

from chainlog_sdk.errors import ChainlogError, ValidationError
from chainlog_sdk.events import BATCH_OVERHEAD, MAX_BATCH_EVENTS, Event, ItemResult

log = logging.getLogger("chainlog_sdk")

OnFull = Literal["block", "drop", "raise"]
#: Called with why, and the events (as sent) the API did not take.
OnError = Callable[[ChainlogError, list[Event]], None]


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """How ``track()`` queues events and a background worker sends them.

    * ``max_batch``: events per request (the worker sends as soon as this
      many are queued); at most 1,000, the API's limit, and at most the
      plan's ``events_per_second`` (Free: 100): the API answers a larger
      batch 429 however long one waits.
    * ``flush_interval``: seconds an event may wait for a batch to fill.
    * ``max_queue`` and ``on_full``: when that many events wait, ``track()``
      blocks until there is room (``"block"``), drops the event and counts it
      (``"drop"``, ``track()`` returns None) or raises :class:`QueueFull`.
    * ``max_retries``: per batch, on network errors, 429 and 5xx; None
      retries until the client is closed. Then the batch is given up.
    * ``shutdown_timeout``: how long ``close()`` (and interpreter exit) waits
      for the queue to drain; None waits as long as it takes.
    * ``on_error``: called from the worker with the error and the events for
      every event rejected (a 4xx, or a per-item ``rejected``) or given up;
      by default they are logged. It must not block for long.
    """

    max_batch: int = 500
    flush_interval: float = 1.0
    max_queue: int = 100_000
    on_full: OnFull = "block"
    max_retries: int | None = 10
    shutdown_timeout: float | None = 10.0
    on_error: OnError | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch must be from 1 to {MAX_BATCH_EVENTS}")
        if self.flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if self.on_full not in ("block", "drop", "raise"):
            raise ValueError('on_full must be "block", "drop" or "raise"')
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be >= 0, or None")


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued event: its key, its encoded body, when it was queued (``time.monotonic``)."""

    key: str
    body: bytes
    at: float


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts since the client was created.

    ``queued`` counts events put in the background queue, and ``pending``
    those of them not yet settled. Every event settles once, as ``sent``
    (the API answered ``queued``), ``duplicates`` (already recorded under its
    ``idempotency_key``), ``rejected`` (a 4xx, or a per-item ``rejected``) or
    ``failed`` (given up after retries, or at shutdown). ``dropped`` events
    never entered the queue. ``retries`` counts requests sent again. Direct
    calls (``track`` without batching, ``track_batch``) count too.
    """

    queued: int = 0
    pending: int = 0
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0


class Ledger:
    """The counters, and the reports of events the API did not take. Thread-safe."""

    def __init__(self, on_error: OnError | None = None) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys((f.name for f in fields(Stats)), 0)
        self._on_error = on_error

    def count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def snapshot(self, pending: int = 0) -> Stats:
        with self._lock:
            return Stats(**{**self._counts, "pending": pending})

    def count_results(self, items: Sequence[ItemResult]) -> None:
        counts = {"queued": 0, "duplicate": 0, "rejected": 0}
        for item in items:
            counts[item.status] += 1
        self.count(
            sent=counts["queued"], duplicates=counts["duplicate"], rejected=counts["rejected"]
        )

    def settle(self, items: Sequence[ItemResult], sent: Sequence[Pending]) -> None:
        """Count a batch's answers; report each rejected event (``items`` index ``sent``)."""
        self.count_results(items)
        for item in items:
            if item.status == "rejected":
                violations = item.violations
                error = ValidationError(
                    violations[0].get("message", "invalid event")
                    if violations
                    else "invalid event",
                    status=422,
                    code=item.error or "validation_failed",
                    body={"error": item.error, "violations": violations},
                )
                self.report(error, [sent[item.index]])

    def give_up(self, error: ChainlogError, sent: Sequence[Pending]) -> None:
        """Settle events the API did not take: ``rejected`` for a 4xx, else ``failed``."""
        refused = error.status is not None and 400 <= error.status < 500 and error.status != 429
        self.count(**{"rejected" if refused else "failed": len(sent)})
        self.report(error, sent)

    def report(self, error: ChainlogError, sent: Sequence[Pending]) -> None:
        events = [_decode(p.body) for p in sent]
        if self._on_error is None:
            log.warning(
                "chainlog_sdk.events_not_recorded",
                extra={"error": str(error), "events": len(events), "keys": [p.key for p in sent]},
            )
            return
        try:
            self._on_error(error, events)
        except Exception:  # the callback's failure must not stop delivery
            log.exception("chainlog_sdk.on_error_failed")


def take_batch(queue: deque[Pending], max_events: int, max_bytes: int) -> list[Pending]:
    """Pop the next request's events: at most ``max_events``, a body within ``max_bytes``
    (an event too big alone goes alone, and the API answers 413)."""
    batch: list[Pending] = []
    size = BATCH_OVERHEAD
    while queue and len(batch) < max_events:
        grown = size + len(queue[0].body) + (1 if batch else 0)
        if batch and grown > max_bytes:
            break
        batch.append(queue.popleft())
        size = grown
    return batch


def shutdown_error() -> ChainlogError:
    return ChainlogError("the client was closed before these events could be sent", code="shutdown")


def _decode(body: bytes) -> Event:
    event: Event = json.loads(body)
    return event
