"""Per-workspace rate limits, shared by every gateway instance.

Two limits, both from the workspace's plan (``libs/common/plans.toml``);
``None`` is unlimited:

* **Requests a minute**, in fixed windows aligned to the epoch. A batch is
  one request. Each instance counts what it admits; every sync interval it
  publishes its counts to ``rate_usage`` and reads the other instances'. A
  request is admitted if ``others + local < limit``; a refused request is not
  counted.
* **Events a second**: a token bucket per workspace and instance whose rate
  and capacity are the ceiling divided by the live instances. A batch larger
  than the ceiling itself is refused (split it); a batch larger than this
  instance's share but within the ceiling is admitted when the bucket is
  full, and the debt delays what follows.

:meth:`RateLimiter.check` runs on every request: synchronous, O(1), no I/O.
All I/O is in :meth:`RateLimiter.sync_once`, run by a background task.

The margin. Let ``L`` be a window's limit, ``i`` the instance that admitted
the window's last request and ``seen(i, j)`` instance ``j``'s count as ``i``
had last read it. ``i`` admitted only if ``local_i + Σ seen(i, j) ≤ L``, and
no instance admitted anything later, so::

    total ≤ L + Σ_{j ≠ i} (count_j − seen(i, j))

The excess is at most the requests the other instances had admitted that
``i`` had not yet read. Every instance publishes, then reads, once per sync
interval ``s``; with a sync taking at most ``d``, ``count_j − seen(i, j)``
is at most what ``j`` admitted in the last ``2·(s + d)`` before ``i``'s last
admission. An instance that starts serving a workspace mid-window (start-up,
fail-over) decides without the others' counts until its first sync, at most
``s + d`` later; what it admits meanwhile adds to the excess. Whatever
happens, each instance alone never admits more than ``L``: ``total ≤ N·L``,
reached only if the database is away for the whole window, when every
instance decides on its own counts (and the others' counts it last read).
``docs/rate-limits.md`` has numbers.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import asyncpg

from libs.common.db import DATABASE_UNAVAILABLE
from libs.common.logs import Logger

#: An instance counts as live if it heartbeated within this many intervals.
LIVE_INTERVALS = 3
#: Rows of stopped or crashed instances are swept after this many windows.
SWEEP_WINDOWS = 10

_SYNC_ERRORS: tuple[type[BaseException], ...] = (
    *DATABASE_UNAVAILABLE,
    asyncpg.PostgresError,
    TimeoutError,
)

_PUBLISH = """
INSERT INTO rate_usage (workspace_id, window_start, instance, requests)
SELECT w, $3, $4, r FROM unnest($1::uuid[], $2::int[]) AS u(w, r)
ON CONFLICT (workspace_id, window_start, instance)
  DO UPDATE SET requests = EXCLUDED.requests, updated_at = now()
