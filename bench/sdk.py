"""SDK-driven throughput: the Python SDK (clients/python) under the same load as the raw clients.

``clients`` AsyncClients (one per raw client of the e2e phase), each with
background batching of ``batch`` events, fed by one task apiece calling
``track()`` as fast as the client takes events, for ``duration_s``; then
every client flushes and the run waits until every acknowledged event is
queryable. The figure set beside the raw HTTP one: e2e events/s (first
``track`` to the last event queryable), which includes what the SDK adds —
encoding each event, an idempotency key per event (which the gateway
records), and one batch in flight per client.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
from chainlog_sdk import AsyncClient, BatchOptions

from bench.events import make_event

DISTINCT_EVENTS = 5_000


async def measure_raw_with_keys(
    base_url: str, key: str, *, clients: int, batch: int, duration_s: float
) -> dict[str, Any]:
    """Raw HTTP clients as in the e2e phase, but each event with a fresh idempotency key.

    The SDK gives every event a key (so a retry never records it twice);
    this is the raw figure with that same guarantee, so the SDK's own cost
    can be told from the cost of exactly-once on the server.
    """
    rng = random.Random(13)
    now_us = time.time_ns() // 1000
    events = [make_event(rng, now_us - rng.randrange(10**6)) for _ in range(DISTINCT_EVENTS)]
    acked = 0
    started = time.perf_counter()
    deadline = started + duration_s

    async def client(n: int) -> None:
        nonlocal acked
        async with httpx.AsyncClient(
            base_url=base_url, headers={"authorization": f"Bearer {key}"}, timeout=60
        ) as http:
            i = n * 997
            while time.perf_counter() < deadline:
                body = []
                for _ in range(batch):
                    body.append(
                        events[i % DISTINCT_EVENTS] | {"idempotency_key": str(uuid.uuid4())}
                    )
                    i += 1
                r = await http.post(
                    "/api/v1/events/batch",
                    content=orjson.dumps({"events": body}),
                    headers={"content-type": "application/json"},
                )
                if r.status_code == 202:
                    acked += batch

    await asyncio.gather(*(client(n) for n in range(clients)))
    return {"events_acked": acked, "acked_events_per_s": acked / (time.perf_counter() - started)}


async def measure_sdk(
    base_url: str,
    pool: asyncpg.Pool,
    workspace_id: str,
    key: str,
    *,
    clients: int,
    batch: int,
    duration_s: float,
    drain_timeout_s: float,
) -> dict[str, Any]:
    rng = random.Random(11)
    now_us = time.time_ns() // 1000
    events = [make_event(rng, now_us - rng.randrange(10**6)) for _ in range(DISTINCT_EVENTS)]
    sdks = [
        AsyncClient(
            base_url,
            key,
            batching=BatchOptions(max_batch=batch, flush_interval=0.05, max_queue=batch * 4),
        )
        for _ in range(clients)
    ]
    cpu0 = time.process_time()
    started = time.perf_counter()
    deadline = started + duration_s

    async def feed(client: AsyncClient, offset: int) -> None:
        i = offset
        while time.perf_counter() < deadline:
            event = dict(events[i % DISTINCT_EVENTS])
            await client.track(event.pop("action"), event.pop("actor_id"), **event)
            i += 1

    await asyncio.gather(*(feed(c, n * 997) for n, c in enumerate(sdks)))
    await asyncio.gather(*(c.flush(timeout=drain_timeout_s) for c in sdks))
    acked_at = time.perf_counter()
    await asyncio.gather(*(c.close() for c in sdks))
    sent = sum(c.stats.sent for c in sdks)
    failed = sum(c.stats.failed + c.stats.rejected + c.stats.dropped for c in sdks)
    retries = sum(c.stats.retries for c in sdks)
    cpu = time.process_time() - cpu0

    visible_at = None
    while time.perf_counter() - acked_at < drain_timeout_s:
        n = await pool.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", workspace_id)
        if n >= sent:
            visible_at = time.perf_counter()
            break
        await asyncio.sleep(0.1)
    end = visible_at or time.perf_counter()
    return {
        "clients": clients,
        "batch": batch,
        "events_acked": sent,
        "events_failed": failed,
        "retries": retries,
        "acked_events_per_s": sent / (acked_at - started),
        "e2e_events_per_s": sent / (end - started),
        "all_queryable": visible_at is not None,
        "client_cpu_s": cpu,
    }
