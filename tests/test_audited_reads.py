"""Audited reads and the auditor key, end to end (docs/audited-reads.md).

Real gateway, Kafka, chainer and exporter. A workspace turns read auditing
on; its owner refreshes a dashboard (three pages of one query and the
activity chart), opens an event and a viewer link; an auditor key verifies
and exports. Each kind of read by each reader with each filter must come
back as ONE ``admin.read.*`` event in the workspace's own chain, with the
right counts, and the chain must still verify.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import Workspace, event, stored_count
from tests.stack import API_PORT, Service, wait_for_api, wait_until

pytestmark = pytest.mark.integration

EVENTS = 30
PAGE = 10


async def _chain_events(db: asyncpg.Pool, ws: Workspace, like: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT body FROM events WHERE workspace_id = $1 AND action LIKE $2 ORDER BY seq",
        ws.id,
        like,
    )
    return [orjson.loads(r["body"]) for r in rows]


async def test_reads_are_recorded_in_summary_and_the_chain_verifies(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    owner = workspace.headers
    switched = await api.patch("/api/v1/workspace", json={"audit_reads": True}, headers=owner)
    assert switched.status_code == 200, switched.text
    assert switched.json()["audit_reads"] is True
    bad = await api.patch("/api/v1/workspace", json={"audit_reads": "yes"}, headers=owner)
    assert bad.status_code == 422 and bad.json()["violations"][0]["field"] == "audit_reads"

    mixed = await api.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["auditor", "admin"]}, headers=owner
    )
    assert mixed.status_code == 422 and mixed.json()["violations"][0]["field"] == "scopes"
    made = await api.post(
        "/api/v1/api-keys", json={"name": "external auditor", "scopes": ["auditor"]}, headers=owner
    )
    assert made.status_code == 201, made.text
    auditor = {"Authorization": f"Bearer {made.json()['key']}"}
    auditor_id = f"api_key:{made.json()['prefix']}"
    owner_key = (await api.get("/api/v1/api-keys", headers=owner)).json()["data"][0]
    owner_id = f"api_key:{owner_key['prefix']}"

    r = await api.post(
        "/api/v1/events/batch", json={"events": [event(i) for i in range(EVENTS)]}, headers=owner
    )
    assert r.status_code == 202, r.text
    ids = [x["id"] for x in r.json()["results"]]

    async def stored() -> bool:  # from the database: an API read would be audited
        rows = await admin_db.fetchval(
            "SELECT count(*) FROM events WHERE workspace_id = $1 AND id = ANY($2::uuid[])",
            workspace.id,
            ids,
        )
        return bool(rows == EVENTS)

    await wait_until(stored, within=120, what=f"{EVENTS} events to be stored")

    # The owner's dashboard refresh: every page of one query, and the chart.
    params: dict[str, str] = {"action": "document.update", "limit": str(PAGE)}
    pages = rows = 0
    while True:
        page = (await api.get("/api/v1/events", params=params, headers=owner)).json()
        pages, rows = pages + 1, rows + len(page["data"])
        if not page["pagination"]["has_more"]:
            break
        params["cursor"] = page["pagination"]["next_cursor"]
    assert (pages, rows) == (EVENTS // PAGE, EVENTS)
    chart = await api.get("/api/v1/stats/activity", params={"hours": "24"}, headers=owner)
    assert chart.status_code == 200
    one = await api.get(f"/api/v1/events/{ids[0]}", headers=owner)
    assert one.status_code == 200

    # A viewer link: its reads name the token's id, never the token.
    minted = await api.post(
        "/api/v1/viewer-tokens", json={"tenant_id": "acme", "ttl": 600}, headers=owner
    )
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    viewed = await api.get("/api/v1/viewer/events", headers={"Authorization": f"Bearer {token}"})
    assert viewed.status_code == 200 and viewed.json()["data"] == []

    # The auditor: reads, verifies, exports; changes nothing.
    for method, path, body in (
        ("PATCH", "/api/v1/workspace", {"audit_reads": False}),
        ("POST", "/api/v1/alert-rules", {"name": "x", "rule_type": "threshold"}),
        ("POST", "/api/v1/api-keys", {"name": "x", "scopes": ["auditor"]}),
        ("POST", "/api/v1/events", event(0)),
        ("POST", "/api/v1/viewer-tokens", {"tenant_id": "acme"}),
    ):
        refused = await api.request(method, path, json=body, headers=auditor)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"] == "forbidden"
    checked = (await api.get("/api/v1/verify", headers=auditor)).json()
    assert checked["valid"] is True
    requested = await api.post(
        "/api/v1/exports", json={"action": "document.update"}, headers=auditor
    )
    assert requested.status_code == 202, requested.text
    export_id = requested.json()["id"]
    polls = 0

    async def completed() -> bool:
        nonlocal polls
        polls += 1
        doc = (await api.get(f"/api/v1/exports/{export_id}", headers=auditor)).json()
        assert doc["status"] != "failed", doc
        return bool(doc["status"] == "completed")

    await wait_until(completed, within=120, interval=0.5, what="the auditor's export")
    file = await api.get(f"/api/v1/exports/{export_id}/download", headers=auditor)
    assert file.status_code == 200

    # Every group comes back as one admin.read.* event once its window is over.
    expected = {
        (owner_id, "admin.read.events"),
        (owner_id, "admin.read.activity"),
        (owner_id, "admin.read.event"),
        (auditor_id, "admin.read.verify"),
        (auditor_id, "admin.read.export_download"),
    }

    async def recorded() -> list[dict[str, Any]]:
        got = await _chain_events(admin_db, workspace, "admin.read.%")
        seen = {(e["actor_id"], e["action"]) for e in got}
        exports = sum(
            e["metadata"]["after"]["requests"] for e in got if e["action"] == "admin.read.exports"
        )
        viewer = any(e["action"] == "admin.read.viewer_events" for e in got)
        return got if expected <= seen and exports == polls and viewer else []

    reads = await wait_until(recorded, within=60, what="the admin.read events")
    by_group: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in reads:
        assert e["action_category"] == "admin" and e["resource"] == "audit_log"
        by_group[(e["actor_id"], e["action"])].append(e["metadata"]["after"])

    def only(actor: str, action: str) -> dict[str, Any]:
        (summary,) = by_group.pop((actor, action))
        return summary

    dashboard = only(owner_id, "admin.read.events")
    assert dashboard["requests"] == pages and dashboard["rows"] == EVENTS
    assert dashboard["filters"] == {"action": "document.update"}  # no cursor, no limit
    assert dashboard["first_at"] <= dashboard["last_at"]
    activity = only(owner_id, "admin.read.activity")
    assert (activity["requests"], activity["rows"], activity["filters"]) == (1, 24, {"hours": "24"})
    fetched = only(owner_id, "admin.read.event")
    assert (fetched["requests"], fetched["rows"], fetched["items"]) == (1, 1, [ids[0]])
    verified = only(auditor_id, "admin.read.verify")
    assert verified["requests"] == 1 and verified["rows"] == checked["events_checked"]
    downloaded = only(auditor_id, "admin.read.export_download")
    assert (downloaded["requests"], downloaded["rows"]) == (1, EVENTS)
    assert downloaded["items"] == [export_id]
    for status in by_group.pop((auditor_id, "admin.read.exports")):
        assert status["items"] == [export_id] and status["filters"] == {}
    (viewer_key,) = [k for k in by_group if k[1] == "admin.read.viewer_events"]
    viewer_reads = by_group.pop(viewer_key)
    assert [v["filters"] for v in viewer_reads] == [{"tenant_id": "acme"}]
    assert viewer_key[0].startswith("viewer_token:") and token not in str(reads)
    (mint,) = await _chain_events(admin_db, workspace, "admin.viewer_token.created")
    assert viewer_key[0] == f"viewer_token:{mint['resource_id']}"
    assert by_group == {}, "reads recorded that no one made"

    # The switch and the auditor's export request are admin events of their own.
    (change,) = await _chain_events(admin_db, workspace, "admin.workspace.updated")
    assert change["metadata"]["before"]["audit_reads"] is False
    assert change["metadata"]["after"]["audit_reads"] is True
    (asked,) = await _chain_events(admin_db, workspace, "admin.export.requested")
    assert asked["actor_id"] == auditor_id

    final = (await api.get("/api/v1/verify", headers=owner)).json()
    assert final["valid"] is True, final
    assert final["events_checked"] == await stored_count(admin_db, workspace.id)


async def _read_through_a_gateway(
    env: dict[str, str], ws: Workspace, action: str, stop: str
) -> bytes:
    """Two pages of one query through a gateway whose window is an hour, then
    stop it (``stop``: SIGTERM, or SIGKILL as in a crash); returns its log."""
    port = API_PORT + 8
    gateway = Service(
        "ingest",
        env | {"CHAINLOG_API_PORT": str(port), "CHAINLOG_READ_AUDIT_WINDOW_SECONDS": "3600"},
        instance="-reads",
    )
    logged = gateway.log_path.stat().st_size if gateway.log_path.exists() else 0
    gateway.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as b:
            await wait_for_api(b)
            for page in ({}, {"cursor": "eyJzIjoxfQ"}):  # a cursor for seq 1
                params = {"action": action, "limit": "1", **page}
                got = await b.get("/api/v1/events", params=params, headers=ws.headers)
                assert got.status_code == 200, got.text
    finally:
        if stop == "kill":
            gateway.kill()
        else:
            gateway.stop()
    return gateway.log_path.read_bytes()[logged:]


async def test_a_stopping_gateway_writes_what_it_summarised_and_a_crash_loses_it(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    env: dict[str, str],
    workspace: Workspace,
) -> None:
    """With an hour-long window, only the flush on shutdown can write the
    reads' event; a SIGKILL loses them (the documented gap)."""
    r = await api.patch("/api/v1/workspace", json={"audit_reads": True}, headers=workspace.headers)
    assert r.status_code == 200, r.text
    await _read_through_a_gateway(env, workspace, "crashed.*", "kill")
    log = await _read_through_a_gateway(env, workspace, "stopped.*", "stop")
    assert b"read_audit." not in log  # nothing dropped, deferred or lost

    async def written() -> list[dict[str, Any]]:
        return await _chain_events(admin_db, workspace, "admin.read.events")

    # One partition per workspace: had the killed gateway written anything,
    # it would be stored before the stopped one's event.
    (summary,) = await wait_until(written, within=60, what="the flushed admin.read.events")
    after = summary["metadata"]["after"]
    assert (after["requests"], after["filters"]) == (2, {"action": "stopped.*"})
