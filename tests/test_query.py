"""Send events through the real gateway, read them back with every filter."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Workspace, event, stored_count
from tests.stack import wait_until

pytestmark = pytest.mark.integration

EVENTS: list[dict[str, Any]] = [
    event(
        0,
        action="document.delete",
        actor_name="Ada Lovelace",
        resource="document",
        resource_id="doc-1",
        tenant_id="acme",
        session_id="s-1",
        targets=[{"type": "folder", "id": "f-9", "name": "Reports"}],
        occurred_at="2026-01-10T12:00:00Z",
        ip_address="203.0.113.5",
        metadata={"reason": "cleanup", "n": 3},
    ),
    event(
        1,
        action="document.create",
        resource="document",
        resource_id="doc-2",
        tenant_id="acme",
        occurred_at="2026-01-11T12:00:00Z",
    ),
    event(
        2,
        action="user.login",
        tenant_id="globex",
        session_id="s-2",
        occurred_at="2026-01-12T12:00:00Z",
        actor_name="Grace Hopper",
    ),
    event(
        3,
        action="user.logout",
        tenant_id="globex",
        session_id="s-2",
        occurred_at="2026-01-13T12:00:00Z",
    ),
    event(
        4,
        action="billing.refund",
        targets=[{"type": "invoice", "id": "inv-7"}],
        occurred_at="2026-01-14T12:00:00Z",
    ),
]


async def send(api: httpx.AsyncClient, ws: Workspace, events: list[dict[str, Any]]) -> list[str]:
    r = await api.post("/api/v1/events/batch", json={"events": events}, headers=ws.headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == len(events), body
    return [item["id"] for item in body["results"]]


async def fill(api: httpx.AsyncClient, admin_db: asyncpg.Pool, ws: Workspace) -> list[str]:
    ids = await send(api, ws, EVENTS)

    async def all_stored() -> bool:
        return await stored_count(admin_db, ws.id) == len(EVENTS)

    await wait_until(all_stored, what="the batch to be queryable")
    return ids


async def actions(api: httpx.AsyncClient, ws: Workspace, **params: str) -> list[str]:
    r = await api.get("/api/v1/events", params=params, headers=ws.headers)
    assert r.status_code == 200, r.text
    return [e["action"] for e in r.json()["data"]]


async def test_filters(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    await fill(api, admin_db, workspace)
    q = lambda **p: actions(api, workspace, **p)  # noqa: E731
    assert await q() == [
        "billing.refund",
        "user.logout",
        "user.login",
        "document.create",
        "document.delete",
    ]
    assert await q(action="document.*") == ["document.create", "document.delete"]
    assert await q(action="user.login") == ["user.login"]
    assert await q(actor_id="user-2") == ["user.login"]
    assert await q(resource="document") == ["document.create", "document.delete"]
    assert await q(resource_id="doc-2") == ["document.create"]
    assert await q(tenant_id="globex") == ["user.logout", "user.login"]
    assert await q(session_id="s-2") == ["user.logout", "user.login"]
    assert await q(target_type="invoice") == ["billing.refund"]
    assert await q(target_id="f-9") == ["document.delete"]
    assert await q(target_type="folder", target_id="inv-7") == []
    assert await q(search="grace") == ["user.login"]
    assert await q(search="LOVELACE") == ["document.delete"]
    assert await q(**{"from": "2026-01-12T00:00:00Z", "to": "2026-01-14T00:00:00Z"}) == [
        "user.logout",
        "user.login",
    ]
    assert await q(action="nothing.*") == []


async def test_event_shape_and_get_by_id(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    ids = await fill(api, admin_db, workspace)
    r = await api.get(f"/api/v1/events/{ids[0]}", headers=workspace.headers)
    assert r.status_code == 200, r.text
    ev = r.json()
    assert ev["id"] == ids[0]
    assert ev["seq"] == 1 and ev["prev_hash"] == "0" * 64 and len(ev["hash"]) == 64
    assert ev["workspace_id"] == workspace.id
    assert ev["targets"] == [{"type": "folder", "id": "f-9", "name": "Reports"}]
    assert ev["metadata"] == {"reason": "cleanup", "n": 3}
    assert ev["occurred_at"] == "2026-01-10T12:00:00.000000Z"
    assert ev["ip_country"] is None and ev["ip_city"] is None
    second = (await api.get(f"/api/v1/events/{ids[1]}", headers=workspace.headers)).json()
    assert second["prev_hash"] == ev["hash"]
    assert (
        await api.get("/api/v1/events/not-a-uuid", headers=workspace.headers)
    ).status_code == 404


async def test_cursor_paging(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    total = 57
    await send(api, workspace, [event(i, action=f"page.item{i}") for i in range(total)])
    await wait_until(lambda: _count_is(admin_db, workspace, total), what="57 events stored")
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "10"} | ({"cursor": cursor} if cursor else {})
        r = await api.get("/api/v1/events", params=params, headers=workspace.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        seen.extend(e["seq"] for e in body["data"])
        pages += 1
        if not body["pagination"]["has_more"]:
            assert body["pagination"]["next_cursor"] is None
            break
        cursor = body["pagination"]["next_cursor"]
    assert pages == 6
    assert seen == list(range(total, 0, -1))


async def _count_is(admin_db: asyncpg.Pool, ws: Workspace, n: int) -> bool:
    return await stored_count(admin_db, ws.id) == n


async def test_one_workspace_cannot_see_another(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    ids = await fill(api, admin_db, workspace)
    async with admin_db.acquire() as conn:
        from libs.common import keys

        other_id, other_key = await keys.create_workspace(conn, "other", "enterprise")
    other = Workspace(other_id, other_key.key)
    assert (await api.get(f"/api/v1/events/{ids[0]}", headers=other.headers)).status_code == 404
    r = await api.get("/api/v1/events", headers=other.headers)
    assert r.json()["data"] == []
    v = (await api.get("/api/v1/verify", headers=other.headers)).json()
    assert v["events_checked"] == 0 and v["valid"] is True
