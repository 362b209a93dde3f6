"""Evidence packs end to end: requested through the API, built by the exporter, downloaded,
verified offline with the log's public key (the library and the ``chainlog verify-pack``
command), and read the way an auditor would. Real Kafka, PostgreSQL and every service.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from libs.common import keys
from libs.common.packverify import verify_pack
from libs.common.timeutil import format_ts
from tests.conftest import Workspace, settle
from tests.receivers import WebhookReceiver
from tests.stack import REPO, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


def verify_pack_cli(path: Path, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "libs.cli.main", "verify-pack", str(path), "--key", key],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


async def _post(api: httpx.AsyncClient, ws: Workspace, path: str, body: Any) -> dict[str, Any]:
    r = await api.post(path, json=body, headers=ws.headers)
    assert r.status_code in (201, 202), (path, r.text)
    return dict(r.json())


async def _ingest(api: httpx.AsyncClient, ws: Workspace, events: list[dict[str, Any]]) -> list[str]:
    r = await api.post("/api/v1/events/batch", json={"events": events}, headers=ws.headers)
    assert r.status_code == 202 and r.json()["rejected"] == 0, r.text
    return [x["id"] for x in r.json()["results"]]


async def _completed(api: httpx.AsyncClient, ws: Workspace, pack_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        r = await api.get(f"/api/v1/evidence-packs/{pack_id}", headers=ws.headers)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["status"] != "failed", doc
        return dict(doc) if doc["status"] == "completed" else None

    return await wait_until(done, within=180, what=f"evidence pack {pack_id}")


async def test_a_pack_is_built_verifies_offline_and_holds_the_period(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    h = workspace.headers
    # Configuration with secrets the pack must never hold.
    endpoint = await _post(api, workspace, "/api/v1/webhook-endpoints", {"url": receiver.url})
    rule = await _post(
        api,
        workspace,
        "/api/v1/alert-rules",
        {
            "name": "repeated exports",
            "rule_type": "repeated_action",
            "conditions": {"threshold": 3, "window_seconds": 300},
            "channels": ["webhook"],
        },
    )
    token = f"tok-{os.urandom(8).hex()}"
    splunk = await _post(
        api,
        workspace,
        "/api/v1/log-streams",
        {"name": "splunk", "type": "splunk_hec", "config": {"url": receiver.url, "token": token}},
    )
    http_stream = await _post(
        api,
        workspace,
        "/api/v1/log-streams",
        {"name": "siem", "type": "http", "config": {"url": receiver.url}},
    )
    reader = await _post(
        api, workspace, "/api/v1/api-keys", {"name": "auditor", "scopes": ["read"]}
    )
    secrets = {
        "workspace key": workspace.key,
        "new key": reader["key"],
        "webhook secret": endpoint["secret"],
        "stream secret": http_stream["secret"],
        "stream token": token,
    }
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    inside = await _ingest(
        api,
        workspace,
        [{"actor_id": "user-1", "action": "report.export"} for _ in range(4)]
        + [
            {
                "actor_id": "user-2",
                "action": "user.login",
                "occurred_at": format_ts(now - timedelta(minutes=30)),
            }
        ],
    )
    outside = await _ingest(
        api,
        workspace,
        [
            {"actor_id": "user-3", "action": "user.login", "occurred_at": "2020-01-01T00:00:00Z"},
            {
                "actor_id": "user-3",
                "action": "user.login",
                "occurred_at": format_ts(end + timedelta(days=1)),
            },
        ],
    )
    await settle(admin_db, workspace.id, inside + outside)

    async def alerted() -> list[Any]:
        data = (await api.get("/api/v1/alerts", headers=h)).json()["data"]
        return [a for a in data if a["rule_id"] == rule["id"]]

    await wait_until(alerted, within=60, what="the repeated_action alert")

    created = await _post(
        api,
        workspace,
        "/api/v1/evidence-packs",
        {"from": format_ts(start), "to": format_ts(end), "controls": ["CC8", "CC6", "CC7"]},
    )
    assert created["status"] == "pending" and created["controls"] == ["CC6", "CC7", "CC8"]
    assert set(created) == {"id", "status", "from", "to", "controls", "created_at"}
    listed = (await api.get("/api/v1/evidence-packs", headers=h)).json()["data"]
    assert [p["id"] for p in listed] == [created["id"]]
    doc = await _completed(api, workspace, created["id"])
    assert doc["download_url"].endswith(f"/api/v1/evidence-packs/{created['id']}/download")
    assert doc["requested_by"].startswith("api_key:") and doc["expires_at"] and not doc["expired"]

    r = await api.get(f"/api/v1/evidence-packs/{created['id']}/download", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    data = r.content
    assert len(data) == doc["size"]
    assert r.headers["x-chainlog-sha256"] == doc["sha256"] == hashlib.sha256(data).hexdigest()
    pack = tmp_path / "pack.zip"
    pack.write_bytes(data)

    # Offline, with nothing but the log's public key: the library and the command.
    vkey = (await api.get("/api/v1/log-key", headers=h)).json()["verifier_key"]
    result = verify_pack(pack, vkey)
    assert result.valid, result.report()
    assert result.checkpoints_checked >= 1 and result.notes == [], result.report()
    done = verify_pack_cli(pack, vkey)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"VALID: evidence pack {created['id']}")

    with zipfile.ZipFile(pack) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    # Never a secret, in any file or in the zip itself.
    for what, secret in secrets.items():
        for name, content in [*files.items(), ("the zip", data)]:
            assert secret.encode() not in content, (what, name)
    assert not any(b"key_hash" in content for content in files.values())

    # The period's events, exactly: occurred_at in [from, to), up to the signed tree.
    checkpoints = orjson.loads(files["checkpoints.json"])
    through = checkpoints["through_seq"]
    expected = await admin_db.fetch(
        "SELECT id FROM events WHERE workspace_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
        " AND seq <= $4 ORDER BY seq",
        workspace.id,
        start,
        end,
        through,
    )
    rows = _csv(files["events.csv"])
    assert [r["id"] for r in rows] == [str(e["id"]) for e in expected]
    assert set(inside) <= {r["id"] for r in rows} and not set(outside) & {r["id"] for r in rows}
    lines = [orjson.loads(x) for x in files["events.jsonl"].splitlines()]
    assert [e["id"] for e in lines] == [r["id"] for r in rows] and doc["total_events"] == len(rows)
    assert checkpoints["covering"]["seq"] == int(rows[-1]["seq"]) == doc["last_seq"]

    # The admin trail holds the configuration changes and this very request.
    trail = _csv(files["admin-trail.csv"])
    assert all(r["action"].startswith("admin.") for r in trail)
    actions = {r["action"] for r in trail}
    assert {
        "admin.webhook_endpoint.created",
        "admin.alert_rule.created",
        "admin.log_stream.created",
        "admin.api_key.created",
    } <= actions
    requested = [r for r in trail if r["action"] == "admin.evidence_pack.requested"]
    assert [r["resource_id"] for r in requested] == [created["id"]]
    assert orjson.loads(requested[0]["metadata"])["after"]["controls"] == ["CC6", "CC7", "CC8"]

    verification = orjson.loads(files["verification.json"])
    assert verification["range"]["valid"] and verification["range"]["last_seq"] == doc["last_seq"]
    rules = orjson.loads(files["alert-rules.json"])["data"]
    assert {r["rule_type"] for r in rules} == {"chain_integrity", "repeated_action"}
    alerts = orjson.loads(files["alerts.json"])["data"]
    mine = [a for a in alerts if a["rule_id"] == rule["id"]]
    assert mine and mine[0]["deliveries"] and mine[0]["deliveries"][0]["channel"] == "webhook"
    streams = orjson.loads(files["log-streams.json"])["data"]
    assert {s["id"] for s in streams} == {splunk["id"], http_stream["id"]}
    assert all("token" not in s["config"] and "secret" not in s["config"] for s in streams)
    assert all({"status", "last_error", "cursor"} <= set(s) for s in streams)
    access = orjson.loads(files["access-review.json"])
    prefixes = {k["prefix"] for k in access["api_keys"]}
    assert reader["prefix"] in prefixes and all("key" not in k for k in access["api_keys"])
    controls = orjson.loads(files["controls.json"])["controls"]
    assert [c["id"] for c in controls] == ["CC6", "CC7", "CC8"]
    manifest = orjson.loads(files["manifest.json"])
    assert (manifest["workspace_id"], manifest["from"], manifest["to"]) == (
        workspace.id,
        format_ts(start),
        format_ts(end),
    )

    # One changed byte, and the command names the file.
    content = dict(files)
    content["alerts.json"] = content["alerts.json"].replace(b'"rule_id"', b'"rule_ID"', 1)
    bad = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, body in content.items():
            zf.writestr(name, body)
    done = verify_pack_cli(bad, vkey)
    assert done.returncode == 1 and "alerts.json: sha256_mismatch" in done.stdout, done.stdout


async def test_bad_requests_states_and_limits(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    h = workspace.headers
    for body, fields in (
        ({"from": "yesterday", "to": "2026-01-01T00:00:00Z", "controls": ["CC6"]}, ["from"]),
        (
            {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "controls": ["CC6"]},
            ["to"],
        ),
        (
            {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "controls": ["SOC9"]},
            ["controls"],
        ),
        ({"controls": []}, ["from", "to", "controls"]),
        (
            {
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-02-01T00:00:00Z",
                "controls": ["CC6"],
                "x": 1,
            },
            ["x"],
        ),
    ):
        r = await api.post("/api/v1/evidence-packs", json=body, headers=h)
        assert r.status_code == 422, r.text
        assert [v["field"] for v in r.json()["violations"]] == fields, r.text
    r = await api.post("/api/v1/evidence-packs", content=b"[1]", headers=h)
    assert r.status_code == 422
    missing = f"{'0' * 8}-0000-0000-0000-{'0' * 12}"
    for path in (f"/api/v1/evidence-packs/{missing}", "/api/v1/evidence-packs/not-an-id/download"):
        assert (await api.get(path, headers=h)).status_code == 404

    insert = (
        "INSERT INTO evidence_packs (id, workspace_id, period_from, period_to, controls,"
        " requested_by, status, lease_until, location, file_size, sha256, expires_at)"
        " VALUES (gen_random_uuid(), $1, now() - interval '1 day', now(), '{CC6}', 'test', $2,"
        " now() + interval '1 hour', $3, 1, 'x', $4) RETURNING id"
    )
    # Not done yet: 409. Expired: 410, and no download_url.
    running = await admin_db.fetchval(insert, workspace.id, "processing", None, None)
    r = await api.get(f"/api/v1/evidence-packs/{running}/download", headers=h)
    assert r.status_code == 409 and r.json()["error"] == "evidence_pack_not_ready", r.text
    past = datetime.now(UTC) - timedelta(seconds=1)
    old = await admin_db.fetchval(insert, workspace.id, "completed", "evidence-packs/x/y.zip", past)
    r = await api.get(f"/api/v1/evidence-packs/{old}/download", headers=h)
    assert r.status_code == 410 and r.json()["error"] == "evidence_pack_expired", r.text
    doc = (await api.get(f"/api/v1/evidence-packs/{old}", headers=h)).json()
    assert doc["download_url"] is None and doc["expired"] is True
    # Another workspace sees none of it.
    async with admin_db.acquire() as conn:
        _, other = await keys.create_workspace(conn, "other", "enterprise")
    r = await api.get(
        f"/api/v1/evidence-packs/{running}", headers={"Authorization": f"Bearer {other.key}"}
    )
    assert r.status_code == 404
    # At most two running at once.
    await admin_db.fetchval(insert, workspace.id, "processing", None, None)
    good = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "controls": ["CC6"]}
    r = await api.post("/api/v1/evidence-packs", json=good, headers=h)
    assert r.status_code == 429 and r.json()["error"] == "too_many_evidence_packs", r.text
    assert r.headers["retry-after"]
    await admin_db.execute(
        "UPDATE evidence_packs SET status = 'failed', lease_until = NULL"
        " WHERE workspace_id = $1 AND requested_by = 'test'",
        workspace.id,
    )
