"""Exports, offline verification, scheduled verification and retention, end to end.

Real Kafka, PostgreSQL and every service process; the offline checks run
the ``chainlog verify-export`` command an auditor runs, on the files the
API served.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from libs.common import keys
from libs.common.settings import Settings
from tests.conftest import Workspace, settle
from tests.receivers import WebhookReceiver
from tests.stack import REPO, wait_until


def _events(n: int, start: int = 0, **fields: Any) -> list[dict[str, Any]]:
    return [
        {"actor_id": f"user-{i % 5}", "action": "document.update", **fields}
        for i in range(start, start + n)
    ]


async def ingest(api: httpx.AsyncClient, ws: Workspace, events: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for i in range(0, len(events), 1000):
        r = await api.post(
            "/api/v1/events/batch", json={"events": events[i : i + 1000]}, headers=ws.headers
        )
        assert r.status_code == 202, r.text
        ids += [x["id"] for x in r.json()["results"]]
    return ids


async def export(api: httpx.AsyncClient, ws: Workspace, **body: str) -> dict[str, Any]:
    """Request an export and wait until it completes; returns its status document."""
    r = await api.post("/api/v1/exports", json=body, headers=ws.headers)
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "pending" and created["id"]

    async def done() -> dict[str, Any] | None:
        doc = (await api.get(f"/api/v1/exports/{created['id']}", headers=ws.headers)).json()
        assert doc["status"] != "failed", doc
        return doc if doc["status"] == "completed" else None

    return await wait_until(done, within=120, what=f"export {created['id']}")


async def download(api: httpx.AsyncClient, ws: Workspace, doc: dict[str, Any]) -> bytes:
    assert doc["download_url"].endswith(f"/api/v1/exports/{doc['id']}/download")
    r = await api.get(f"/api/v1/exports/{doc['id']}/download", headers=ws.headers)
    assert r.status_code == 200, r.text
    assert len(r.content) == doc["file_size"]
    return r.content


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


def verify_export(*files: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "libs.cli.main", "verify-export", *map(str, files), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ---- exports ----------------------------------------------------------------------------------


async def test_export_with_each_filter(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    events = [
        {
            "actor_id": f"user-{i % 3}",
            "action": ("document.delete", "document.update", "user.login")[i % 3],
            "tenant_id": f"tenant-{i % 2}",
            "resource": ("document", "invoice")[i % 2],
            "session_id": f"s-{i % 4}",
            "actor_name": f"Name {i}",
            "occurred_at": f"2026-01-{1 + i % 28:02d}T12:00:00Z",
        }
        for i in range(40)
    ]
    ids = await ingest(api, workspace, events)
    await settle(admin_db, workspace.id, ids)
    cases = {
        "actor_id": "user-1",
        "action": "document.*",
        "tenant_id": "tenant-0",
        "resource": "invoice",
        "session_id": "s-2",
        "search": "name 1",
        "from": "2026-01-10T00:00:00Z",
        "to": "2026-01-05T00:00:00Z",
    }
    for name, value in cases.items():
        doc = await export(api, workspace, **{name: value})
        assert doc["filters"] == {name: value} and doc["complete_range"] is False
        rows = csv_rows(await download(api, workspace, doc))
        # The same filter through the query API names the same events.
        expected: list[str] = []
        params = {name: value, "limit": "100"}
        while True:
            page = (
                await api.get("/api/v1/events", params=params, headers=workspace.headers)
            ).json()
            expected += [e["id"] for e in page["data"]]
            if not page["pagination"]["has_more"]:
                break
            params["cursor"] = page["pagination"]["next_cursor"]
        # (Admin events of the exports themselves may match a filter too: the
        # comparison is over the events this test sent.)
        sent = set(ids)
        assert [r["id"] for r in rows if r["id"] in sent] == sorted(
            (i for i in expected if i in sent), key=ids.index
        ), name
        assert doc["total_rows"] == len(rows) > 0, name
    jsonl = await export(api, workspace, actor_id="user-2", format="jsonl")
    lines = [orjson.loads(x) for x in (await download(api, workspace, jsonl)).splitlines()]
    assert {e["actor_id"] for e in lines} == {"user-2"} and len(lines) == jsonl["total_rows"]
    # Every request is an admin event in the workspace's own chain.
    n = await admin_db.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = $1 AND action = 'admin.export.requested'",
        workspace.id,
    )
    assert n >= len(cases)


async def test_bad_export_requests_name_the_field(
    api: httpx.AsyncClient, workspace: Workspace
) -> None:
    for body, field in (
        ({"format": "xlsx"}, "format"),
        ({"from": "yesterday"}, "from"),
        ({"colour": "red"}, "colour"),
        ({"actor_id": 5}, "actor_id"),
    ):
        r = await api.post("/api/v1/exports", json=body, headers=workspace.headers)
        assert r.status_code == 422, r.text
        assert field in [v["field"] for v in r.json()["violations"]]
    r = await api.get(
        f"/api/v1/exports/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=workspace.headers
    )
    assert r.status_code == 404


async def test_100k_export_verifies_offline_and_a_tampered_cell_is_found(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace, tmp_path: Path
) -> None:
    tricky = [
        {"actor_id": "u", "action": "a.b", "actor_name": v}
        for v in ("=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "'quoted", "\tTab", "line\nbreak")
    ]
    events = tricky + _events(100_000 - len(tricky), metadata={"amount": 1.5, "tags": ["x", "é"]})
    ids = await ingest(api, workspace, events)
    await settle(admin_db, workspace.id, ids)
    doc = await export(api, workspace)
    assert doc["complete_range"] is True
    data = await download(api, workspace, doc)
    rows = csv_rows(data)
    assert len(rows) == doc["total_rows"] >= 100_000
    assert [int(r["seq"]) for r in rows] == list(range(1, len(rows) + 1))
    names = {r["actor_name"] for r in rows}
    # Formula cells are neutralised with one leading quote; the rest untouched.
    for v in ("=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "'quoted", "\tTab"):
        assert "'" + v in names and v not in names
    assert "line\nbreak" in names
    good = tmp_path / "export.csv"
    good.write_bytes(data)
    ok = verify_export(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert str(len(rows)) in ok.stdout
    # One changed cell: the exact line is named.
    lines = data.split(b"\n")
    target = next(i for i, line in enumerate(lines) if b",user-3," in line and i > 5000)
    lines[target] = lines[target].replace(b",user-3,", b",user-4,", 1)
    bad = tmp_path / "tampered.csv"
    bad.write_bytes(b"\n".join(lines))
    found = verify_export(bad)
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"{bad.name}:{target + 1}" in found.stdout + found.stderr
    # A filtered export: rows untouched, the gaps are expected, not breaks.
    some = await export(api, workspace, actor_id="user-3", format="jsonl")
    part = tmp_path / "filtered.jsonl"
    part.write_bytes(await download(api, workspace, some))
    assert verify_export(part).returncode == 1  # complete by default: gaps are breaks
    filtered = verify_export(part, extra=("--filtered",))
    assert filtered.returncode == 0, filtered.stdout + filtered.stderr


async def test_download_states_and_limits(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    ids = await ingest(api, workspace, _events(5))
    await settle(admin_db, workspace.id, ids)
    doc = await export(api, workspace)
    # Not yet done: 409. Expired: 410, and the file is deleted.
    pending = await admin_db.fetchval(
        "INSERT INTO exports (id, workspace_id, format, filters, requested_by, status, lease_until)"
        " VALUES (gen_random_uuid(), $1, 'csv', '{}', 'test', 'processing', now() + interval '1 hour')"
        " RETURNING id",
        workspace.id,
    )
    r = await api.get(f"/api/v1/exports/{pending}/download", headers=workspace.headers)
    assert r.status_code == 409 and r.json()["error"] == "export_not_ready"
    await admin_db.execute(
        "UPDATE exports SET expires_at = now() - interval '1 second' WHERE id = $1", doc["id"]
    )
    r = await api.get(f"/api/v1/exports/{doc['id']}/download", headers=workspace.headers)
    assert r.status_code == 410 and r.json()["error"] == "export_expired"
    assert (await api.get(f"/api/v1/exports/{doc['id']}", headers=workspace.headers)).json()[
        "download_url"
    ] is None
    # At most five running: four more held "processing", the sixth is refused.
    await admin_db.execute(
        "INSERT INTO exports (id, workspace_id, format, filters, requested_by, status, lease_until)"
        " SELECT gen_random_uuid(), $1, 'csv', '{}', 'test', 'processing', now() + interval '1 hour'"
        " FROM generate_series(1, 4)",
        workspace.id,
    )
    r = await api.post("/api/v1/exports", json={}, headers=workspace.headers)
    assert r.status_code == 429 and r.json()["error"] == "too_many_exports", r.text
    # Exports a month come from the plan.
    await admin_db.execute(
        "UPDATE exports SET status = 'failed' WHERE workspace_id = $1 AND requested_by = 'test'",
        workspace.id,
    )
    await admin_db.execute(
        "UPDATE workspaces SET limits_override = '{\"exports_per_month\": 6}' WHERE id = $1",
        workspace.id,
    )
    r = await api.post("/api/v1/exports", json={}, headers=workspace.headers)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "plan_limit_reached" and r.json()["limit"] == 6


# ---- scheduled verification --------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


async def test_scheduled_run_finds_a_superuser_tamper_and_alerts(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    receiver: WebhookReceiver,
) -> None:
    r = await api.post(
        "/api/v1/webhook-endpoints", json={"url": receiver.url}, headers=workspace.headers
    )
    assert r.status_code == 201, r.text
    rules = (await api.get("/api/v1/alert-rules", headers=workspace.headers)).json()["data"]
    assert [x["rule_type"] for x in rules] == ["chain_integrity"] and rules[0]["enabled"]
    ids = await ingest(api, workspace, _events(20))
    last = await settle(admin_db, workspace.id, ids)

    async def verified_to(seq: int) -> list[dict[str, Any]] | None:
        runs = (await api.get("/api/v1/verifications", headers=workspace.headers)).json()["data"]
        ok = [v for v in runs if v["valid"] and (v["to_seq"] or 0) >= seq]
        return runs if ok else None

    await wait_until(lambda: verified_to(last), within=60, what="a scheduled run to reach the head")
    # The insider rewrites an event that was already verified.
    async with admin_db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE events SET body = convert_to(replace(convert_from(body, 'UTF8'),"
            " 'document.update', 'document.undone'), 'UTF8') WHERE workspace_id = $1 AND seq = 5",
            workspace.id,
        )

    async def arrived() -> list[Any]:
        return [orjson.loads(x.body) for x in receiver.snapshot() if b"chain_integrity" in x.body]

    got = await wait_until(arrived, within=90, what="the chain_integrity alert at the receiver")
    assert got[0]["event"]["seq"] == 5 and got[0]["event"]["break"]["type"] == "hash_mismatch"
    runs = (await api.get("/api/v1/verifications", headers=workspace.headers)).json()["data"]
    broken = [v for v in runs if not v["valid"]]
    assert broken and broken[0]["kind"] == "full" and broken[0]["breaks"][0]["seq"] == 5


async def test_disabling_chain_integrity_is_an_admin_event(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    rule = (await api.get("/api/v1/alert-rules", headers=workspace.headers)).json()["data"][0]
    r = await api.patch(
        f"/api/v1/alert-rules/{rule['id']}", json={"enabled": False}, headers=workspace.headers
    )
    assert r.status_code == 200, r.text

    async def recorded() -> bool:
        return bool(
            await admin_db.fetchval(
                "SELECT count(*) FROM events WHERE workspace_id = $1"
                " AND action = 'admin.alert_rule.updated' AND resource_id = $2",
                workspace.id,
                rule["id"],
            )
        )

    await wait_until(recorded, what="the admin event of disabling chain_integrity")


# ---- retention ---------------------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "libs.cli.main", *args],
        cwd=REPO,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return orjson.loads(done.stdout)


async def test_retention_archives_removes_and_the_chain_still_verifies(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    async with admin_db.acquire() as conn:
        ws_id, key = await keys.create_workspace(conn, f"retention-{os.urandom(3).hex()}", "pro")
    ws = Workspace(ws_id, key.key)
    ids = await ingest(api, ws, _events(30))
    last = await settle(admin_db, ws.id, ids)
    # Keep nothing: every event is older than a zero-day window.
    await admin_db.execute(
        "UPDATE workspaces SET limits_override = '{\"retention_days\": 0}' WHERE id = $1", ws.id
    )
    runs = _cli(env, "retention", "run", "--workspace", ws.id)
    assert len(runs) == 1 and runs[0]["anchor"]["seq"] == last
    assert runs[0]["events_removed"] == last
    assert (
        await admin_db.fetchval(
            "SELECT count(*) FROM events WHERE workspace_id = $1 AND seq <= $2", ws.id, last
        )
        == 0
    )
    # The archive is on disk with its manifest, and verifies offline from seq 1.
    files = [settings.storage_dir / a["key"] for a in runs[0]["archives"]]
    assert all(f.exists() for f in files)
    assert all(f.with_name(f.name.replace(".jsonl.gz", ".manifest.json")).exists() for f in files)
    offline = verify_export(*files)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    # The retention run is an admin event after the anchor; the API verifies from the anchor.
    more = await ingest(api, ws, _events(5, start=100))
    await settle(admin_db, ws.id, more)
    v = (await api.get("/api/v1/verify", headers=ws.headers)).json()
    assert v["valid"] is True, v
    assert v["anchor"]["seq"] == last and v["first_seq"] == last + 1
    # The archive and an export of what is left verify as one chain.
    doc = await export(api, ws)
    rest = tmp_path / "rest.csv"
    rest.write_bytes(await download(api, ws, doc))
    together = verify_export(*files, rest)
    assert together.returncode == 0, together.stdout + together.stderr
    # Nobody else can delete; the retention role cannot delete past the anchor.
    app = await asyncpg.connect(settings.database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute("DELETE FROM events WHERE workspace_id = $1", ws.id)
    finally:
        await app.close()
    retention = await asyncpg.connect(settings.retention_database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await retention.execute("DELETE FROM events WHERE workspace_id = $1", ws.id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await retention.execute("UPDATE events SET action = 'x' WHERE workspace_id = $1", ws.id)
    finally:
        await retention.close()
    admin_events = await admin_db.fetchval(
        "SELECT count(*) FROM events WHERE workspace_id = $1 AND action = 'admin.retention.archived'",
        ws.id,
    )
    assert admin_events == 1
