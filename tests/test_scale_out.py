"""Two instances of every consumer, one of each killed mid-stream: every chain whole.

Events from many workspaces spread over the partitions; a second chainer,
enricher, exporter, alerter and streamer join the suite's own, and in the
middle of the stream the first instance of each is SIGKILLed. Every
acknowledged event must be stored exactly once, every chain must be
gapless and verify, and the alerter must have evaluated every event.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from libs.common import keys
from tests.conftest import Workspace, event, settle
from tests.stack import METRICS_PORTS, Service, wait_until

pytestmark = pytest.mark.integration

WORKSPACES = 6
REQUESTS = 20
PER_REQUEST = 50  # 6 x 20 x 50 = 6,000 events
CONSUMERS = ("chainer", "enricher", "exporter", "alerter", "streamer")


async def _stream(
    api: httpx.AsyncClient, ws: Workspace, acked: list[str], half: asyncio.Event
) -> None:
    for n in range(REQUESTS):
        batch = [event(n * PER_REQUEST + j, action="scale.step") for j in range(PER_REQUEST)]
        r = await api.post("/api/v1/events/batch", json={"events": batch}, headers=ws.headers)
        assert r.status_code == 202, r.text
        acked.extend(item["id"] for item in r.json()["results"])
        if n == REQUESTS // 2:
            half.set()


async def test_two_of_each_one_killed_mid_stream(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    services: dict[str, Service],
    env: dict[str, str],
) -> None:
    seconds = {
        name: Service.with_metrics_port(name, env, METRICS_PORTS[name] + 200, instance="-2")
        for name in CONSUMERS
    }
    workspaces = []
    async with admin_db.acquire() as conn:
        for i in range(WORKSPACES):
            ws_id, key = await keys.create_workspace(conn, f"scale-{i}", "enterprise")
            workspaces.append(Workspace(ws_id, key.key))
    # A rule everywhere, so the alerter's per-workspace progress is kept.
    for ws in workspaces:
        r = await api.post(
            "/api/v1/alert-rules",
            json={
                "name": "r",
                "rule_type": "repeated_action",
                "conditions": {"threshold": 1000, "action_pattern": "scale.*"},
                "channels": ["webhook"],
            },
            headers=ws.headers,
        )
        assert r.status_code == 201, r.text
    acked: dict[str, list[str]] = {ws.id: [] for ws in workspaces}
    halves = [asyncio.Event() for _ in workspaces]
    for svc in seconds.values():
        svc.start()
    try:
        streams = [
            asyncio.create_task(_stream(api, ws, acked[ws.id], h))
            for ws, h in zip(workspaces, halves, strict=True)
        ]
        await asyncio.gather(*(h.wait() for h in halves))
        for name in CONSUMERS:
            services[name].kill()
        await asyncio.gather(*streams)
        for ws in workspaces:
            assert len(acked[ws.id]) == REQUESTS * PER_REQUEST
            await settle(admin_db, ws.id, acked[ws.id])  # stored, and the alerter is past them
            rows = await admin_db.fetch(
                "SELECT seq, id FROM events WHERE workspace_id = $1 ORDER BY seq", ws.id
            )
            assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "gap or duplicate"
            ids = [str(r["id"]) for r in rows]
            assert len(ids) == len(set(ids)), "an event was stored twice"
            assert set(acked[ws.id]) <= set(ids), "an acknowledged event is missing"
            v = (await api.get("/api/v1/verify", headers=ws.headers)).json()
            assert v["valid"] is True and v["events_checked"] == len(rows), v["breaks"][:3]
    finally:
        for name in CONSUMERS:
            if not services[name].running():
                services[name].start()
        for svc in seconds.values():
            svc.stop()

    async def back() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            for name in CONSUMERS:
                try:
                    r = await client.get(f"http://127.0.0.1:{METRICS_PORTS[name]}/readyz")
                except httpx.TransportError:
                    return False
                if r.status_code != 200:
                    return False
        return True

    await wait_until(back, what="the suite's own consumers to be ready again")