"""

# The heartbeat is not visible to the SELECT of the same statement: count
# the others and add this instance.
_HEARTBEAT = """
WITH beat AS (
  INSERT INTO gateway_instances (instance) VALUES ($1)
  ON CONFLICT (instance) DO UPDATE SET seen_at = now()
)
SELECT 1 + count(*) FROM gateway_instances
WHERE instance <> $1 AND seen_at > now() - $2::float8 * interval '1 second'
"""

_READ_OTHERS = """
SELECT workspace_id, sum(requests)::bigint AS requests FROM rate_usage
WHERE workspace_id = ANY($1::uuid[]) AND window_start = $2 AND instance <> $3
GROUP BY workspace_id
"""

_FORGET_OWN = "DELETE FROM rate_usage WHERE instance = $1 AND window_start < $2"

_SWEEP_USAGE = "DELETE FROM rate_usage WHERE updated_at < now() - $1::float8 * interval '1 second'"
_SWEEP_INSTANCES = (
    "DELETE FROM gateway_instances WHERE seen_at < now() - $1::float8 * interval '1 second'"
)
_LEAVE = "DELETE FROM gateway_instances WHERE instance = $1"


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int | None
    events_per_second: int | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request.

    ``limit``, ``remaining`` and ``reset_s`` describe ``policy``: the limit
    that refused, or for an admitted request the request window (the events
    bucket if requests are unlimited). ``reset_s`` is the seconds until the
    window resets (until the bucket is full again), at least 1.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int
    reason: str
    policy: Literal["requests", "events", "none"] = "requests"

    def headers(self) -> dict[str, str]:
        if self.policy == "none":
            return {}
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


UNLIMITED = Decision(True, 0, 0, 1, 0, "", "none")


class _Usage:
    """One workspace on this instance: the current window and the bucket."""

    __slots__ = (
        "db_id",
        "local",
        "others",
        "others_window",
        "published",
        "refilled_at",
        "tokens",
        "window",
    )

    def __init__(self, window: int, now: float) -> None:
        self.window = window
        self.local = 0
        self.published = 0
        self.others = 0
        self.others_window = -1
        self.tokens = math.inf  # full, whatever the capacity turns out to be
        self.refilled_at = now
        self.db_id: str | None = None  # canonical UUID text, "" if not a UUID


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RateLimiter:
    """Admits or refuses each request of a workspace against its limits.

    Invariants:

    * ``check`` MUST NOT do I/O or await: it runs on every request, and the
      sync task relies on no ``check`` running while it reads local state.
    * A request MUST be counted only if admitted, and only its own instance
      MUST write an instance's ``rate_usage`` rows (counts are absolute, so
      publishing again is harmless).
    * A failed sync MUST NOT fail a request: decisions go on with the local
      counts and the others' counts last read.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        instance: str | None = None,
        sync_interval_s: float = 1.0,
        window_s: int = 60,
        clock: Callable[[], float] = time.time,
        log: Logger | None = None,
    ) -> None:
        if sync_interval_s <= 0 or window_s <= 0:
            raise ValueError("sync_interval_s and window_s must be positive")
        self.pool = pool
        self.instance = instance or default_instance()
        self.sync_interval_s = sync_interval_s
        self.window_s = window_s
        self.clock = clock
        self.log = log or Logger("ingest")
        self.live_instances = 1
        self._usage: dict[str, _Usage] = {}
        self._forgotten_before = 0
        self._failures = 0
        self._timeout_s = max(1.0, 2 * sync_interval_s)
        self._task: asyncio.Task[None] | None = None

    # -- the hot path ---------------------------------------------------

    def check(self, workspace_id: str, limits: Limits, events: int) -> Decision:
        """Admit (and count) or refuse one request carrying ``events`` events."""
        if events < 0:
            raise ValueError("events must be >= 0")
        rpm, eps = limits.requests_per_minute, limits.events_per_second
        if rpm is None and eps is None:
            return UNLIMITED
        now = self.clock()
        window = int(now // self.window_s) * self.window_s
        usage = self._usage.get(workspace_id)
        if usage is None:
            usage = self._usage[workspace_id] = _Usage(window, now)
        elif usage.window != window:
            usage.window, usage.local, usage.published = window, 0, 0
        reset_s = max(1, math.ceil(window + self.window_s - now))

        if rpm is not None:
            limit = max(1, rpm * self.window_s // 60) if rpm else 0
            used = usage.local + (usage.others if usage.others_window == window else 0)
            if used >= limit:
                reason = f"this workspace may make {rpm} requests a minute; retry in {reset_s} s"
                return Decision(False, limit, 0, reset_s, reset_s, reason, "requests")
        if eps is not None:
            rate = self._refill(usage, eps, now)
            refused = self._take(usage, eps, rate, events)
            if refused is not None:
                return refused
            if rpm is None:
                return self._bucket(usage, eps, rate, True, 0, "")
        # Only a request limit gets here.
        usage.local += 1
        return Decision(True, limit, limit - used - 1, reset_s, 0, "", "requests")

    def _refill(self, usage: _Usage, eps: int, now: float) -> float:
        """Refill the bucket; returns its rate, which is also its capacity."""
        rate = eps / self.live_instances
        elapsed = max(0.0, now - usage.refilled_at)  # the wall clock may step back
        usage.tokens = min(rate, usage.tokens + elapsed * rate)
        usage.refilled_at = now
        return rate

    def _take(self, usage: _Usage, eps: int, rate: float, events: int) -> Decision | None:
        """Take ``events`` tokens, or the refusal."""
        if not events:
            return None
        if events > eps:
            reason = (
                f"this workspace may send {eps} events a second; this batch of {events}"
                f" events exceeds it: split it into batches of at most {eps} events"
                if eps
                else "this workspace's plan allows no events"
            )
            return self._bucket(usage, eps, rate, False, self._wait(usage, rate, rate), reason)
        # A batch within the ceiling but above this instance's share passes
        # when the bucket is full, and the debt holds back what follows.
        need = min(events, rate)
        if usage.tokens + 1e-9 < need:
            wait = self._wait(usage, rate, need)
            reason = f"this workspace may send {eps} events a second; retry in {wait} s"
            return self._bucket(usage, eps, rate, False, wait, reason)
        usage.tokens -= events
        return None

    def _wait(self, usage: _Usage, rate: float, need: float) -> int:
        """Whole seconds until the bucket holds ``need`` tokens, at least 1."""
        if rate <= 0:
            return self.window_s
        return max(1, math.ceil((need - usage.tokens) / rate))

    def _bucket(
        self, usage: _Usage, eps: int, rate: float, allowed: bool, retry_after_s: int, reason: str
    ) -> Decision:
        # Remaining is for the workspace: this instance's tokens times the
        # instances, an estimate that holds when the load is spread evenly.
        remaining = min(eps, max(0, math.floor(usage.tokens * self.live_instances + 1e-9)))
        reset_s = self._wait(usage, rate, rate)
        return Decision(allowed, eps, remaining, reset_s, retry_after_s, reason, "events")

    # -- the sync -------------------------------------------------------

    async def sync_once(self) -> bool:
        """Publish this instance's counts, heartbeat, read the others' counts.

        Returns whether the database answered; a failure is logged and the
        next sync tries again.
        """
        now = self.clock()
        window = int(now // self.window_s) * self.window_s
        watched = self._watched(window)
        changed = [(ws, u) for ws, u in watched if u.window == window and u.local != u.published]
        counts = [u.local for _, u in changed]
        try:
            async with self.pool.acquire(timeout=self._timeout_s) as conn:
                if changed:
                    await conn.execute(
                        _PUBLISH,
                        [u.db_id for _, u in changed],
                        counts,
                        window,
                        self.instance,
                        timeout=self._timeout_s,
                    )
                    for (_, usage), count in zip(changed, counts, strict=True):
                        if usage.window == window:
                            usage.published = count
                live = await conn.fetchval(
                    _HEARTBEAT,
                    self.instance,
                    LIVE_INTERVALS * self.sync_interval_s,
                    timeout=self._timeout_s,
                )
                self.live_instances = max(1, int(live))
                rows = await conn.fetch(
                    _READ_OTHERS,
                    [u.db_id for _, u in watched],
                    window,
                    self.instance,
                    timeout=self._timeout_s,
                )
                others = {str(r["workspace_id"]): int(r["requests"]) for r in rows}
                for _, usage in watched:
                    usage.others = others.get(usage.db_id or "", 0)
                    usage.others_window = window
                if self._forgotten_before < window - self.window_s:
                    await conn.execute(
                        _FORGET_OWN, self.instance, window - self.window_s, timeout=self._timeout_s
                    )
                    self._forgotten_before = window - self.window_s
        except _SYNC_ERRORS as exc:
            self._failures += 1
            if self._failures == 1:
                self.log.warning("ratelimit.sync_failed", instance=self.instance, error=repr(exc))
            return False
        if self._failures:
            self.log.info("ratelimit.sync_recovered", instance=self.instance, failed=self._failures)
            self._failures = 0
        return True

    def _watched(self, window: int) -> list[tuple[str, _Usage]]:
        """Workspaces seen in this or the previous window; forgets the rest.

        A workspace idle for a whole window has a full bucket and no count
        that matters, so forgetting it changes no decision.
        """
        watched: list[tuple[str, _Usage]] = []
        stale: list[str] = []
        for ws, usage in self._usage.items():
            if usage.window < window - self.window_s:
                stale.append(ws)
                continue
            if usage.db_id is None:
                usage.db_id = _canonical(ws)
            if usage.db_id:
                watched.append((ws, usage))
        for ws in stale:
            del self._usage[ws]
        return watched

    async def sweep(self) -> None:
        """Delete what stopped or crashed instances left (any instance's rows)."""
        age = SWEEP_WINDOWS * self.window_s
        async with self.pool.acquire(timeout=self._timeout_s) as conn:
            await conn.execute(_SWEEP_USAGE, float(age), timeout=self._timeout_s)
            await conn.execute(_SWEEP_INSTANCES, float(age), timeout=self._timeout_s)

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            await self.sync_once()
            self._task = asyncio.create_task(self._run(), name=f"ratelimit-{self.instance}")

    async def stop(self) -> None:
        """Stop syncing; publish the last counts and leave the live set.

        The counts stay in ``rate_usage`` until their window is over: the
        other instances must go on counting what this one admitted.
        """
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        if await self.sync_once():
            try:
                await self.pool.execute(_LEAVE, self.instance, timeout=self._timeout_s)
            except _SYNC_ERRORS as exc:
                self.log.warning("ratelimit.leave_failed", instance=self.instance, error=repr(exc))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        ticks_per_sweep = max(1, round(SWEEP_WINDOWS * self.window_s / self.sync_interval_s))
        tick = 0
        next_at = loop.time()
        while True:
            # A fixed rate: a slow sync shortens the pause, it does not shift the schedule.
            next_at = max(next_at + self.sync_interval_s, loop.time())
            await asyncio.sleep(next_at - loop.time())
            tick += 1
            try:
                await self.sync_once()
                if tick % ticks_per_sweep == 0:
                    await self.sweep()
            except _SYNC_ERRORS as exc:
                self.log.warning("ratelimit.sweep_failed", instance=self.instance, error=repr(exc))
            except Exception as exc:  # a bug must not stop the sharing for good
                self.log.error("ratelimit.sync_crashed", instance=self.instance, error=repr(exc))


def _canonical(workspace_id: str) -> str:
    """The UUID text PostgreSQL returns, or "" for an id that is not a UUID."""
    try:
        return str(uuid.UUID(workspace_id))
    except ValueError:
        return ""
