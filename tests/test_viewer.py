"""The tenant viewer's API and the console's activity counts, on the real stack."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx

from libs.common.exportverify import verify_export
from tests.conftest import Workspace, settle
from tests.stack import wait_until


async def _send(api: httpx.AsyncClient, ws: Workspace, events: list[dict[str, str]]) -> list[str]:
    r = await api.post("/api/v1/events/batch", json={"events": events}, headers=ws.headers)
    assert r.status_code == 202, r.text
    return [x["id"] for x in r.json()["results"]]


async def test_a_viewer_token_shows_its_tenant_only_and_exports_verifiable_csv(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace, tmp_path: Path
) -> None:
    events = [
        {"actor_id": f"u{i % 3}", "action": f"doc.{'read' if i % 2 else 'edit'}", "tenant_id": t}
        for i in range(30)
        for t in ("acme", "globex")
    ]
    ids = await _send(api, workspace, events)
    await settle(admin_db, workspace.id, ids)

    r = await api.post(
        "/api/v1/viewer-tokens", json={"tenant_id": "acme", "ttl": 600}, headers=workspace.headers
    )
    assert r.status_code == 201, r.text
    minted = r.json()
    assert minted["url"] == f"/viewer?token={minted['token']}"
    viewer = {"Authorization": f"Bearer {minted['token']}"}
    scope = (await api.get("/api/v1/viewer/scope", headers=viewer)).json()
    assert scope["tenant_id"] == "acme" and scope["workspace_name"]

    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/v1/viewer/events", params=params, headers=viewer)).json()
        seen += page["data"]
        cursor = page["pagination"]["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 30 and {e["tenant_id"] for e in seen} == {"acme"}
    filtered = await api.get("/api/v1/viewer/events", params={"action": "doc.r*"}, headers=viewer)
    assert {e["action"] for e in filtered.json()["data"]} == {"doc.read"}

    # No filter, header or path widens it.
    for params in ({"tenant_id": "globex"}, {"tenant_id": ""}, {"ip_country": "DE"}):
        r = await api.get("/api/v1/viewer/events", params=params, headers=viewer)
        if params.get("tenant_id") == "":
            assert {e["tenant_id"] for e in r.json()["data"]} == {"acme"}
        else:
            assert r.status_code in (403, 422), (params, r.text)
    assert (await api.get("/api/v1/events", headers=viewer)).status_code == 401
    assert (await api.get(f"/api/v1/events/{ids[1]}", headers=viewer)).status_code == 401
    assert (
        await api.post("/api/v1/viewer-tokens", json={"tenant_id": "globex"}, headers=viewer)
    ).status_code == 401
    actor = await api.post(
        "/api/v1/viewer-tokens",
        json={"tenant_id": "acme", "actor_id": "u1", "ttl": 60},
        headers=workspace.headers,
    )
    narrow = {"Authorization": f"Bearer {actor.json()['token']}"}
    rows = (await api.get("/api/v1/viewer/events", params={"limit": "100"}, headers=narrow)).json()
    assert {(e["tenant_id"], e["actor_id"]) for e in rows["data"]} == {("acme", "u1")}
    r = await api.get("/api/v1/viewer/events", params={"actor_id": "u2"}, headers=narrow)
    assert r.status_code == 403

    # The CSV holds what the viewer shows, and verifies offline as a filtered export.
    r = await api.get("/api/v1/viewer/events.csv", headers=viewer)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    path = tmp_path / "acme.csv"
    path.write_bytes(r.content)
    report = verify_export([path], complete=False)
    assert report.valid, report.as_dict()
    assert report.rows_checked == 30
    bad = await api.get("/api/v1/viewer/events.csv", params={"from": "yesterday"}, headers=viewer)
    assert bad.status_code == 422 and bad.json()["violations"][0]["field"] == "from"

    # Minting is in the admin log, without the token.
    async def logged() -> bool:
        n = await admin_db.fetchval(
            "SELECT count(*) FROM events WHERE workspace_id = $1 AND action = $2",
            workspace.id,
            "admin.viewer_token.created",
        )
        return bool(n == 2)

    await wait_until(logged, what="the admin events of the two tokens")
    bodies = await admin_db.fetch(
        "SELECT body FROM events WHERE workspace_id = $1 AND action = 'admin.viewer_token.created'",
        workspace.id,
    )
    assert all(minted["token"].split(".")[2].encode() not in b["body"] for b in bodies)


async def test_activity_counts_what_was_stored_by_hour_category_and_country(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    events = [{"actor_id": "a", "action": "auth.login", "ip_address": "81.2.69.142"}] * 4 + [
        {"actor_id": "a", "action": "doc.edit", "action_category": "content"}
    ] * 3
    ids = await _send(api, workspace, events)
    await settle(admin_db, workspace.id, ids)
    r = await api.get("/api/v1/stats/activity", params={"hours": "2"}, headers=workspace.headers)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["hours"]) == 2
    totals: dict[str, int] = {}
    for hour in doc["hours"]:
        for category, n in hour["by_category"].items():
            totals[category] = totals.get(category, 0) + n
    assert totals == {"auth": 4, "content": 3}
    stored = await admin_db.fetch(
        "SELECT ip_country, count(*) FROM events WHERE workspace_id = $1 AND ip_country IS NOT NULL"
        " GROUP BY 1",
        workspace.id,
    )
    assert {c["country"]: c["count"] for c in doc["countries"]} == {
        r["ip_country"]: r["count"] for r in stored
    }
    r = await api.get("/api/v1/stats/activity", params={"hours": "0"}, headers=workspace.headers)
    assert r.status_code == 422 and r.json()["violations"][0]["field"] == "hours"
