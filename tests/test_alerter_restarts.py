"""The alerter killed and rebalanced: no missed alert, no double alert, no lost delivery.

The rule used is deterministic over the stream, so the exact number of
alerts is known in advance: ``repeated_action`` with threshold T, a window
longer than the test and no cooldown fires once for every event of an
actor from its T-th on. Whatever is killed and whenever, the count must
come out exact.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Workspace
from tests.receivers import WebhookReceiver
from tests.stack import METRICS_PORTS, Service, wait_until
from tests.test_alerts import settle

pytestmark = pytest.mark.integration

THRESHOLD = 10
ACTORS = 7
REQUESTS = 30
PER_REQUEST = 40  # 1,200 events


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


def expected_alerts(actors: Counter[str]) -> int:
    return sum(max(0, n - THRESHOLD + 1) for n in actors.values())


async def _rule(api: httpx.AsyncClient, ws: Workspace, **conditions: Any) -> None:
    r = await api.post(
        "/api/v1/alert-rules",
        json={
            "name": "repeats",
            "rule_type": "repeated_action",
            "conditions": {"threshold": THRESHOLD, "window_seconds": 86_400, **conditions},
            "channels": ["webhook"],  # no endpoint: alerts only, nothing to deliver
            "cooldown_seconds": 0,
        },
        headers=ws.headers,
    )
    assert r.status_code == 201, r.text


async def _progress(db: asyncpg.Pool, ws: Workspace) -> int:
    seq = await db.fetchval("SELECT last_seq FROM alerter_progress WHERE workspace_id = $1", ws.id)
    return int(seq or 0)


async def _stream(
    api: httpx.AsyncClient,
    ws: Workspace,
    actors: Counter[str],
    at: dict[int, asyncio.Event],
    ids: list[str],
) -> None:
    for n in range(REQUESTS):
        batch = [
            {"actor_id": f"u_{(n * PER_REQUEST + j) % ACTORS}", "action": "report.export"}
            for j in range(PER_REQUEST)
        ]
        r = await api.post("/api/v1/events/batch", json={"events": batch}, headers=ws.headers)
        assert r.status_code == 202, r.text
        ids.extend(item["id"] for item in r.json()["results"])
        actors.update(e["actor_id"] for e in batch)
        if n in at:
            at[n].set()


async def _exact(db: asyncpg.Pool, ws: Workspace, actors: Counter[str], ids: list[str]) -> None:
    assert len(ids) == REQUESTS * PER_REQUEST
    await settle(db, ws.id, ids)
    rows = await db.fetch(
        "SELECT event_seq, count(*) AS n FROM alerts WHERE workspace_id = $1 GROUP BY event_seq",
        ws.id,
    )
    assert all(r["n"] == 1 for r in rows), "an event raised the same alert twice"
    assert len(rows) == expected_alerts(actors), "an alert was missed or invented"


async def test_alerter_killed_mid_window(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
) -> None:
    """State written before the kill counts after the restart: the window spans it."""
    alerter = services["alerter"]
    await _rule(api, workspace)
    first = [{"actor_id": "u_1", "action": "report.export"}] * (THRESHOLD - 1)
    r = await api.post("/api/v1/events/batch", json={"events": first}, headers=workspace.headers)
    assert r.status_code == 202

    await settle(admin_db, workspace.id, [item["id"] for item in r.json()["results"]])
    assert (
        await admin_db.fetchval("SELECT count(*) FROM alerts WHERE workspace_id = $1", workspace.id)
        == 0
    )
    alerter.kill()
    r = await api.post("/api/v1/events", json=first[0], headers=workspace.headers)
    assert r.status_code == 202
    completing = r.json()["id"]
    alerter.start()

    async def fired() -> int:
        return int(
            await admin_db.fetchval(
                "SELECT count(*) FROM alerts WHERE workspace_id = $1", workspace.id
            )
        )

    assert await wait_until(fired, what="the alert completing the window") == 1
    row = await admin_db.fetchrow(
        "SELECT event_id, reason FROM alerts WHERE workspace_id = $1", workspace.id
    )
    assert str(row["event_id"]) == completing
    assert f"{THRESHOLD} times" in row["reason"]


async def test_alerter_killed_under_load(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
) -> None:
    alerter = services["alerter"]
    await _rule(api, workspace)
    actors: Counter[str] = Counter()
    third = asyncio.Event()
    ids: list[str] = []
    stream = asyncio.create_task(_stream(api, workspace, actors, {REQUESTS // 3: third}, ids))
    await third.wait()
    alerter.kill()
    at_kill = await _progress(admin_db, workspace)
    alerter.start()
    await stream
    assert at_kill < REQUESTS * PER_REQUEST, "the kill came after the stream: it proves nothing"
    await _exact(admin_db, workspace, actors, ids)


async def test_alerter_rebalanced_between_two_instances(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
    env: dict[str, str],
) -> None:
    """A second member joins mid-stream, then the first dies: two rebalances."""
    first = services["alerter"]
    second = Service.with_metrics_port(
        "alerter", env, METRICS_PORTS["alerter"] + 100, instance="-b"
    )
    await _rule(api, workspace)
    actors: Counter[str] = Counter()
    marks = {REQUESTS // 4: asyncio.Event(), REQUESTS // 2: asyncio.Event()}
    ids: list[str] = []
    stream = asyncio.create_task(_stream(api, workspace, actors, marks, ids))
    try:
        await marks[REQUESTS // 4].wait()
        second.start()
        await marks[REQUESTS // 2].wait()
        first.kill()
        await stream
        await _exact(admin_db, workspace, actors, ids)
    finally:
        if not first.running():
            first.start()
        second.stop()


async def test_delivery_survives_alerter_restart(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
    receiver: WebhookReceiver,
) -> None:
    """A delivery being retried when the alerter dies is finished by the next one."""
    alerter = services["alerter"]
    failing = asyncio.Event()
    receiver.respond = lambda n: 503 if not failing.is_set() else 200
    h = workspace.headers
    r = await api.post("/api/v1/webhook-endpoints", json={"url": receiver.url}, headers=h)
    assert r.status_code == 201
    r = await api.post(
        "/api/v1/alert-rules",
        json={
            "name": "twice",
            "rule_type": "repeated_action",
            "conditions": {"threshold": 2},
            "channels": ["webhook"],
        },
        headers=h,
    )
    assert r.status_code == 201
    r = await api.post(
        "/api/v1/events/batch",
        json={"events": [{"actor_id": "u", "action": "a.b"}] * 2},
        headers=h,
    )
    assert r.status_code == 202

    async def retried() -> bool:
        return len(receiver.snapshot()) >= 2

    await wait_until(retried, what="two failed attempts")
    alerter.kill()
    failing.set()
    alerter.start()

    async def delivered() -> list[dict[str, Any]]:
        alerts = (await api.get("/api/v1/alerts", headers=h)).json()["data"]
        d = alerts[0]["deliveries"][0] if alerts else None
        return [d] if d and d["status"] == "delivered" else []

    (d,) = await wait_until(delivered, within=120, what="the delivery to finish after the restart")
    got = receiver.snapshot()
    assert {g.headers["webhook-id"] for g in got} == {d["id"]}
    assert got[-1].headers["webhook-id"] == d["id"]
    assert d["attempts"][-1]["status"] == 200
    assert all(a["status"] == 503 for a in d["attempts"][:-1])
