"""Legal holds, end to end: retention keeps what a hold matches, verification and an
offline check of the export still find the chain whole, and a release lets it go.

Real Kafka, PostgreSQL and every service process; retention is run by the
``chainlog retention run`` command, as in tests/test_exports.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from libs.common import holds, keys
from libs.common.settings import Settings
from tests.conftest import Workspace, settle
from tests.stack import wait_until
from tests.test_exports import _cli, download, export, ingest, verify_export

HELD, OTHER = "held-actor", "other-actor"


async def _workspace(admin_db: asyncpg.Pool, name: str) -> Workspace:
    async with admin_db.acquire() as conn:
        ws_id, key = await keys.create_workspace(conn, f"{name}-{os.urandom(3).hex()}", "pro")
    return Workspace(ws_id, key.key)


async def _admin_event(admin_db: asyncpg.Pool, ws: Workspace, action: str, after: int = 0) -> Any:
    """Wait for an admin event ``action`` past seq ``after`` in the workspace's chain; its metadata."""

    async def stored() -> Any:
        body = await admin_db.fetchval(
            "SELECT body FROM events WHERE workspace_id = $1 AND action = $2 AND seq > $3"
            " ORDER BY seq DESC LIMIT 1",
            ws.id,
            f"admin.{action}",
            after,
        )
        return None if body is None else orjson.loads(body)["metadata"]

    return await wait_until(stored, within=120, what=f"admin event {action} after seq {after}")


async def _seqs(admin_db: asyncpg.Pool, ws: Workspace, actor: str) -> list[int]:
    rows = await admin_db.fetch(
        "SELECT seq FROM events WHERE workspace_id = $1 AND actor_id = $2 ORDER BY seq",
        ws.id,
        actor,
    )
    return [r["seq"] for r in rows]


