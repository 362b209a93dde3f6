"""The sync client's queue: a bounded deque and one daemon thread that sends it."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from chainlog_sdk.batching import BatchOptions, Ledger, Pending, shutdown_error, take_batch
from chainlog_sdk.errors import ChainlogError, ClientClosed, QueueFull

log = logging.getLogger("chainlog_sdk")

#: Sends one batch and settles it through the ledger; gives up when the event is set.
Deliver = Callable[[list[Pending], threading.Event], None]


class ThreadBatcher:
    """Queues events; a daemon thread sends them in batches, by size or by age.

    Invariants:

    * Batches MUST be sent one at a time, in the order their events were
      queued; a batch settles (answered, rejected or given up) before the next
      is taken.
    * :meth:`flush` MUST return True only once every event queued before the
      call has settled.
    * ``_lock`` (shared by the three conditions) MUST be held for the queue's
      bookkeeping only, never while sending.
    """

    def __init__(
        self, options: BatchOptions, deliver: Deliver, ledger: Ledger, max_bytes: int
    ) -> None:
        self.options = options
        self._max_bytes = max_bytes
        self._deliver = deliver
        self._ledger = ledger
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._queue: deque[Pending] = deque()
        self._bytes = 0  # of the queued bodies
        self._queued = 0  # events ever queued
        self._taken = 0  # events taken by the worker
        self._done = 0  # events settled
        self._flush_upto = 0  # send without waiting until this many are taken
        self._closing = False
        self._give_up = threading.Event()  # close() ran out of time
        self._thread = threading.Thread(target=self._run, name="chainlog-batcher", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._lock:
            return self._queued - self._done

    def put(self, item: Pending) -> bool:
        """Queue one event; False if the queue was full and the policy is ``"drop"``."""
        with self._lock:
            while True:
                if self._closing:
                    raise ClientClosed()
                if len(self._queue) < self.options.max_queue:
                    break
                if self.options.on_full == "drop":
                    self._ledger.count(dropped=1)
                    return False
                if self.options.on_full == "raise":
                    raise QueueFull(self.options.max_queue)
                self._has_room.wait()
            self._queue.append(item)
            self._bytes += len(item.body) + 1
            self._queued += 1
            self._ledger.count(queued=1)
            # The first event starts the worker's clock; a full batch goes now.
            if len(self._queue) == 1 or self._full():
                self._has_work.notify()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now and wait until it has settled; False on timeout."""
        if threading.current_thread() is self._thread:  # flush() from on_error
            return False
        with self._lock:
            target = self._queued
            self._flush_upto = max(self._flush_upto, target)
            self._has_work.notify()
            return self._settled.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None, grace: float) -> bool:
        """Refuse new events, send the queue, stop; True if everything settled in time.

        After ``timeout`` the worker gives up: the batch in flight after its
        current request (at most ``grace`` seconds), the rest at once. Given-up
        events count as failed and go to ``on_error``.
        """
        if threading.current_thread() is self._thread:  # close() from on_error
            return False
        with self._lock:
            self._closing = True
            self._has_work.notify_all()
            self._has_room.notify_all()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        self._give_up.set()
        self._thread.join(grace)
        return False

    def _run(self) -> None:
        while True:
            with self._lock:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                if self._give_up.is_set():
                    self._ledger.give_up(shutdown_error(), batch)
                else:
                    self._deliver(batch, self._give_up)
            except Exception as exc:  # a bug must not stop delivery for good
                log.exception("chainlog_sdk.batch_crashed")
                self._ledger.give_up(ChainlogError(repr(exc), code="internal"), batch)
            with self._lock:
                self._done += len(batch)
                self._settled.notify_all()

    def _next_batch(self) -> list[Pending] | None:
        """The next batch once it is due; None when closing and empty. ``_lock`` held."""
        options = self.options
        while True:
            if self._queue:
                if self._closing or self._full() or self._taken < self._flush_upto:
                    break
                wait = self._queue[0].at + options.flush_interval - time.monotonic()
                if wait <= 0:
                    break
                self._has_work.wait(wait)
            elif self._closing:
                return None
            else:
                self._has_work.wait()
        batch = take_batch(self._queue, options.max_batch, self._max_bytes)
        self._bytes -= sum(len(p.body) + 1 for p in batch)
        self._taken += len(batch)
        self._has_room.notify_all()
        return batch

    def _full(self) -> bool:
        return len(self._queue) >= self.options.max_batch or self._bytes >= self._max_bytes
