"""The Python SDK (clients/python) against the real running stack: no mocks.

Batching under load from concurrent tasks, retries through a gateway
SIGKILL and restart, honouring a real 429's Retry-After, and the ASGI
middleware in a real FastAPI app; each ends by counting what PostgreSQL
stored, by idempotency key: every event exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import asyncpg
import httpx
import pytest
from chainlog_sdk import AsyncClient, BatchOptions, ChainlogMiddleware, Client, ValidationError
from fastapi import FastAPI, Request

from libs.common import keys
from tests.conftest import Workspace
from tests.stack import API_URL, Service, wait_for_api, wait_until


async def stored_once(db: asyncpg.Pool, ws: str, sent: list[str], within: float = 180) -> None:
    """Wait until every idempotency key in ``sent`` is stored; then none is stored twice."""

    async def arrived() -> bool:
        n = await db.fetchval(
            "SELECT count(DISTINCT convert_from(body, 'UTF8')::jsonb->>'idempotency_key') FROM events"
            " WHERE workspace_id = $1 AND action LIKE 'sdk.%'",
            ws,
        )
        return int(n) >= len(sent)

    await wait_until(arrived, within=within, what=f"{len(sent)} SDK events stored")
    rows = await db.fetch(
        "SELECT convert_from(body, 'UTF8')::jsonb->>'idempotency_key' AS k, count(*) AS n"
        " FROM events WHERE workspace_id = $1 AND action LIKE 'sdk.%' GROUP BY 1",
        ws,
    )
    counts = {r["k"]: r["n"] for r in rows}
    assert set(counts) == set(sent)
    assert max(counts.values()) == 1, "an event was stored twice"


async def test_100k_events_from_8_tasks_arrive_exactly_once(
    admin_db: asyncpg.Pool, workspace: Workspace, api: httpx.AsyncClient
) -> None:
    client = AsyncClient(
        API_URL, workspace.key, batching=BatchOptions(max_batch=500, flush_interval=0.2)
    )
    sent: list[str] = []

    async def producer(t: int) -> None:
        for i in range(12_500):
            key = await client.track("sdk.load", f"user-{t}", resource="doc", resource_id=str(i))
            assert key is not None
            sent.append(key)

    await asyncio.gather(*(producer(t) for t in range(8)))
    assert await client.flush(timeout=300)
    await client.close()
    assert client.stats.sent + client.stats.duplicates == 100_000
    assert client.stats.rejected == client.stats.dropped == client.stats.failed == 0
    await stored_once(admin_db, workspace.id, sent, within=300)


async def test_retries_through_a_gateway_restart(
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
    api: httpx.AsyncClient,
) -> None:
    # A small queue that blocks when full: the producer goes at the pace of
    # delivery, so the gateway dies while batches are in flight.
    client = Client(
        API_URL,
        workspace.key,
        batching=BatchOptions(
            max_batch=100, flush_interval=0.05, max_queue=1_000, on_full="block", max_retries=None
        ),
    )
    sent: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            key = client.track("sdk.restart", "user-1", resource_id=str(i))
            assert key is not None
            sent.append(key)
            i += 1

    worker = threading.Thread(target=produce)
    worker.start()
    await wait_until(
        lambda: _true(client.stats.sent > 2_000), within=60, what="the SDK to send under load"
    )
    services["ingest"].kill()
    services["ingest"].start()
    await wait_for_api(api)
    at_restart = client.stats.sent
    await wait_until(
        lambda: _true(client.stats.sent > at_restart + 2_000),
        within=120,
        what="the SDK to send again after the restart",
    )
    stop.set()
    worker.join(timeout=120)
    assert await asyncio.to_thread(client.flush, 180)
    client.close()
    assert client.stats.retries > 0, "the restart cost no retry: it was not during the load"
    assert client.stats.failed == client.stats.rejected == 0
    await stored_once(admin_db, workspace.id, sent)


async def _true(value: bool) -> bool:
    return value


async def test_a_429_is_honoured_and_nothing_is_lost(
    admin_db: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    async with admin_db.acquire() as conn:
        ws_id, key = await keys.create_workspace(conn, f"sdk-rate-{os.urandom(3).hex()}", "free")
    await admin_db.execute(
        "UPDATE workspaces SET limits_override = '{\"requests_per_minute\": 4}' WHERE id = $1",
        ws_id,
    )
    # The limit counts in fixed minutes: a burst straddling two could pass
    # without one 429. Start early in a minute (a wait for the clock).
    left = 60 - time.time() % 60
    if left < 20:
        await asyncio.sleep(left + 0.5)
    client = AsyncClient(API_URL, key.key, batching=BatchOptions(max_batch=10, flush_interval=0.05))
    sent = [
        k
        for k in [await client.track("sdk.rate", "user-1", resource_id=str(i)) for i in range(60)]
        if k is not None
    ]
    assert await client.flush(timeout=150)
    await client.close()
    assert client.stats.retries > 0  # some batches met the 429 and were sent again later
    assert client.stats.sent == 60 and client.stats.failed == 0
    await stored_once(admin_db, ws_id, sent)


async def test_the_middleware_fills_request_fields_in_a_real_fastapi_app(
    admin_db: asyncpg.Pool, workspace: Workspace, api: httpx.AsyncClient
) -> None:
    chainlog = AsyncClient(API_URL, workspace.key)
    app = FastAPI()

    @app.post("/documents/{doc_id}/delete")
    async def delete(doc_id: str, request: Request) -> dict[str, str | None]:
        key = await chainlog.track("sdk.document.delete", "user-7", resource_id=doc_id)
        return {"tracked": key}

    web = ChainlogMiddleware(app, chainlog, trust_forwarded=True)
    transport = httpx.ASGITransport(app=web, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as browser:
        r = await browser.post(
            "/documents/d-1/delete",
            headers={
                "user-agent": "Mozilla/5.0 (test)",
                "x-session-id": "sess-42",
                "x-forwarded-for": "203.0.113.9, 10.0.0.1",
            },
        )
    assert r.status_code == 200, r.text
    event_id = r.json()["tracked"]

    async def stored() -> asyncpg.Record | None:
        return await admin_db.fetchrow(
            "SELECT convert_from(body, 'UTF8')::jsonb AS e FROM events WHERE id = $1::uuid",
            event_id,
        )

    row = await wait_until(stored, what="the middleware's event")
    event = row["e"] if isinstance(row["e"], dict) else json.loads(row["e"])
    assert event["ip_address"] == "203.0.113.9"
    assert event["user_agent"] == "Mozilla/5.0 (test)"
    assert event["session_id"] == "sess-42"
    # Outside a request nothing is filled in; typed errors name the field.
    with pytest.raises(ValidationError) as err:
        await chainlog.track("", "user-7")
    assert "action" in [v["field"] for v in err.value.violations]
    await chainlog.close()
