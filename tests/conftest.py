"""Fixtures of the end-to-end suite: the real stack, fresh workspaces."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from libs.common import keys
from libs.common.settings import Settings
from tests import containers
from tests.stack import (
    API_URL,
    METRICS_PORTS,
    STATE,
    Service,
    ensure_infra,
    stack_env,
    wait_for_api,
    wait_until,
)


@dataclass(frozen=True)
class Workspace:
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="session")
def env() -> Iterator[dict[str, str]]:
    environment = stack_env()
    started = containers.start(environment) if containers.wanted(environment, STATE) else []
    if started:
        environment["CHAINLOG_TEST_INFRA_ACTIVE"] = "docker"
    ensure_infra(environment, local=not started)
    yield environment
    for container in started:
        container.stop()


@pytest.fixture(scope="session")
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def services(env: dict[str, str]) -> Iterator[dict[str, Service]]:
    procs = {
        name: Service.with_metrics_port(name, env, METRICS_PORTS[name])
        for name in ("chainer", "enricher", "exporter", "alerter", "streamer")
    } | {
        "ingest": Service("ingest", env),
    }
    for svc in procs.values():
        svc.start()
    yield procs
    for svc in procs.values():
        svc.stop()


@pytest.fixture(scope="session")
async def api(services: dict[str, Service]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=API_URL, timeout=60) as client:
        await wait_for_api(client)
        yield client


@pytest.fixture(scope="session")
async def admin_db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(settings.database_admin_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def workspace(admin_db: asyncpg.Pool) -> Workspace:
    async with admin_db.acquire() as conn:
        ws_id, key = await keys.create_workspace(conn, f"test-{os.urandom(4).hex()}", "enterprise")
    return Workspace(ws_id, key.key)


async def stored_count(admin_db: asyncpg.Pool, workspace_id: str) -> int:
    return int(
        await admin_db.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", workspace_id)
    )


def event(i: int = 0, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"actor_id": f"user-{i % 7}", "action": "document.update"}
    base.update(fields)
    return base


async def settle(db: asyncpg.Pool, workspace_id: str, ids: list[str]) -> int:
    """Wait until events ``ids`` are stored and the alerter is past them; returns their last seq."""

    async def stored() -> int | None:
        n, last = await db.fetchrow(
            "SELECT count(*), max(seq) FROM events WHERE workspace_id = $1 AND id = ANY($2::uuid[])",
            workspace_id,
            ids,
        )
        return int(last) if n == len(ids) else None

    last = await wait_until(stored, within=120, what=f"{len(ids)} events to be stored")

    async def evaluated() -> bool:
        seq = await db.fetchval(
            "SELECT last_seq FROM alerter_progress WHERE workspace_id = $1", workspace_id
        )
        return seq is not None and seq >= last

    await wait_until(evaluated, within=120, what=f"the alerter to reach seq {last}")
    return last