async def test_a_hold_survives_retention_verifies_and_goes_once_released(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    ws = await _workspace(admin_db, "hold")
    events = [
        {"actor_id": HELD if i % 3 == 0 else OTHER, "action": "document.update"} for i in range(18)
    ]
    await settle(admin_db, ws.id, await ingest(api, ws, events))
    held = await _seqs(admin_db, ws, HELD)
    assert len(held) == 6

    body = {"name": "Smith v. Acme", "filter": {"actor_id": HELD}, "reason": "litigation"}
    r = await api.post("/api/v1/legal-holds", json=body, headers=ws.headers)
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["active"] is True and hold["filter"] == {"actor_id": HELD}
    r = await api.get(f"/api/v1/legal-holds/{hold['id']}", headers=ws.headers)
    assert r.status_code == 200 and r.json()["events_held"] == 6, r.text
    listed = (await api.get("/api/v1/legal-holds", headers=ws.headers)).json()["data"]
    assert [h["id"] for h in listed] == [hold["id"]]
    created = await _admin_event(admin_db, ws, "legal_hold.created")
    assert created["after"]["id"] == hold["id"]

    # Keep nothing: every event is older than a zero-day window; the hold keeps its six.
    await admin_db.execute(
        "UPDATE workspaces SET limits_override = '{\"retention_days\": 0}' WHERE id = $1", ws.id
    )
    [run] = _cli(env, "retention", "run", "--workspace", ws.id)
    anchor = run["anchor"]
    assert anchor["seq"] > held[-1]
    assert run["kept"] == 6
    assert run["holds"] == [{"id": hold["id"], "name": "Smith v. Acme", "kept": 6}]
    assert run["events_removed"] == anchor["seq"] - 6
    assert await _seqs(admin_db, ws, HELD) == held
    assert await _seqs(admin_db, ws, OTHER) == []
    archived = await _admin_event(admin_db, ws, "retention.archived")
    assert archived["after"]["kept"] == 6 and archived["after"]["holds"] == run["holds"]

    # Verification: the islands are checked on their own, the chain goes on from the anchor.
    v = (await api.get("/api/v1/verify", headers=ws.headers)).json()
    assert v["valid"] is True and v["breaks"] == [], v
    assert v["anchor"] == anchor and v["first_seq"] == anchor["seq"] + 1
    assert v["held"] == {"count": 6, "seqs": held, "seqs_truncated": False}

    # Not even the retention role can delete a held event.
    retention = await asyncpg.connect(settings.retention_database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="legal hold"):
            await retention.execute(
                "DELETE FROM events WHERE workspace_id = $1 AND seq = $2", ws.id, held[0]
            )
    finally:
        await retention.close()

    # Offline: the archives from seq 1, and the export of what is stored from the anchor.
    archives = [settings.storage_dir / a["key"] for a in run["archives"]]
    alone = verify_export(*archives)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    doc = await export(api, ws)
    stored = tmp_path / "stored.csv"
    stored.write_bytes(await download(api, ws, doc))
    offline = verify_export(stored, extra=("--anchor", f"{anchor['seq']}:{anchor['hash']}"))
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "held: 6 rows at or below the anchor" in offline.stdout
    # Without the anchor the islands' jumps are gaps: the anchor is what vouches for them.
    assert verify_export(stored).returncode == 1

    # Release: an admin event; the events go at the next run, and the chain still verifies.
    r = await api.post(
        f"/api/v1/legal-holds/{hold['id']}/release", json={"reason": "settled"}, headers=ws.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False and r.json()["release_reason"] == "settled"
    again = await api.post(
        f"/api/v1/legal-holds/{hold['id']}/release", json={"reason": "twice"}, headers=ws.headers
    )
    assert again.status_code == 409, again.text
    gone = (await api.get(f"/api/v1/legal-holds/{hold['id']}", headers=ws.headers)).json()
    assert gone["events_held"] == 0
    released = await _admin_event(admin_db, ws, "legal_hold.released")
    assert released["before"]["active"] is True and released["after"]["released_by"]

    [second] = _cli(env, "retention", "run", "--workspace", ws.id)
    assert second["kept"] == 0 and second["holds"] == []
    assert second["events_removed"] >= 6
    assert await _seqs(admin_db, ws, HELD) == []
    # The first run's admin event is gone with its range; this run's follows the anchor.
    last_run = await _admin_event(admin_db, ws, "retention.archived", second["anchor"]["seq"])
    assert last_run["after"]["kept"] == 0
    v = (await api.get("/api/v1/verify", headers=ws.headers)).json()
    assert v["valid"] is True and v["breaks"] == [], v
    assert v["held"]["count"] == 0 and v["anchor"] == second["anchor"]


async def test_what_a_hold_matches(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    """The filter's rules, through the one SQL definition: counts and erasure's question."""
    ws = workspace
    events = [
        {"actor_id": "payer", "action": "invoice.paid", "tenant_id": "acme"},
        {"actor_id": "payer", "action": "invoice.paid", "tenant_id": "globex"},
        {"actor_id": "editor", "action": "document.update", "resource": "document"},
    ]
    await settle(admin_db, ws.id, await ingest(api, ws, events))

    async def create(name: str, where: dict[str, str]) -> str:
        body = {"name": name, "filter": where, "reason": "test"}
        r = await api.post("/api/v1/legal-holds", json=body, headers=ws.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def count(hold_id: str) -> int:
        r = await api.get(f"/api/v1/legal-holds/{hold_id}", headers=ws.headers)
        return int(r.json()["events_held"])

    invoices = await create("invoices", {"action": "invoice.*", "tenant_id": "acme"})
    # '_' is a character of actions, not LIKE's any-character.
    literal = await create("literal", {"action": "doc_ment.*"})
    documents = await create("documents", {"action": "*.update", "resource": "document"})
    later = await create("later", {"actor_id": "editor", "from": "2999-01-01T00:00:00Z"})
    nobody = await create("nobody yet", {"actor_id": "newcomer"})
    assert [await count(h) for h in (invoices, literal, documents, later, nobody)] == [
        1,
        0,
        1,
        0,
        0,
    ]
    async with admin_db.acquire() as conn:
        assert await holds.subject_held(conn, ws.id, "payer") == [invoices]
        assert await holds.subject_held(conn, ws.id, "editor") == [documents, later]
        assert await holds.subject_held(conn, ws.id, "newcomer") == [nobody]
        assert await holds.subject_held(conn, ws.id, "stranger") == []
    r = await api.post(
        f"/api/v1/legal-holds/{documents}/release", json={"reason": "done"}, headers=ws.headers
    )
    assert r.status_code == 200, r.text
    async with admin_db.acquire() as conn:
        assert await holds.subject_held(conn, ws.id, "editor") == [later]

    # Bad requests name each field; another workspace's hold is not found.
    bad = {"name": "", "filter": {"session_id": "s", "from": "soon"}, "reason": "x", "x": 1}
    r = await api.post("/api/v1/legal-holds", json=bad, headers=ws.headers)
    assert r.status_code == 422, r.text
    fields = [v["field"] for v in r.json()["violations"]]
    assert fields == ["x", "name", "filter.session_id", "filter.from"]
    other = await _workspace(admin_db, "other")
    r = await api.get(f"/api/v1/legal-holds/{invoices}", headers=other.headers)
    assert r.status_code == 404, r.text
    r = await api.post(
        f"/api/v1/legal-holds/{invoices}/release", json={"reason": "x"}, headers=other.headers
    )
    assert r.status_code == 404, r.text
