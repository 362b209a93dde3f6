"""Log streams end to end: every event reaches the customer's SIEM, in order, none lost.

Real Kafka, PostgreSQL and service processes; real local receivers that
speak each wire format (tests/siem_receivers.py) and moto's S3 server.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Workspace
from tests.siem_receivers import (
    BlackHole,
    DatadogReceiver,
    ElasticReceiver,
    HecReceiver,
    S3Server,
    WebhookBatchReceiver,
)
from tests.stack import Service, wait_until

pytestmark = pytest.mark.integration


async def _stream(api: httpx.AsyncClient, ws: Workspace, **body: Any) -> dict[str, Any]:
    r = await api.post(
        "/api/v1/log-streams", json={"name": body.pop("name", "s"), **body}, headers=ws.headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _send(api: httpx.AsyncClient, ws: Workspace, n: int, **fields: Any) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 500):
        batch = [
            {"actor_id": f"u_{i % 5}", "action": "document.update", **fields}
            for i in range(start, min(n, start + 500))
        ]
        r = await api.post("/api/v1/events/batch", json={"events": batch}, headers=ws.headers)
        assert r.status_code == 202, r.text
        ids += [item["id"] for item in r.json()["results"]]
    return ids


def _ours(got: list[str], *sent: list[str]) -> list[str]:
    """The ids among ``got`` that the test sent (the chain also holds admin events,
    such as the stream's own creation); each must appear once."""
    assert len(got) == len(set(got)), "an event arrived twice"
    mine = {i for ids in sent for i in ids}
    return [i for i in got if i in mine]


def _chained(events: list[dict[str, Any]]) -> None:
    """What a receiver holds verifies on its own: consecutive seq, linked hashes."""
    for before, after in itertools.pairwise(events):
        assert after["seq"] == before["seq"] + 1
        assert after["prev_hash"] == before["hash"]


async def _status(api: httpx.AsyncClient, ws: Workspace, sid: str) -> dict[str, Any]:
    return dict((await api.get(f"/api/v1/log-streams/{sid}", headers=ws.headers)).json())


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


async def test_every_destination_gets_every_event_in_order(
    api: httpx.AsyncClient, workspace: Workspace, admin_db: asyncpg.Pool, s3: S3Server
) -> None:
    hec = HecReceiver("hec-token").start()
    dd = DatadogReceiver("dd-key").start()
    es = ElasticReceiver(api_key="es-key").start()
    try:
        await _stream(
            api, workspace, type="splunk_hec", config={"url": hec.url, "token": "hec-token"}
        )
        await _stream(
            api, workspace, type="datadog", config={"url": dd.intake_url, "api_key": "dd-key"}
        )
        await _stream(
            api, workspace, type="elasticsearch", config={"url": es.url, "api_key": "es-key"}
        )
        await _stream(api, workspace, type="s3", config=s3.config(prefix="audit/"))
        http_stream = await _stream(
            api, workspace, type="http", config={"url": "http://127.0.0.1:9/"}
        )
        hook = WebhookBatchReceiver(http_stream["secret"]).start()
        await api.patch(
            f"/api/v1/log-streams/{http_stream['id']}",
            json={"config": {"url": hook.url}},
            headers=workspace.headers,
        )
        ids = await _send(api, workspace, 1200)

        def hec_events() -> list[dict[str, Any]]:
            return [e["event"] for e in hec.events]

        def dd_events() -> list[dict[str, Any]]:
            return [json.loads(e["message"]) for e in dd.logs]

        def hook_events() -> list[dict[str, Any]]:
            return [e for b in hook.batches for e in b["events"]]

        def s3_events() -> list[dict[str, Any]]:
            out = []
            for key in sorted(s3.list_keys("audit/")):
                body = s3.get(key).body
                out += [json.loads(line) for line in gzip.decompress(body).splitlines()]
            return out

        def es_events() -> list[dict[str, Any]]:
            docs = es.docs("chainlog-audit")
            return [docs[i] for i in es.created]

        for name, got in [
            ("splunk", hec_events),
            ("datadog", dd_events),
            ("elasticsearch", es_events),
            ("http", hook_events),
            ("s3", s3_events),
        ]:

            async def arrived(got: Any = got) -> bool:
                events = await asyncio.to_thread(got)
                return len([e for e in events if e.get("action") == "document.update"]) >= len(ids)

            await wait_until(arrived, within=90, what=f"{name} to receive {len(ids)} events")
            events = [
                e for e in await asyncio.to_thread(got) if e.get("action") == "document.update"
            ]
            assert [e["id"] for e in events] == ids, f"{name}: missing, extra or out of order"
            _chained(events)
            assert all(len(e["hash"]) == 64 for e in events)
    finally:
        for r in (hec, dd, es):
            r.stop()


async def test_filter_by_action_and_tenant(api: httpx.AsyncClient, workspace: Workspace) -> None:
    es = ElasticReceiver().start()
    try:
        await _stream(
            api,
            workspace,
            type="elasticsearch",
            config={"url": es.url},
            filter={"actions": ["billing.*"], "tenant_ids": ["t1"]},
        )
        await _send(api, workspace, 5, action="billing.paid", tenant_id="t2")
        wanted = await _send(api, workspace, 3, action="billing.paid", tenant_id="t1")
        await _send(api, workspace, 5, action="document.view", tenant_id="t1")
        last = await _send(api, workspace, 1, action="billing.refund", tenant_id="t1")

        async def done() -> bool:
            return len(es.created) >= 4

        await wait_until(done, what="the filtered events")
        assert es.created == [*wanted, *last]
    finally:
        es.stop()


async def test_destination_down_then_back_nothing_lost_nothing_twice(
    api: httpx.AsyncClient, workspace: Workspace
) -> None:
    es = ElasticReceiver().start()
    es.fail_next(3, 503)  # a restart of the cluster
    try:
        stream = await _stream(api, workspace, type="elasticsearch", config={"url": es.url})
        ids = await _send(api, workspace, 700)
        es.reject_once(ids[100:110])  # a full write queue: those items 429 once

        async def all_there() -> bool:
            return len(_ours(es.created, ids)) >= len(ids)

        await wait_until(all_there, within=120, what="every event indexed")
        # Each exactly once (a resent item gets 409). The order of creation is
        # Elasticsearch's: a bulk request creates the items after a refused
        # one at once, and the refused ones on the resend.
        assert sorted(_ours(es.created, ids)) == sorted(ids)
        docs = es.docs("chainlog-audit")
        assert [docs[i]["seq"] for i in ids] == sorted(docs[i]["seq"] for i in ids)
        status = await _status(api, workspace, stream["id"])
        assert status["status"] == "active" and status["consecutive_failures"] == 0
        assert status["last_error"]  # the outage left its trace
    finally:
        es.stop()


async def test_error_status_then_catch_up_when_reenabled(
    api: httpx.AsyncClient, workspace: Workspace
) -> None:
    """After CHAINLOG_STREAM_MAX_FAILURES (4 in the suite) the stream stops, visibly;
    re-enabled, it catches up from its cursor."""
    hook_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    hook = WebhookBatchReceiver(hook_secret)
    hook.fail_next(4, 503)  # exactly enough to stop the stream; then healthy
    hook.start()
    try:
        stream = await _stream(
            api, workspace, type="http", config={"url": hook.url, "secret": hook_secret}
        )
        ids = await _send(api, workspace, 50)

        async def errored() -> dict[str, Any] | None:
            s = await _status(api, workspace, stream["id"])
            return s if s["status"] == "error" else None

        s = await wait_until(errored, within=90, what="the stream to go to error")
        assert s["consecutive_failures"] == 4 and "503" in (s["last_error"] or "")
        more = await _send(api, workspace, 20)
        r = await api.patch(
            f"/api/v1/log-streams/{stream['id']}", json={"enabled": True}, headers=workspace.headers
        )
        assert r.status_code == 200 and r.json()["status"] == "active"

        def got() -> list[str]:
            return _ours([e["id"] for b in hook.batches for e in b["events"]], ids, more)

        async def caught_up() -> bool:
            return len(got()) >= len(ids) + len(more)

        await wait_until(caught_up, within=60, what="the stream to catch up")
        assert got() == ids + more
    finally:
        hook.stop()


async def test_streamer_killed_mid_batch_loses_nothing(
    api: httpx.AsyncClient, workspace: Workspace, services: dict[str, Service]
) -> None:
    es = ElasticReceiver().start()
    try:
        await _stream(api, workspace, type="elasticsearch", config={"url": es.url})
        ids = await _send(api, workspace, 4000)

        async def some() -> bool:
            return 0 < len(_ours(es.created, ids)) < len(ids)

        await wait_until(some, what="the stream to be part-way")
        services["streamer"].kill()
        services["streamer"].start()

        async def all_there() -> bool:
            return len(_ours(es.created, ids)) >= len(ids)

        await wait_until(all_there, within=120, what="every event after the restart")
        assert _ours(es.created, ids) == ids
    finally:
        es.stop()


async def test_dead_destination_does_not_slow_a_healthy_one(
    api: httpx.AsyncClient, workspace: Workspace, admin_db: asyncpg.Pool
) -> None:
    dead = BlackHole(hold_s=60).start()
    healthy = ElasticReceiver().start()
    try:
        await _stream(
            api,
            workspace,
            name="dead",
            type="http",
            config={"url": dead.url, "secret": "whsec_" + "QUJD" * 8},
        )
        await _stream(
            api, workspace, name="healthy", type="elasticsearch", config={"url": healthy.url}
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        ids = await _send(api, workspace, 1000)

        async def delivered() -> bool:
            return len(_ours(healthy.created, ids)) >= len(ids)

        await wait_until(delivered, within=60, what="the healthy stream to deliver")
        took = loop.time() - started
        assert dead.open >= 1, "the dead destination never held a request: the test proves nothing"
        assert _ours(healthy.created, ids) == ids
        print(f"\nhealthy stream delivered 1,000 events in {took:.2f} s beside a dead one")
    finally:
        dead.release.set()
        dead.stop()
        healthy.stop()


async def test_stream_api_secrets_validation_and_test_send(
    api: httpx.AsyncClient, workspace: Workspace
) -> None:
    h = workspace.headers
    hec = HecReceiver("tok-123").start()
    try:
        r = await api.post(
            "/api/v1/log-streams",
            json={"name": "x", "type": "splunk_hec", "config": {"url": "ftp://x", "colour": 1}},
            headers=h,
        )
        assert r.status_code == 422
        fields = {v["field"] for v in r.json()["violations"]}
        assert {"config.url", "config.token", "config.colour"} <= fields
        r = await api.post(
            "/api/v1/log-streams", json={"name": "x", "type": "kafka", "config": {}}, headers=h
        )
        assert [v["field"] for v in r.json()["violations"]] == ["type"]
        s = await _stream(
            api, workspace, type="splunk_hec", config={"url": hec.url, "token": "tok-123"}
        )
        listed = (await api.get("/api/v1/log-streams", headers=h)).text
        assert "tok-123" not in listed and "tok-123" not in json.dumps(s)
        r = await api.post(f"/api/v1/log-streams/{s['id']}/test", headers=h)
        assert r.json() == {"outcome": "delivered", "status": 200, "error": None}
        assert hec.events[-1]["event"]["action"] == "chainlog.stream_test"
        # A new config without the token keeps the stored one.
        r = await api.patch(
            f"/api/v1/log-streams/{s['id']}", json={"config": {"index": "audit"}}, headers=h
        )
        assert r.status_code == 200, r.text
        r = await api.post(f"/api/v1/log-streams/{s['id']}/test", headers=h)
        assert r.json()["outcome"] == "delivered"
        assert (await api.delete(f"/api/v1/log-streams/{s['id']}", headers=h)).status_code == 204
    finally:
        hec.stop()
