"""The async client's queue: a bounded deque and one asyncio task that sends it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from chainlog_sdk.batching import BatchOptions, Ledger, Pending, shutdown_error, take_batch
from chainlog_sdk.errors import ChainlogError, ClientClosed, QueueFull

log = logging.getLogger("chainlog_sdk")

#: Sends one batch (one request) and settles it through the ledger.
Deliver = Callable[[list[Pending]], Awaitable[None]]


class AsyncBatcher:
    """Queues events; one task, started by the first event, sends them in batches.

    The same invariants as :class:`~chainlog_sdk.thread_batcher.ThreadBatcher`:
    one batch at a time, in order; :meth:`flush` returns True only once every
    event queued before the call has settled. It belongs to the event loop
    that queued its first event.
    """

    def __init__(
        self, options: BatchOptions, deliver: Deliver, ledger: Ledger, max_bytes: int
    ) -> None:
        self.options = options
        self._deliver = deliver
        self._ledger = ledger
        self._max_bytes = max_bytes
        self._lock = asyncio.Lock()
        self._has_work = asyncio.Condition(self._lock)
        self._has_room = asyncio.Condition(self._lock)
        self._settled = asyncio.Condition(self._lock)
        self._queue: deque[Pending] = deque()
        self._bytes = 0
        self._queued = 0
        self._taken = 0
        self._done = 0
        self._flush_upto = 0
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return self._queued - self._done

    async def put(self, item: Pending) -> bool:
        """Queue one event; False if the queue was full and the policy is ``"drop"``."""
        async with self._lock:
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
                await self._has_room.wait()
            self._queue.append(item)
            self._bytes += len(item.body) + 1
            self._queued += 1
            self._ledger.count(queued=1)
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(
                    self._run(), name="chainlog-batcher"
                )
            if len(self._queue) == 1 or self._full():
                self._has_work.notify()
        return True

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (an outcome)
        """Send what is queued now and wait until it has settled; False on timeout."""
        async with self._lock:
            target = self._queued
            self._flush_upto = max(self._flush_upto, target)
            self._has_work.notify()
            try:
                async with asyncio.timeout(timeout):
                    await self._settled.wait_for(lambda: self._done >= target)
            except TimeoutError:
                return False
        return True

    async def close(self, timeout: float | None) -> bool:  # noqa: ASYNC109 (an outcome)
        """Refuse new events, send the queue, stop; True if everything settled in time.

        After ``timeout`` the task is cancelled: the batch in flight and the rest
        count as failed and go to ``on_error``.
        """
        async with self._lock:
            self._closing = True
            self._has_work.notify_all()
            self._has_room.notify_all()
        task = self._task
        if task is None or task is asyncio.current_task():
            return task is None
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            return True
        task.cancel()
        await asyncio.wait({task})
        return False

    async def _run(self) -> None:
        batch: list[Pending] = []
        try:
            while True:
                async with self._lock:
                    taken = await self._next_batch()
                if taken is None:
                    return
                batch = taken
                try:
                    await self._deliver(batch)
                except Exception as exc:  # a bug must not stop delivery for good
                    log.exception("chainlog_sdk.batch_crashed")
                    self._ledger.give_up(ChainlogError(repr(exc), code="internal"), batch)
                # Counted before awaiting the lock, so a cancel now cannot count it twice.
                self._done += len(batch)
                batch = []
                async with self._lock:
                    self._settled.notify_all()
        except asyncio.CancelledError:
            # close() ran out of time: give up what is in flight and what waits.
            async with self._lock:
                rest = batch + list(self._queue)
                self._queue.clear()
                self._bytes = 0
                if rest:
                    self._ledger.give_up(shutdown_error(), rest)
                self._done += len(rest)
                self._settled.notify_all()
            raise

    async def _next_batch(self) -> list[Pending] | None:
        """The next batch once it is due; None when closing and empty. ``_lock`` held."""
        options = self.options
        while True:
            if self._queue:
                if self._closing or self._full() or self._taken < self._flush_upto:
                    break
                wait = self._queue[0].at + options.flush_interval - time.monotonic()
                if wait <= 0:
                    break
                try:
                    async with asyncio.timeout(wait):
                        await self._has_work.wait()
                except TimeoutError:
                    pass
            elif self._closing:
                return None
            else:
                await self._has_work.wait()
        batch = take_batch(self._queue, options.max_batch, self._max_bytes)
        self._bytes -= sum(len(p.body) + 1 for p in batch)
        self._taken += len(batch)
        self._has_room.notify_all()
        return batch

    def _full(self) -> bool:
        return len(self._queue) >= self.options.max_batch or self._bytes >= self._max_bytes
