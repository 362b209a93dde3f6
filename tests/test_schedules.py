"""Scheduled exports and evidence packs, end to end: created through the API, run by the
exporter's scheduler for yesterday (UTC), delivered to a real S3-compatible bucket (moto,
SigV4 enforced), verified offline from the bucket's bytes, recorded in the admin trail,
and stopped by disabling. Real Kafka, PostgreSQL and every service.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from libs.common.exportverify import verify_export
from libs.common.packverify import verify_pack
from libs.common.periods import last_complete, period_at
from libs.common.timeutil import format_ts
from tests.conftest import Workspace, settle
from tests.siem_receivers import S3Server
from tests.stack import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


async def _ingest(api: httpx.AsyncClient, ws: Workspace, events: list[dict[str, Any]]) -> list[str]:
    r = await api.post("/api/v1/events/batch", json={"events": events}, headers=ws.headers)
    assert r.status_code == 202 and r.json()["rejected"] == 0, r.text
    return [x["id"] for x in r.json()["results"]]


async def _create(api: httpx.AsyncClient, ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post("/api/v1/schedules", json=body, headers=ws.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _delivered(api: httpx.AsyncClient, ws: Workspace, schedule_id: str) -> dict[str, Any]:
    """The schedule's one run, once delivered."""

    async def done() -> dict[str, Any] | None:
        r = await api.get(f"/api/v1/schedules/{schedule_id}", headers=ws.headers)
        assert r.status_code == 200, r.text
        runs = r.json()["runs"]
        assert len(runs) <= 1 and all(run["status"] != "failed" for run in runs), runs
        return runs[0] if runs and runs[0]["status"] == "delivered" else None

    # A pack waits for a signed checkpoint over its request: slower on a busy machine.
    return await wait_until(done, within=300, what=f"schedule {schedule_id} to deliver")


async def _admin_events(db: asyncpg.Pool, ws: Workspace) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT body FROM events WHERE workspace_id = $1 AND action LIKE 'admin.%' ORDER BY seq",
        ws.id,
    )
    return [orjson.loads(r["body"]) for r in rows]


