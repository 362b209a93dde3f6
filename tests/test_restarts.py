"""Restart the broker, then the database, in the middle of a stream.

Producers retry what was not acknowledged (503 or a dropped connection),
as a real client would; every event that got a 202 must be chained exactly
once, and the chain must verify.
"""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg
import httpx
import pytest

from tests.conftest import Workspace, event
from tests.stack import REPO, Service, stack_env, wait_until

pytestmark = pytest.mark.integration

REQUESTS = 60
EVENTS_PER_REQUEST = 20
RETRY_BACKOFF_S = 0.3  # what a client waits between retries; not a wait for a condition


async def _send_with_retries(
    api: httpx.AsyncClient, ws: Workspace, batch: list[dict[str, object]], acked: list[str]
) -> None:
    for _ in range(400):  # bounded: about two minutes of retrying
        try:
            r = await api.post("/api/v1/events/batch", json={"events": batch}, headers=ws.headers)
        except httpx.TransportError:
            r = None
        if r is not None and r.status_code == 202:
            acked.extend(item["id"] for item in r.json()["results"])
            return
        assert r is None or r.status_code in (500, 502, 503), r.text
        await asyncio.sleep(RETRY_BACKOFF_S)
    raise AssertionError("the gateway never accepted the batch again")


async def _stream_across(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, ws: Workspace, script: str
) -> None:
    acked: list[str] = []
    restarted = False
    for n in range(REQUESTS):
        batch = [
            event(n * EVENTS_PER_REQUEST + j, action="restart.step")
            for j in range(EVENTS_PER_REQUEST)
        ]
        await _send_with_retries(api, ws, batch, acked)
        if n == REQUESTS // 3:
            proc = await asyncio.create_subprocess_exec(
                "bash",
                str(REPO / "deploy" / "local" / script),
                "restart",
                env=stack_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            assert await proc.wait() == 0, f"{script} restart failed"
            restarted = True
    assert restarted and len(acked) == REQUESTS * EVENTS_PER_REQUEST

    async def all_stored() -> bool:
        try:
            n = await admin_db.fetchval(
                "SELECT count(*) FROM events WHERE workspace_id = $1", ws.id
            )
        except (asyncpg.PostgresError, OSError):
            return False
        return n >= len(acked)

    await wait_until(all_stored, within=180, what="every acknowledged event to be stored")
    rows = await admin_db.fetch(
        "SELECT seq, id FROM events WHERE workspace_id = $1 ORDER BY seq", ws.id
    )
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert sorted(str(r["id"]) for r in rows) == sorted(acked), "lost or duplicated events"
    v = (await api.get("/api/v1/verify", headers=ws.headers)).json()
    assert v["valid"] is True and v["events_checked"] == len(acked)


def _local_stack_only(env: dict[str, str]) -> None:
    """Restarting uses the local stack scripts; containers are restarted by Docker."""
    if env.get("CHAINLOG_TEST_INFRA_ACTIVE") == "docker":
        pytest.skip("the broker and database run in containers: restart them with Docker")


async def test_broker_restart_mid_stream(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
    env: dict[str, str],
) -> None:
    _local_stack_only(env)
    await _stream_across(api, admin_db, workspace, "kafka.sh")
    assert all(s.running() for s in services.values()), "a service died with the broker"


async def test_database_restart_mid_stream(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
    env: dict[str, str],
) -> None:
    _local_stack_only(env)
    await _stream_across(api, admin_db, workspace, "postgres.sh")
    assert all(s.running() for s in services.values()), "a service died with the database"


async def test_gateway_killed_mid_stream_with_idempotency_keys_is_exactly_once(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
) -> None:
    """SIGKILL the gateway while batches are in flight; clients retry with the
    same idempotency keys. Whatever the gateway had published but not yet
    answered must not become a second copy."""
    gateway = services["ingest"]
    sent: list[dict[str, object]] = []

    async def client(c: int) -> None:
        for n in range(REQUESTS // 3):
            batch = [
                event(j, action="gateway.step", idempotency_key=f"c{c}-r{n}-e{j}")
                for j in range(EVENTS_PER_REQUEST)
            ]
            sent.extend(batch)
            await _send_with_retries(api, workspace, batch, [])

    async def kill_when_busy() -> None:
        async def some_stored() -> bool:
            count = await admin_db.fetchval(
                "SELECT count(*) FROM events WHERE workspace_id = $1", workspace.id
            )
            return bool(count)

        await wait_until(some_stored, what="the first events to be stored")
        gateway.kill()
        gateway.start()

    await asyncio.gather(*(client(c) for c in range(3)), kill_when_busy())
    keys = {e["idempotency_key"] for e in sent}

    async def all_stored() -> bool:
        count = await admin_db.fetchval(
            "SELECT count(*) FROM events WHERE workspace_id = $1", workspace.id
        )
        return count >= len(keys)

    await wait_until(all_stored, within=180, what="every keyed event to be stored")
    rows = await admin_db.fetch(
        "SELECT seq, convert_from(body, 'UTF8')::jsonb->>'idempotency_key' AS k"
        " FROM events WHERE workspace_id = $1 ORDER BY seq",
        workspace.id,
    )
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert sorted(r["k"] for r in rows) == sorted(keys), "a key was lost or chained twice"
    v = (await api.get("/api/v1/verify", headers=workspace.headers)).json()
    assert v["valid"] is True and v["events_checked"] == len(keys)
