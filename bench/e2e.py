"""End to end: load a system, then see when what it acked became queryable.

The same measurement serves Chainlog (ack = in Kafka; queryable once the
chainer and the exporter are through) and the baseline (ack = committed):
a background poller watches the query table of the run's workspace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.load import LoadResult, run_load, summary_ms

POLL_INTERVAL_S = 0.05


class VisibilityProbe:
    """Polls ``table`` every ~50 ms for sampled event ids and ``max(seq)``.

    Freshness of a sampled event is (first poll that found it) - (its ack),
    so it carries up to one poll interval (plus the query) of error. The
    chain is gap-free from seq 1 in a fresh workspace, so ``max(seq)`` is
    the number of queryable events (confirmed by ``count(*)`` at the end).
    """

    def __init__(self, pool: asyncpg.Pool, table: str, workspace_id: str) -> None:
        self.pool = pool
        self.workspace_id = workspace_id
        self._ids_sql = f"SELECT id::text FROM {table} WHERE id = ANY($1::uuid[])"
        self._max_sql = f"SELECT coalesce(max(seq), 0) FROM {table} WHERE workspace_id = $1"
        self.pending: dict[str, float] = {}
        self.freshness_s: list[float] = []
        self.polls: list[tuple[float, int]] = []  # (perf_counter, visible events)
        self._task: asyncio.Task[None] | None = None

    def expect(self, event_id: str, acked_at: float) -> None:
        self.pending[event_id] = acked_at

    @property
    def visible(self) -> int:
        return self.polls[-1][1] if self.polls else 0

    async def _poll(self) -> None:
        async with self.pool.acquire() as conn:
            if self.pending:
                rows = await conn.fetch(self._ids_sql, list(self.pending))
                now = time.perf_counter()
                for r in rows:
                    self.freshness_s.append(max(0.0, now - self.pending.pop(r[0])))
            visible = await conn.fetchval(self._max_sql, self.workspace_id)
        self.polls.append((time.perf_counter(), visible))

    async def _loop(self) -> None:
        while True:
            await self._poll()
            await asyncio.sleep(POLL_INTERVAL_S)

    async def __aenter__(self) -> VisibilityProbe:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def wait_for(self, target: int, timeout_s: float) -> float | None:
        """perf_counter() of the first poll that saw ``target`` events; None on timeout."""
        deadline = time.perf_counter() + timeout_s
        seen = 0
        while True:
            for t, visible in self.polls[seen:]:
                if visible >= target:
                    return t
            seen = len(self.polls)
            if time.perf_counter() > deadline:
                return None
            await asyncio.sleep(POLL_INTERVAL_S / 2)

    def timeline(self, since: float, step_s: float = 1.0) -> list[tuple[float, int]]:
        """(seconds since ``since``, visible events), thinned to one point per step."""
        out: list[tuple[float, int]] = []
        for t, visible in self.polls:
            if not out or t - since - out[-1][0] >= step_s:
                out.append((round(t - since, 3), visible))
        return out


@dataclass(frozen=True)
class Target:
    """A system under test: where to post, and where its events become queryable."""

    name: str
    base_url: str
    headers: dict[str, str]
    table: str
    workspace_id: str


async def measure(
    target: Target,
    pool: asyncpg.Pool,
    bodies: Sequence[bytes],
    *,
    clients: int,
    duration_s: float,
    drain_timeout_s: float,
    requests_per_s: float | None = None,
) -> dict[str, Any]:
    """Load ``target`` for ``duration_s``, then wait until every acked event is queryable.

    End-to-end events/s = acked events / (first send → last event queryable):
    a backlog left at the end of the load earns no credit.
    """
    async with VisibilityProbe(pool, target.table, target.workspace_id) as probe:
        load: LoadResult = await run_load(
            target.base_url,
            target.headers,
            bodies,
            clients=clients,
            duration_s=duration_s,
            on_sample=probe.expect,
            requests_per_s=requests_per_s,
            sample_every=1 if requests_per_s else 10,
        )
        backlog = max(0, load.events_acked - probe.visible)
        visible_at = await probe.wait_for(load.events_acked, drain_timeout_s)
        end = visible_at if visible_at is not None else time.perf_counter()
    stored = await pool.fetchval(
        f"SELECT count(*) FROM {target.table} WHERE workspace_id = $1", target.workspace_id
    )
    e2e_window = end - load.started
    return {
        "system": target.name,
        "workspace_id": target.workspace_id,
        **load.as_dict(),
        "events_queryable": stored,
        "all_queryable": visible_at is not None and stored == load.events_acked,
        "backlog_at_load_end": backlog,
        "drain_after_load_s": end - load.last_ack,
        "e2e_window_s": e2e_window,
        # On timeout: only what became queryable counts.
        "e2e_events_per_s": (load.events_acked if visible_at is not None else stored) / e2e_window,
        "freshness": {
            **summary_ms(probe.freshness_s),
            "never_seen": len(probe.pending),
            "poll_interval_ms": POLL_INTERVAL_S * 1000,
        },
        "raw_freshness_ms": [round(v * 1000, 3) for v in probe.freshness_s],
        "visible_timeline": probe.timeline(load.started),
    }
