"""Streamer events/s: a backlog forwarded to a local receiver, alone and beside a dead destination.

The streamer is stopped, ``events`` are queued through ingest into a
workspace that has one Elasticsearch-style stream (a local ``_bulk``
receiver, tests/siem_receivers.py), the bench waits until all are stored,
then starts the streamer and times the stream's cursor to the head. The
second run adds a stream to a destination that accepts connections and
never answers: the healthy stream's rate beside it shows whether a dead
destination slows the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx

from bench.e2e import VisibilityProbe
from bench.load import run_load
from bench.services import Services, new_workspace
from tests.siem_receivers import BlackHole, ElasticReceiver

POLL_S = 0.05


async def _drain(
    services: Services,
    pool: asyncpg.Pool,
    base_url: str,
    bodies: Sequence[bytes],
    *,
    batch: int,
    events: int,
    clients: int,
    dead_sibling: bool,
    timeout_s: float,
) -> dict[str, Any]:
    receiver = ElasticReceiver().start()
    dead = BlackHole().start() if dead_sibling else None
    try:
        workspace_id, key = await new_workspace(pool, "bench-streamer")
        headers = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            r = await http.post(
                "/api/v1/log-streams",
                headers=headers,
                json={"name": "bench", "type": "elasticsearch", "config": {"url": receiver.url}},
            )
            r.raise_for_status()
            stream_id = r.json()["id"]
            if dead is not None:
                r = await http.post(
                    "/api/v1/log-streams",
                    headers=headers,
                    json={"name": "dead", "type": "http", "config": {"url": dead.url}},
                )
                r.raise_for_status()
        services.stop("streamer")
        try:
            load = await run_load(
                base_url, headers, bodies, clients=clients, max_requests=max(1, events // batch)
            )
            async with VisibilityProbe(pool, "events", workspace_id) as probe:
                await probe.wait_for(load.events_acked, timeout_s)
            head = await pool.fetchval(
                "SELECT max(seq) FROM events WHERE workspace_id = $1", workspace_id
            )
            start_cursor = await pool.fetchval(
                "SELECT last_seq FROM log_stream_cursors WHERE stream_id = $1", stream_id
            )
        finally:
            t0 = time.perf_counter()
            services.start("streamer")
        samples: list[tuple[float, int]] = []
        deadline = t0 + timeout_s
        cursor = start_cursor
        while cursor < head and time.perf_counter() < deadline:
            await asyncio.sleep(POLL_S)
            cursor = await pool.fetchval(
                "SELECT last_seq FROM log_stream_cursors WHERE stream_id = $1", stream_id
            )
            samples.append((time.perf_counter(), cursor))
        done = cursor >= head
        first = next(((t, c) for t, c in samples if c > start_cursor), None)
        rate = None
        if done and first is not None:
            rate = (head - first[1]) / max(samples[-1][0] - first[0], 1e-9)
        return {
            "events": head - start_cursor,
            "drained": done,
            "events_per_s": rate,
            "restart_to_done_s": samples[-1][0] - t0 if done and samples else None,
            "received": len(receiver.created),
            "dead_sibling": dead_sibling,
        }
    finally:
        if dead is not None:
            dead.release.set()
            dead.stop()
        receiver.stop()


async def measure_streamer(
    services: Services,
    pool: asyncpg.Pool,
    base_url: str,
    bodies: Sequence[bytes],
    *,
    batch: int,
    events: int,
    clients: int,
    timeout_s: float = 180.0,
) -> dict[str, Any]:
    common: dict[str, Any] = {"batch": batch, "events": events, "clients": clients}
    alone = await _drain(
        services, pool, base_url, bodies, dead_sibling=False, timeout_s=timeout_s, **common
    )
    beside_dead = await _drain(
        services, pool, base_url, bodies, dead_sibling=True, timeout_s=timeout_s, **common
    )
    return {"alone": alone, "beside_dead": beside_dead}