async def test_schedules_deliver_verifiable_files_to_the_bucket_until_disabled(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    s3: S3Server,
    tmp_path: Path,
) -> None:
    h = workspace.headers
    period = last_complete("daily", datetime.now(UTC))
    inside = await _ingest(
        api,
        workspace,
        [
            {
                "actor_id": f"user-{i}",
                "action": "document.update",
                "occurred_at": format_ts(period.start + timedelta(hours=2 * i + 1)),
            }
            for i in range(4)
        ],
    )
    outside = await _ingest(
        api,
        workspace,
        [
            {"actor_id": "user-9", "action": "user.login", "occurred_at": format_ts(t)}
            for t in (period.start - timedelta(seconds=1), period.end)
        ],
    )
    await settle(admin_db, workspace.id, inside + outside)

    # Bad input: every field named, the secret never echoed.
    secret = s3.secret_access_key
    r = await api.post(
        "/api/v1/schedules",
        json={
            "kind": "export",
            "cadence": "hourly",
            "params": {"format": "pdf", "from": "2026-01-01T00:00:00Z"},
            "destination": s3.config(bucket="Bad_Bucket"),
        },
        headers=h,
    )
    assert r.status_code == 422, r.text
    fields = [v["field"] for v in r.json()["violations"]]
    assert fields == ["cadence", "params.from", "params.format", "destination.bucket"]
    assert secret not in r.text

    # The first PUT is refused (503 SlowDown): that delivery is retried.
    s3.fail_next(1, 503)
    destination = s3.config(prefix="audit/")
    export = await _create(
        api,
        workspace,
        {
            "kind": "export",
            "cadence": "daily",
            "params": {"format": "jsonl"},
            "destination": destination,
        },
    )
    pack = await _create(
        api,
        workspace,
        {
            "kind": "evidence_pack",
            "cadence": "daily",
            "params": {"controls": ["CC7", "CC6"]},
            "destination": destination,
        },
    )
    assert export["destination"]["secret_access_key_set"] is True
    assert "secret_access_key" not in export["destination"] and export["enabled"]
    assert pack["params"] == {"controls": ["CC6", "CC7"]}
    listed = await api.get("/api/v1/schedules", headers=h)
    assert {s["id"] for s in listed.json()["data"]} == {export["id"], pack["id"]}
    assert secret not in listed.text

    # Yesterday's export, from the bucket's bytes.
    run = await _delivered(api, workspace, export["id"])
    key = f"audit/{workspace.id}/export/{period.label}.jsonl"
    assert run["object_key"] == key and run["period"]["label"] == period.label
    assert run["period"]["from"] == format_ts(period.start)
    job = (await api.get(f"/api/v1/exports/{run['export_id']}", headers=h)).json()
    assert job["requested_by"] == f"schedule:{export['id']}" and job["format"] == "jsonl"
    body = s3.get(key).body
    assert hashlib.sha256(body).hexdigest() == job["sha256"] == run["sha256"]
    path = tmp_path / "export.jsonl"
    path.write_bytes(body)
    checked = verify_export([path], complete=False)
    assert checked.valid and checked.rows_checked == len(inside), checked.report()
    assert [orjson.loads(line)["id"] for line in body.splitlines()] == inside

    # Yesterday's evidence pack: verifies with the log's public key alone.
    run_pack = await _delivered(api, workspace, pack["id"])
    pack_key = f"audit/{workspace.id}/evidence_pack/{period.label}.zip"
    assert run_pack["object_key"] == pack_key
    job_pack = (
        await api.get(f"/api/v1/evidence-packs/{run_pack['evidence_pack_id']}", headers=h)
    ).json()
    assert job_pack["requested_by"] == f"schedule:{pack['id']}"
    assert (job_pack["from"], job_pack["to"]) == (format_ts(period.start), format_ts(period.end))
    body = s3.get(pack_key).body
    assert hashlib.sha256(body).hexdigest() == job_pack["sha256"] == run_pack["sha256"]
    assert job_pack["total_events"] == len(inside)
    zipped = tmp_path / "pack.zip"
    zipped.write_bytes(body)
    vkey = (await api.get("/api/v1/log-key", headers=h)).json()["verifier_key"]
    result = verify_pack(zipped, vkey)
    assert result.valid, result.report()
    assert run["attempts"] + run_pack["attempts"] == 3  # one of the two was retried
    assert sorted(s3.list_keys(f"audit/{workspace.id}/")) == sorted([key, pack_key])

    # The admin trail: created by the key, requested and delivered by the scheduler.
    async def trail() -> list[dict[str, Any]] | None:
        events = await _admin_events(admin_db, workspace)
        delivered = [e for e in events if e["action"] == "admin.schedule.delivered"]
        return events if len(delivered) == 2 else None

    events = await wait_until(trail, within=60, what="the deliveries' admin events")
    assert all(secret.encode() not in orjson.dumps(e) for e in events)
    created = [e for e in events if e["action"] == "admin.schedule.created"]
    assert [e["resource_id"] for e in created] == [export["id"], pack["id"]]
    assert all(e["actor_id"].startswith("api_key:") for e in created)
    for schedule, kind, job_id in (
        (export, "export", run["export_id"]),
        (pack, "evidence_pack", run_pack["evidence_pack_id"]),
    ):
        requested = [e for e in events if e["action"] == f"admin.{kind}.requested"]
        assert [e["resource_id"] for e in requested] == [job_id]
        assert requested[0]["actor_id"] == "system:scheduler"
        after = requested[0]["metadata"]["after"]
        assert after["schedule_id"] == schedule["id"] and after["period"]["label"] == period.label
        delivered = next(
            e
            for e in events
            if e["action"] == "admin.schedule.delivered" and e["resource_id"] == schedule["id"]
        )
        assert delivered["actor_id"] == "system:scheduler"
        assert delivered["metadata"]["after"][f"{kind}_id"] == job_id
        assert delivered["metadata"]["after"]["object_key"] in (key, pack_key)
        assert delivered["metadata"]["after"]["sha256"] in (run["sha256"], run_pack["sha256"])

    # Disabled: an admin event, and never another run.
    r = await api.delete(f"/api/v1/schedules/{export['id']}", headers=h)
    assert r.status_code == 204, r.text
    assert (await api.delete(f"/api/v1/schedules/{export['id']}", headers=h)).status_code == 404
    doc = (await api.get(f"/api/v1/schedules/{export['id']}", headers=h)).json()
    assert not doc["enabled"] and doc["disabled_at"] and doc["next_run_at"] is None
    # Both schedules made due again for the day before, in one transaction: the pack's new
    # run shows the scheduler has looked since, and the disabled export made none.
    await admin_db.execute(
        "UPDATE schedules SET last_period_end = $2, next_run_at = now() WHERE id = ANY($1::uuid[])",
        [export["id"], pack["id"]],
        period.start - timedelta(days=1),
    )

    async def caught_up() -> list[dict[str, Any]] | None:
        runs = (await api.get(f"/api/v1/schedules/{pack['id']}", headers=h)).json()["runs"]
        return runs if len(runs) == 2 else None

    runs = await wait_until(caught_up, within=60, what="the pack schedule's catch-up run")
    before = period_at("daily", period.start - timedelta(days=1))
    assert [x["period"]["label"] for x in runs] == [period.label, before.label]
    doc = (await api.get(f"/api/v1/schedules/{export['id']}", headers=h)).json()
    assert [x["id"] for x in doc["runs"]] == [run["id"]]
    assert (
        await admin_db.fetchval("SELECT count(*) FROM exports WHERE schedule_id = $1", export["id"])
        == 1
    )

    async def disabled_event() -> list[dict[str, Any]]:
        return [
            e
            for e in await _admin_events(admin_db, workspace)
            if e["action"] == "admin.schedule.disabled"
        ]

    (event,) = await wait_until(disabled_event, within=60, what="admin.schedule.disabled")
    assert event["resource_id"] == export["id"]
    assert event["metadata"]["before"]["enabled"] and not event["metadata"]["after"]["enabled"]
