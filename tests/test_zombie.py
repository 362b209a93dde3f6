"""Two chainers, and a zombie: a chainer frozen (SIGSTOP, as in a long GC
pause) while events stream in, long enough for the other to take all its
partitions, then woken up. Whatever it had in flight is fenced by the new
owner's transactional id; no chain may fork, skip or repeat."""

from __future__ import annotations

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import Workspace, event
from tests.stack import METRICS_PORTS, Service, wait_until

pytestmark = pytest.mark.integration

REQUESTS = 90
EVENTS_PER_REQUEST = 20


def _owned_by(svc: Service) -> set[int]:
    """The partitions a chainer last said it owns (from its structured log)."""
    owned: set[int] = set()
    if svc.log_path.exists():
        for line in svc.log_path.read_bytes().splitlines():
            if b'"chainer.assigned"' in line:
                owned = set(orjson.loads(line)["partitions"])
    return owned


async def test_frozen_chainer_is_fenced_and_chains_stay_whole(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
    env: dict[str, str],
) -> None:
    zombie = services["chainer"]
    second = Service.with_metrics_port("chainer", env, METRICS_PORTS["chainer"] + 10, instance="-b")
    second.log_path.unlink(missing_ok=True)
    second.start()
    acked: list[str] = []
    try:

        async def stream(start: int, stop: int) -> None:
            for n in range(start, stop):
                batch = [
                    event(n * 100 + j, action="zombie.step") for j in range(EVENTS_PER_REQUEST)
                ]
                r = await api.post(
                    "/api/v1/events/batch", json={"events": batch}, headers=workspace.headers
                )
                assert r.status_code == 202, r.text
                acked.extend(i["id"] for i in r.json()["results"])

        async def shared() -> bool:
            return bool(_owned_by(second))

        await wait_until(shared, within=90, what="the second chainer to get partitions")
        await stream(0, REQUESTS // 3)
        zombie.pause()
        try:

            async def taken_over() -> bool:
                return len(_owned_by(second)) == 12

            await wait_until(
                taken_over, within=90, what="the second chainer to own every partition"
            )
            await stream(REQUESTS // 3, 2 * REQUESTS // 3)
        finally:
            zombie.resume()
        await stream(2 * REQUESTS // 3, REQUESTS)

        async def all_stored() -> bool:
            n = await admin_db.fetchval(
                "SELECT count(*) FROM events WHERE workspace_id = $1", workspace.id
            )
            return n >= len(acked)

        await wait_until(all_stored, within=120, what="every acknowledged event to be stored")
        rows = await admin_db.fetch(
            "SELECT seq, id FROM events WHERE workspace_id = $1 ORDER BY seq", workspace.id
        )
        assert [r["seq"] for r in rows] == list(range(1, len(acked) + 1)), "gap, fork or duplicate"
        assert sorted(str(r["id"]) for r in rows) == sorted(acked)
        v = (await api.get("/api/v1/verify", headers=workspace.headers)).json()
        assert v["valid"] is True and v["events_checked"] == len(acked)
    finally:
        second.stop()
