"""Idempotency keys: one event per key and workspace, however often it is sent.

The gateway answers a repeat ``duplicate`` with the first id; the chainer
keeps exactly one event per key even when two copies reach the raw topic.
Absence of a second copy is proven, not assumed: a later sentinel event on
the same partition must be stored first.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from libs.common import keys
from libs.common.settings import Settings
from libs.common.timeutil import uuid7
from libs.common.topics import Names
from tests.conftest import Workspace, event, stored_count
from tests.stack import NAMESPACE, wait_until

pytestmark = pytest.mark.integration

EVENTS = "/api/v1/events"


def new_key() -> str:
    return f"idem-{os.urandom(6).hex()}"


async def post(api: httpx.AsyncClient, ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(EVENTS, json=body, headers=ws.headers)
    assert r.status_code == 202, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def stored(api: httpx.AsyncClient, ws: Workspace, event_id: str) -> dict[str, Any] | None:
    r = await api.get(f"{EVENTS}/{event_id}", headers=ws.headers)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def after_sentinel(api: httpx.AsyncClient, ws: Workspace) -> dict[str, Any]:
    """Send an unkeyed event and wait until it is stored.

    It goes to the workspace's raw partition after everything sent before
    it, so once it is stored, any copy of an earlier event would be too.
    """
    sentinel_id = (await post(api, ws, event(action="sentinel.stored")))["id"]

    async def probe() -> dict[str, Any] | None:
        return await stored(api, ws, sentinel_id)

    found = await wait_until(probe, what="the sentinel event to be stored")
    assert found is not None
    return found


async def all_events(api: httpx.AsyncClient, ws: Workspace) -> list[dict[str, Any]]:
    r = await api.get(EVENTS, params={"limit": "100"}, headers=ws.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pagination"]["has_more"] is False
    return list(reversed(body["data"]))


async def assert_chain(api: httpx.AsyncClient, ws: Workspace, events: int) -> None:
    r = await api.get("/api/v1/verify", headers=ws.headers)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["valid"] is True and result["breaks"] == [], result
    assert (result["events_checked"], result["first_seq"], result["last_seq"]) == (
        events,
        1,
        events,
    ), result


async def test_same_key_sent_twice(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    key = new_key()
    first = await post(api, workspace, event(action="order.paid", idempotency_key=key))
    assert first["status"] == "queued"

    async def first_stored() -> dict[str, Any] | None:
        return await stored(api, workspace, first["id"])

    await wait_until(first_stored, what="the first event to be stored")
    again = await post(api, workspace, event(action="order.paid", idempotency_key=key))
    assert again == {"id": first["id"], "status": "duplicate"}

    sentinel = await after_sentinel(api, workspace)
    assert sentinel["seq"] == 2
    events = await all_events(api, workspace)
    assert [(e["id"], e.get("idempotency_key")) for e in events] == [
        (first["id"], key),
        (sentinel["id"], None),
    ]
    assert await stored_count(admin_db, workspace.id) == 2
    await assert_chain(api, workspace, 2)


async def test_same_key_sent_twice_before_it_is_stored(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    """Back to back: the repeat is answered before the first is chained."""
    key = new_key()
    first = await post(api, workspace, event(idempotency_key=key))
    again = await post(api, workspace, event(idempotency_key=key))
    assert first["status"] == "queued"
    assert again == {"id": first["id"], "status": "duplicate"}
    await after_sentinel(api, workspace)
    assert [e["id"] for e in await all_events(api, workspace)][:1] == [first["id"]]
    assert await stored_count(admin_db, workspace.id) == 2
    await assert_chain(api, workspace, 2)


async def test_twenty_concurrent_requests_with_one_key(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    key = new_key()
    bodies = [event(i, action="payment.capture", idempotency_key=key) for i in range(20)]
    answers = await asyncio.gather(*(post(api, workspace, b) for b in bodies))
    ids = {a["id"] for a in answers}
    assert len(ids) == 1, answers
    assert {a["status"] for a in answers} <= {"queued", "duplicate"}
    assert any(a["status"] == "queued" for a in answers), answers

    await after_sentinel(api, workspace)
    events = await all_events(api, workspace)
    keyed = [e for e in events if e.get("idempotency_key") == key]
    assert [e["id"] for e in keyed] == list(ids), events
    assert keyed[0]["seq"] == 1
    assert await stored_count(admin_db, workspace.id) == 2
    await assert_chain(api, workspace, 2)


async def test_same_key_twice_in_one_batch(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    key = new_key()
    batch = {
        "events": [
            event(0, action="batch.keyed", idempotency_key=key),
            event(1, action="batch.plain"),
            event(2, action="batch.keyed.again", idempotency_key=key),
        ]
    }
    r = await api.post("/api/v1/events/batch", json=batch, headers=workspace.headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 0), body
    first, plain, repeat = body["results"]
    assert first["status"] == "queued" and plain["status"] == "queued"
    assert repeat == {"index": 2, "id": first["id"], "status": "duplicate"}

    await after_sentinel(api, workspace)
    events = await all_events(api, workspace)
    assert [(e["id"], e["action"]) for e in events[:2]] == [
        (first["id"], "batch.keyed"),
        (plain["id"], "batch.plain"),
    ]
    assert await stored_count(admin_db, workspace.id) == 3
    await assert_chain(api, workspace, 3)


async def test_chainer_keeps_one_of_two_raw_copies(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, settings: Settings, workspace: Workspace
) -> None:
    """Two raw records with one key (a gateway retry after a lost ack): one event."""
    ids = [uuid7(), uuid7()]
    records = [
        orjson.dumps(
            {
                "workspace_id": workspace.id,
                "events": [
                    {
                        "id": event_id,
                        "received_at": "2026-11-27T10:00:00.000000Z",
                        "actor_id": "a",
                        "action": "x.y",
                        "idempotency_key": "k",
                    }
                ],
            }
        )
        for event_id in ids
    ]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for value in records:
            await producer.send_and_wait(Names(NAMESPACE).raw, value, key=workspace.id.encode())
    finally:
        await producer.stop()

    sentinel = await after_sentinel(api, workspace)
    assert sentinel["seq"] == 2
    events = await all_events(api, workspace)
    keyed = [e for e in events if e.get("idempotency_key") == "k"]
    assert [(e["id"], e["seq"]) for e in keyed] == [(ids[0], 1)], events
    assert await stored(api, workspace, ids[1]) is None
    assert await stored_count(admin_db, workspace.id) == 2
    await assert_chain(api, workspace, 2)


async def test_workspaces_do_not_share_keys(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    async with admin_db.acquire() as conn:
        other_id, other_key = await keys.create_workspace(
            conn, f"other-{os.urandom(4).hex()}", "enterprise"
        )
    other = Workspace(other_id, other_key.key)
    key = new_key()
    mine = await post(api, workspace, event(idempotency_key=key))
    theirs = await post(api, other, event(idempotency_key=key))
    assert mine["status"] == theirs["status"] == "queued"
    assert mine["id"] != theirs["id"]
    # a repeat in either is a duplicate of that workspace's own event
    assert await post(api, other, event(idempotency_key=key)) == {
        "id": theirs["id"],
        "status": "duplicate",
    }
    assert await post(api, workspace, event(idempotency_key=key)) == {
        "id": mine["id"],
        "status": "duplicate",
    }

    for ws, answer in ((workspace, mine), (other, theirs)):
        await after_sentinel(api, ws)
        events = await all_events(api, ws)
        assert [(e["id"], e["idempotency_key"]) for e in events[:1]] == [(answer["id"], key)]
        assert await stored_count(admin_db, ws.id) == 2
        await assert_chain(api, ws, 2)
