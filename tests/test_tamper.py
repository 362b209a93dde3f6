"""Verification against real tampering, done the way an insider would:
as the database superuser, with the append-only trigger switched off."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from libs.common.settings import Settings
from tests.conftest import Workspace, event, stored_count
from tests.stack import wait_until

pytestmark = pytest.mark.integration

N = 12


async def chain_of(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, ws: Workspace, n: int = N
) -> None:
    # Separate requests so the chain spans several records, not one segment.
    for i in range(0, n, 4):
        batch = [event(i + j, action="record.touch") for j in range(4)]
        r = await api.post("/api/v1/events/batch", json={"events": batch}, headers=ws.headers)
        assert r.status_code == 202, r.text

    async def stored() -> bool:
        return await stored_count(admin_db, ws.id) == n

    await wait_until(stored, what=f"{n} events stored")


async def verify(api: httpx.AsyncClient, ws: Workspace, **params: str) -> dict:  # type: ignore[type-arg]
    r = await api.get("/api/v1/verify", params=params, headers=ws.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def as_insider(admin_db: asyncpg.Pool, sql: str, *args: object) -> None:
    async with admin_db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # triggers off
        await conn.execute(sql, *args)


async def event_id(admin_db: asyncpg.Pool, ws: Workspace, seq: int) -> str:
    return str(
        await admin_db.fetchval(
            "SELECT id FROM events WHERE workspace_id=$1 AND seq=$2", ws.id, seq
        )
    )


async def test_clean_chain_verifies(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    await chain_of(api, admin_db, workspace)
    v = await verify(api, workspace)
    assert v["valid"] is True and v["breaks"] == []
    assert (v["events_checked"], v["first_seq"], v["last_seq"]) == (N, 1, N)
    head = await admin_db.fetchval(
        "SELECT hash FROM events WHERE workspace_id=$1 AND seq=$2", workspace.id, N
    )
    assert v["head_hash"] == head.hex()
    part = await verify(api, workspace, from_seq="5", to_seq="8")
    assert (part["valid"], part["events_checked"], part["first_seq"], part["last_seq"]) == (
        True,
        4,
        5,
        8,
    )


async def test_altered_event_is_hash_mismatch(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    await chain_of(api, admin_db, workspace)
    await as_insider(
        admin_db,
        "UPDATE events SET body = convert_to(replace(convert_from(body, 'UTF8'),"
        " 'record.touch', 'record.tamper'), 'UTF8') WHERE workspace_id = $1 AND seq = 7",
        workspace.id,
    )
    altered_id = await event_id(admin_db, workspace, 7)
    r = await api.get(f"/api/v1/events/{altered_id}", headers=workspace.headers)
    assert r.json()["action"] == "record.tamper"  # the API serves the altered body...
    v = await verify(api, workspace)  # ...and verify names it
    assert v["valid"] is False
    assert [(b["seq"], b["type"]) for b in v["breaks"]] == [(7, "hash_mismatch")]
    brk = v["breaks"][0]
    assert brk["event_id"] == altered_id
    assert brk["expected_hash"] != brk["actual_hash"]


async def test_deleted_event_is_gap(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    await chain_of(api, admin_db, workspace)
    await as_insider(
        admin_db, "DELETE FROM events WHERE workspace_id = $1 AND seq = 4", workspace.id
    )
    v = await verify(api, workspace)
    assert v["valid"] is False
    assert [(b["seq"], b["type"]) for b in v["breaks"]] == [(4, "gap")]
    assert v["events_checked"] == N - 1


async def test_altered_prev_hash_is_chain_break(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    await chain_of(api, admin_db, workspace)
    forged = bytes.fromhex("ab" * 32)
    await as_insider(
        admin_db,
        "UPDATE events SET prev_hash = $2 WHERE workspace_id = $1 AND seq = 9",
        workspace.id,
        forged,
    )
    v = await verify(api, workspace)
    assert [(b["seq"], b["type"]) for b in v["breaks"]] == [(9, "chain_break")]
    brk = v["breaks"][0]
    assert brk["actual_hash"] == forged.hex()
    prev = await admin_db.fetchval(
        "SELECT hash FROM events WHERE workspace_id=$1 AND seq=8", workspace.id
    )
    assert brk["expected_hash"] == prev.hex()


async def test_database_refuses_update_and_delete(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, settings: Settings, workspace: Workspace
) -> None:
    await chain_of(api, admin_db, workspace, n=4)
    # The trigger stops even the superuser while triggers are on...
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await admin_db.execute(
            "UPDATE events SET action = 'x' WHERE workspace_id = $1", workspace.id
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await admin_db.execute("DELETE FROM events WHERE workspace_id = $1", workspace.id)
    # ...and the services' role holds no such privilege at all.
    app = await asyncpg.connect(settings.database_url)
    try:
        for sql in (
            "UPDATE events SET action = 'x' WHERE workspace_id = $1",
            "DELETE FROM events WHERE workspace_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await app.execute(sql, workspace.id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute("TRUNCATE events")
    finally:
        await app.close()
    assert await stored_count(admin_db, workspace.id) == 4
    assert (await verify(api, workspace))["valid"] is True
