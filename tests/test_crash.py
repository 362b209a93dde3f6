"""SIGKILL a service in the middle of a stream; count what survived.

Every event acknowledged with 202 must end up in the chain exactly once,
with no gap, and every chain must verify.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from libs.common import keys
from tests.conftest import Workspace, event
from tests.stack import Service, wait_until

pytestmark = pytest.mark.integration

WORKSPACES = 3
REQUESTS_PER_WORKSPACE = 40
EVENTS_PER_REQUEST = 50  # 3 x 40 x 50 = 6,000 events


async def _workspaces(admin_db: asyncpg.Pool) -> list[Workspace]:
    out = []
    async with admin_db.acquire() as conn:
        for i in range(WORKSPACES):
            ws_id, key = await keys.create_workspace(conn, f"crash-{i}", "enterprise")
            out.append(Workspace(ws_id, key.key))
    return out


async def _stream(
    api: httpx.AsyncClient,
    ws: Workspace,
    acked: list[str],
    progress: asyncio.Event,
    kill_after: int,
) -> None:
    for n in range(REQUESTS_PER_WORKSPACE):
        batch = [
            event(n * EVENTS_PER_REQUEST + j, action="crash.step")
            for j in range(EVENTS_PER_REQUEST)
        ]
        r = await api.post("/api/v1/events/batch", json={"events": batch}, headers=ws.headers)
        assert r.status_code == 202, r.text
        acked.extend(item["id"] for item in r.json()["results"])
        if n == kill_after:
            progress.set()


async def _crash_during_stream(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    victim: Service,
) -> None:
    workspaces = await _workspaces(admin_db)
    acked: dict[str, list[str]] = {ws.id: [] for ws in workspaces}
    progress = asyncio.Event()
    streams = [
        asyncio.create_task(_stream(api, ws, acked[ws.id], progress, REQUESTS_PER_WORKSPACE // 3))
        for ws in workspaces
    ]
    await progress.wait()
    victim.kill()
    stored_at_kill = await admin_db.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = ANY($1::uuid[])", list(acked)
    )
    victim.start()
    await asyncio.gather(*streams)
    total = sum(len(ids) for ids in acked.values())
    assert stored_at_kill < total, "the kill came after the stream: it proves nothing"
    assert total == WORKSPACES * REQUESTS_PER_WORKSPACE * EVENTS_PER_REQUEST

    async def all_stored() -> bool:
        n = await admin_db.fetchval(
            "SELECT count(*) FROM events WHERE workspace_id = ANY($1::uuid[])", list(acked)
        )
        return n >= total

    await wait_until(all_stored, within=180, what="every acknowledged event to be stored")
    for ws in workspaces:
        rows = await admin_db.fetch(
            "SELECT seq, id FROM events WHERE workspace_id = $1 ORDER BY seq", ws.id
        )
        ids = [str(r["id"]) for r in rows]
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "gap or duplicate seq"
        assert len(ids) == len(set(ids)), "an event was chained twice"
        assert set(ids) == set(acked[ws.id]), "acknowledged events missing, or unknown ones"
        r = await api.get("/api/v1/verify", headers=ws.headers)
        v = r.json()
        assert v["valid"] is True, v["breaks"][:5]
        assert v["events_checked"] == len(acked[ws.id])


async def test_chainer_killed_mid_stream(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, services: dict[str, Service]
) -> None:
    await _crash_during_stream(api, admin_db, services["chainer"])


async def test_exporter_killed_mid_stream(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, services: dict[str, Service]
) -> None:
    await _crash_during_stream(api, admin_db, services["exporter"])


async def test_enricher_killed_mid_stream(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, services: dict[str, Service]
) -> None:
    await _crash_during_stream(api, admin_db, services["enricher"])
