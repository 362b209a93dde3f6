"""Workspaces as tenants: scopes, keys, members, allowlists, plans, schemas, the admin trail.

Real gateway processes, real Kafka and PostgreSQL. The admin trail is
checked the way an auditor would: read back from the workspace's own
chain, then the chain verified.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from libs.common import keys
from tests.conftest import Workspace
from tests.stack import API_PORT, OPERATOR_TOKEN, REPO, Service, wait_for_api, wait_until

pytestmark = pytest.mark.integration

NOWHERE = str(uuid.uuid4())

#: Every route, with the scope it needs (checked against the OpenAPI below).
ROUTES: list[tuple[str, str, str]] = [
    ("POST", "/api/v1/events", "ingest"),
    ("POST", "/api/v1/events/batch", "ingest"),
    ("GET", "/api/v1/events", "read"),
    ("GET", f"/api/v1/events/{NOWHERE}", "read"),
    ("GET", "/api/v1/verify", "read"),
    ("GET", "/api/v1/alerts", "read"),
    ("POST", "/api/v1/exports", "read"),
    ("GET", "/api/v1/exports", "read"),
    ("GET", f"/api/v1/exports/{NOWHERE}", "read"),
    ("GET", f"/api/v1/exports/{NOWHERE}/download", "read"),
    ("GET", "/api/v1/verifications", "read"),
    ("POST", "/api/v1/evidence-packs", "read"),
    ("GET", "/api/v1/evidence-packs", "read"),
    ("GET", f"/api/v1/evidence-packs/{NOWHERE}", "read"),
    ("GET", f"/api/v1/evidence-packs/{NOWHERE}/download", "read"),
    ("GET", "/api/v1/stats/activity", "read"),
    ("POST", "/api/v1/viewer-tokens", "read"),
    ("GET", "/api/v1/log-key", "read"),
    ("GET", "/api/v1/checkpoints/latest", "read"),
    ("GET", "/api/v1/checkpoints", "read"),
    ("GET", "/api/v1/proofs/inclusion", "read"),
    ("GET", "/api/v1/proofs/consistency", "read"),
    ("GET", "/api/v1/workspace", "read"),
    ("GET", "/api/v1/schemas", "read"),
    ("GET", f"/api/v1/schemas/{NOWHERE}", "read"),
    ("PATCH", "/api/v1/workspace", "admin"),
    ("POST", "/api/v1/alert-rules", "admin"),
    ("GET", "/api/v1/alert-rules", "admin"),
    ("GET", f"/api/v1/alert-rules/{NOWHERE}", "admin"),
    ("PATCH", f"/api/v1/alert-rules/{NOWHERE}", "admin"),
    ("DELETE", f"/api/v1/alert-rules/{NOWHERE}", "admin"),
    ("POST", "/api/v1/webhook-endpoints", "admin"),
    ("GET", "/api/v1/webhook-endpoints", "admin"),
    ("DELETE", f"/api/v1/webhook-endpoints/{NOWHERE}", "admin"),
    ("POST", "/api/v1/api-keys", "admin"),
    ("GET", "/api/v1/api-keys", "admin"),
    ("DELETE", f"/api/v1/api-keys/{NOWHERE}", "admin"),
    ("GET", "/api/v1/members", "admin"),
    ("POST", "/api/v1/members", "admin"),
    ("PATCH", "/api/v1/members/x@example.com", "admin"),
    ("DELETE", "/api/v1/members/x@example.com", "admin"),
    ("GET", "/api/v1/ip-allowlist", "admin"),
    ("POST", "/api/v1/ip-allowlist", "admin"),
    ("DELETE", f"/api/v1/ip-allowlist/{NOWHERE}", "admin"),
    ("POST", "/api/v1/schemas", "admin"),
    ("PATCH", f"/api/v1/schemas/{NOWHERE}", "admin"),
    ("DELETE", f"/api/v1/schemas/{NOWHERE}", "admin"),
    ("POST", "/api/v1/log-streams", "admin"),
    ("GET", "/api/v1/log-streams", "admin"),
    ("GET", f"/api/v1/log-streams/{NOWHERE}", "admin"),
    ("PATCH", f"/api/v1/log-streams/{NOWHERE}", "admin"),
    ("DELETE", f"/api/v1/log-streams/{NOWHERE}", "admin"),
    ("POST", f"/api/v1/log-streams/{NOWHERE}/test", "admin"),
    ("POST", "/api/v1/schedules", "admin"),
    ("GET", "/api/v1/schedules", "admin"),
    ("GET", f"/api/v1/schedules/{NOWHERE}", "admin"),
    ("DELETE", f"/api/v1/schedules/{NOWHERE}", "admin"),
    ("POST", "/api/v1/legal-holds", "admin"),
    ("GET", "/api/v1/legal-holds", "admin"),
    ("GET", f"/api/v1/legal-holds/{NOWHERE}", "admin"),
    ("POST", f"/api/v1/legal-holds/{NOWHERE}/release", "admin"),
    ("GET", "/api/v1/privacy", "read"),
    ("PUT", "/api/v1/privacy", "admin"),
    ("POST", f"/api/v1/subjects/{NOWHERE}/erase", "admin"),
    ("GET", "/api/v1/erasures", "admin"),
]


#: Read-scope routes an auditor key may not use: they hand out access (docs/audited-reads.md).
AUDITOR_REFUSED = {("POST", "/api/v1/viewer-tokens")}


def _allowed(scope: str, needed: str, method: str, path: str) -> bool:
    if scope == "auditor" and needed == "read":
        return (method, path) not in AUDITOR_REFUSED
    return scope == needed


async def _call(api: httpx.AsyncClient, method: str, path: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {} if method in ("POST", "PATCH") else None
    return await api.request(method, path, json=body, headers=headers)


async def _key(db: asyncpg.Pool, ws: Workspace, scopes: list[str]) -> str:
    async with db.acquire() as conn:
        return (await keys.create_key(conn, ws.id, "+".join(scopes), scopes)).key


async def test_every_route_checks_key_and_scope(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    by_scope = {s: await _key(admin_db, workspace, [s]) for s in keys.SCOPES}
    for method, path, needed in ROUTES:
        r = await _call(api, method, path, None)
        assert r.status_code == 401, (method, path, r.text)
        for scope, key in by_scope.items():
            r = await _call(api, method, path, key)
            if _allowed(scope, needed, method, path):
                assert r.status_code not in (401, 403), (method, path, scope, r.text)
            else:
                assert r.status_code == 403, (method, path, scope, r.text)
                assert r.json()["error"] == "forbidden"
    assert {p for _, p, _ in ROUTES} >= _documented_paths(api) - set(VIEWER_ROUTES)
    # The viewer's routes take viewer tokens only: no API key, whatever its scopes.
    assert set(VIEWER_ROUTES) <= _documented_paths(api)
    for path in VIEWER_ROUTES:
        for key in (None, *by_scope.values()):
            r = await _call(api, "GET", path, key)
            assert r.status_code == 401, (path, r.text)


VIEWER_ROUTES = ("/api/v1/viewer/scope", "/api/v1/viewer/events", "/api/v1/viewer/events.csv")


def _documented_paths(api: httpx.AsyncClient) -> set[str]:
    """The /api/v1 paths the gateway serves (from its OpenAPI), ids filled in."""
    doc = httpx.get(f"{api.base_url}/openapi.json").json()
    out = set()
    for path in doc["paths"]:
        if not path.startswith("/api/v1/") or path.startswith("/api/v1/operator/"):
            continue
        out.add(
            path.replace("{event_id}", NOWHERE)
            .replace("{rule_id}", NOWHERE)
            .replace("{endpoint_id}", NOWHERE)
            .replace("{key_id}", NOWHERE)
            .replace("{entry_id}", NOWHERE)
            .replace("{schema_id}", NOWHERE)
            .replace("{stream_id}", NOWHERE)
            .replace("{export_id}", NOWHERE)
            .replace("{pack_id}", NOWHERE)
            .replace("{schedule_id}", NOWHERE)
            .replace("{hold_id}", NOWHERE)
            .replace("{subject}", NOWHERE)
            .replace("{email}", "x@example.com")
        )
    return out


async def test_other_workspace_sees_nothing(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    h = workspace.headers
    rule = await api.post(
        "/api/v1/alert-rules",
        json={
            "name": "r",
            "rule_type": "repeated_action",
            "conditions": {"threshold": 3},
            "channels": ["webhook"],
        },
        headers=h,
    )
    schema = await api.post("/api/v1/schemas", json={"action_pattern": "x.*"}, headers=h)
    key = await api.post("/api/v1/api-keys", json={"name": "k", "scopes": ["read"]}, headers=h)
    assert {rule.status_code, schema.status_code, key.status_code} == {201}
    async with admin_db.acquire() as conn:
        _, other = await keys.create_workspace(conn, "other", "enterprise")
    oh = {"Authorization": f"Bearer {other.key}"}
    assert (
        await api.get(f"/api/v1/alert-rules/{rule.json()['id']}", headers=oh)
    ).status_code == 404
    assert (await api.get(f"/api/v1/schemas/{schema.json()['id']}", headers=oh)).status_code == 404
    assert (await api.delete(f"/api/v1/api-keys/{key.json()['id']}", headers=oh)).status_code == 404
    assert (await api.get("/api/v1/schemas", headers=oh)).json()["data"] == []
    listed = (await api.get("/api/v1/api-keys", headers=oh)).json()["data"]
    assert [k["prefix"] for k in listed] == [other.prefix]


async def test_api_keys_shown_once_revoked_within_seconds(
    api: httpx.AsyncClient, workspace: Workspace
) -> None:
    h = workspace.headers
    r = await api.post("/api/v1/api-keys", json={"name": "ci", "scopes": ["ingest"]}, headers=h)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith(f"clk_{created['prefix']}_")
    listed = {k["id"]: k for k in (await api.get("/api/v1/api-keys", headers=h)).json()["data"]}
    assert "key" not in listed[created["id"]] and listed[created["id"]]["scopes"] == ["ingest"]
    new = {"Authorization": f"Bearer {created['key']}"}
    assert (
        await api.post("/api/v1/events", json={"actor_id": "a", "action": "b.c"}, headers=new)
    ).status_code == 202
    listed = {k["id"]: k for k in (await api.get("/api/v1/api-keys", headers=h)).json()["data"]}
    assert listed[created["id"]]["last_used_at"] is not None
    assert (await api.delete(f"/api/v1/api-keys/{created['id']}", headers=h)).status_code == 204

    async def refused() -> bool:
        r = await api.post("/api/v1/events", json={"actor_id": "a", "action": "b.c"}, headers=new)
        return r.status_code == 401

    await wait_until(refused, within=10, what="the revoked key to be refused")
    bad = await api.post("/api/v1/api-keys", json={"name": "", "scopes": ["root"]}, headers=h)
    assert [v["field"] for v in bad.json()["violations"]] == ["name", "scopes"]


async def test_members_keep_an_owner(api: httpx.AsyncClient, workspace: Workspace) -> None:
    h = workspace.headers
    r = await api.post(
        "/api/v1/members", json={"email": "Ann@Example.com", "role": "owner"}, headers=h
    )
    assert r.status_code == 201 and r.json()["email"] == "ann@example.com"
    assert (
        await api.post(
            "/api/v1/members", json={"email": "ann@example.com", "role": "viewer"}, headers=h
        )
    ).status_code == 409
    r = await api.post(
        "/api/v1/members", json={"email": "bob@example.com", "role": "boss"}, headers=h
    )
    assert [v["field"] for v in r.json()["violations"]] == ["role"]
    assert (
        await api.patch("/api/v1/members/ann@example.com", json={"role": "admin"}, headers=h)
    ).status_code == 409
    assert (await api.delete("/api/v1/members/ann@example.com", headers=h)).status_code == 409
    assert (
        await api.post(
            "/api/v1/members", json={"email": "bob@example.com", "role": "owner"}, headers=h
        )
    ).status_code == 201
    r = await api.patch("/api/v1/members/ann@example.com", json={"role": "viewer"}, headers=h)
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert (await api.delete("/api/v1/members/ann@example.com", headers=h)).status_code == 204
    members = (await api.get("/api/v1/members", headers=h)).json()["data"]
    assert [(m["email"], m["role"]) for m in members] == [("bob@example.com", "owner")]


async def test_ip_allowlist(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    h = workspace.headers
    # An entry that would lock out the caller (127.0.0.1) is refused.
    r = await api.post("/api/v1/ip-allowlist", json={"cidr": "10.0.0.0/8"}, headers=h)
    assert r.status_code == 422 and "127.0.0.1" in r.json()["violations"][0]["message"]
    r = await api.post("/api/v1/ip-allowlist", json={"cidr": "not-a-network"}, headers=h)
    assert r.json()["violations"][0]["field"] == "cidr"
    mine = await api.post(
        "/api/v1/ip-allowlist", json={"cidr": "127.0.0.0/8", "description": "here"}, headers=h
    )
    assert mine.status_code == 201, mine.text
    assert (
        await api.post("/api/v1/ip-allowlist", json={"cidr": "2001:db8::/32"}, headers=h)
    ).status_code == 201
    assert (
        await api.post("/api/v1/events", json={"actor_id": "a", "action": "b.c"}, headers=h)
    ).status_code == 202
    r = await api.delete(f"/api/v1/ip-allowlist/{mine.json()['id']}", headers=h)
    assert r.status_code == 422  # removing it would lock us out
    # The operator narrows the list behind the API's back: within the cache
    # period, requests from 127.0.0.1 are refused, with a message that says so.
    await admin_db.execute("DELETE FROM ip_allowlist WHERE id = $1", mine.json()["id"])

    async def refused() -> httpx.Response | None:
        r = await api.get("/api/v1/events", headers=h)
        return r if r.status_code == 403 else None

    r = await wait_until(refused, within=10, what="the allowlist to refuse 127.0.0.1")
    assert "127.0.0.1" in r.json()["message"] and "allowlist" in r.json()["message"]


async def test_plan_limits_and_plan_change(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, env: dict[str, str]
) -> None:
    async with admin_db.acquire() as conn:
        ws_id, key = await keys.create_workspace(conn, "free-one", "free")
    h = {"Authorization": f"Bearer {key.key}"}
    rule = {
        "name": "r",
        "rule_type": "repeated_action",
        "conditions": {"threshold": 2},
        "channels": ["webhook"],
    }
    for _ in range(2):
        assert (await api.post("/api/v1/alert-rules", json=rule, headers=h)).status_code == 201
    r = await api.post("/api/v1/alert-rules", json=rule, headers=h)
    assert r.status_code == 403
    assert r.json() == {
        "error": "plan_limit_reached",
        "message": "Your Free plan allows 2 alert rules; delete one or upgrade.",
        "limit": 2,
        "used": 2,
    }
    r = await api.post("/api/v1/api-keys", json={"name": "x", "scopes": ["read"]}, headers=h)
    assert r.status_code == 201  # the first key plus this one: 2
    r = await api.post("/api/v1/api-keys", json={"name": "y", "scopes": ["read"]}, headers=h)
    assert r.status_code == 403 and r.json()["limit"] == 2
    # The operator moves it to Pro, through the API and the CLI.
    op = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    assert (
        await api.put(
            f"/api/v1/operator/workspaces/{ws_id}/plan",
            json={"plan": "pro"},
            headers={"Authorization": "Bearer nope"},
        )
    ).status_code == 401
    r = await api.put(
        f"/api/v1/operator/workspaces/{ws_id}/plan", json={"plan": "platinum"}, headers=op
    )
    assert r.status_code == 422
    r = await api.put(
        f"/api/v1/operator/workspaces/{ws_id}/plan", json={"plan": "starter"}, headers=op
    )
    assert r.status_code == 200 and r.json()["plan"]["id"] == "starter"
    done = await asyncio.to_thread(
        subprocess.run,
        [str(REPO / ".venv" / "bin" / "chainlog"), "workspace", "set-plan", ws_id, "pro"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (await api.get("/api/v1/workspace", headers=h)).json()["plan"]["id"] == "pro"
    r = await api.post("/api/v1/alert-rules", json=rule, headers=h)
    assert r.status_code == 201, r.text


async def test_rate_limit_across_two_gateways(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    env: dict[str, str],
    services: dict[str, Service],
) -> None:
    """60 requests a minute (Free) shared by two gateway processes."""
    second_port = API_PORT + 7
    second = Service("ingest", env | {"CHAINLOG_API_PORT": str(second_port)}, instance="-b")
    second.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{second_port}", timeout=30) as b:
            await wait_for_api(b)
            async with admin_db.acquire() as conn:
                _, key = await keys.create_workspace(conn, "limited", "free")
            h = {"Authorization": f"Bearer {key.key}"}
            pids = [services["ingest"].proc.pid, second.proc.pid]  # type: ignore[union-attr]
            codes: list[int] = []
            last: httpx.Response | None = None

            # The limit counts per minute of the clock: start at the top of
            # a minute, so the whole run (about 15 s) falls in one window.
            async def minute_starts() -> bool:
                return time.time() % 60 < 3

            await wait_until(minute_starts, within=65, interval=0.2, what="a new minute")
            window = int(time.time() // 60)
            for i in range(90):
                client = api if i % 2 else b
                last = await client.post(
                    "/api/v1/events", json={"actor_id": "a", "action": "b.c"}, headers=h
                )
                codes.append(last.status_code)
                if i % 10 == 9:
                    # Both gateways publish their counts after this chunk
                    # (they sync every second) before the next chunk goes.
                    since = await admin_db.fetchval("SELECT now()")
                    await wait_until(
                        lambda since=since: _synced(admin_db, pids, since),
                        within=10,
                        what="a sync",
                    )
            assert int(time.time() // 60) == window, "the run crossed a minute: it proves nothing"
            accepted = codes.count(202)
            assert set(codes) <= {202, 429}
            # The documented margin: each gateway may admit what the other
            # admitted since its last sync (at most 10 requests here).
            assert 60 <= accepted <= 60 + 10, codes
            assert last is not None and last.status_code == 429
            assert last.headers["X-RateLimit-Limit"] == "60"
            assert last.headers["X-RateLimit-Remaining"] == "0"
            assert int(last.headers["Retry-After"]) >= 1
            assert last.json()["error"] == "rate_limited"
    finally:
        second.stop()


async def _synced(db: asyncpg.Pool, pids: list[int], since: Any) -> bool:
    """Both gateway processes have completed a sync (their heartbeat) since ``since``."""
    n = await db.fetchval(
        "SELECT count(*) FROM gateway_instances WHERE seen_at > $1"
        " AND split_part(instance, ':', 2) = ANY($2::text[])",
        since,
        [str(p) for p in pids],
    )
    return bool(n and n >= 2)


async def test_schemas_strict_and_permissive(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    h = workspace.headers
    r = await api.post(
        "/api/v1/schemas",
        json={
            "action_pattern": "billing.*",
            "description": "money",
            "metadata_schema": {
                "type": "object",
                "properties": {"amount": {"type": "number", "minimum": 0}},
                "required": ["amount"],
            },
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    bad = await api.post(
        "/api/v1/schemas", json={"action_pattern": "x", "metadata_schema": {"type": 7}}, headers=h
    )
    assert bad.status_code == 422 and bad.json()["violations"][0]["field"] == "metadata_schema"
    assert (
        await api.patch("/api/v1/workspace", json={"schema_mode": "strict"}, headers=h)
    ).status_code == 200
    r = await api.post(
        "/api/v1/events",
        json={"actor_id": "a", "action": "billing.refunded", "metadata": {"amount": -5}},
        headers=h,
    )
    assert r.status_code == 422, r.text
    assert r.json()["violations"][0]["field"] == "metadata"
    assert "amount" in r.json()["violations"][0]["message"]
    r = await api.post("/api/v1/events", json={"actor_id": "a", "action": "user.login"}, headers=h)
    assert r.status_code == 422
    assert (
        r.json()["message"] == "Action 'user.login' does not match any configured schema pattern."
    )
    ok = await api.post(
        "/api/v1/events",
        json={"actor_id": "a", "action": "billing.paid", "metadata": {"amount": 5}},
        headers=h,
    )
    assert ok.status_code == 202
    assert (
        await api.patch("/api/v1/workspace", json={"schema_mode": "permissive"}, headers=h)
    ).status_code == 200
    loose = await api.post(
        "/api/v1/events", json={"actor_id": "a", "action": "user.login"}, headers=h
    )
    assert loose.status_code == 202

    async def flagged() -> list[dict[str, Any]]:
        r = await api.get("/api/v1/events", params={"schema_violation": "true"}, headers=h)
        return list(r.json()["data"])

    events = await wait_until(flagged, what="the flagged event to be stored")
    assert [e["id"] for e in events] == [loose.json()["id"]]
    assert "does not match" in events[0]["schema_violation"]


async def test_admin_trail_is_in_the_chain_and_verifies(
    api: httpx.AsyncClient, workspace: Workspace
) -> None:
    h = {**workspace.headers, "User-Agent": "trail-test/1"}
    key = await api.post("/api/v1/api-keys", json={"name": "ops", "scopes": ["read"]}, headers=h)
    await api.post("/api/v1/members", json={"email": "cy@example.com", "role": "admin"}, headers=h)
    await api.patch("/api/v1/members/cy@example.com", json={"role": "viewer"}, headers=h)
    await api.delete(f"/api/v1/api-keys/{key.json()['id']}", headers=h)
    await api.post("/api/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/h"}, headers=h)
    expected = [
        "admin.api_key.created",
        "admin.member.added",
        "admin.member.role_changed",
        "admin.api_key.revoked",
        "admin.webhook_endpoint.created",
    ]

    async def trail() -> list[dict[str, Any]]:
        r = await api.get("/api/v1/events", params={"action_category": "admin"}, headers=h)
        data = list(reversed(r.json()["data"]))
        return data if len(data) >= len(expected) else []

    events = await wait_until(trail, what="the admin events to be stored")
    assert [e["action"] for e in events] == expected
    first = events[0]
    assert first["actor_id"].startswith("api_key:") and first["actor_type"] == "api_key"
    assert first["ip_address"] == "127.0.0.1" and first["user_agent"] == "trail-test/1"
    assert first["metadata"]["after"]["scopes"] == ["read"]
    secret_words = (key.json()["key"], "whsec_")
    for e in events:
        assert not any(w in str(e) for w in secret_words), e
    role = events[2]["metadata"]
    assert role["before"]["role"] == "admin" and role["after"]["role"] == "viewer"
    v = (await api.get("/api/v1/verify", headers=h)).json()
    assert v["valid"] is True and v["events_checked"] == len(expected)
    # Producers cannot forge them.
    r = await api.post(
        "/api/v1/events", json={"actor_id": "x", "action": "admin.api_key.created"}, headers=h
    )
    assert r.status_code == 422
    r = await api.post(
        "/api/v1/events",
        json={"actor_id": "x", "action": "a.b", "action_category": "admin"},
        headers=h,
    )
    assert r.status_code == 422


def test_cli_workspace_create_and_show(env: dict[str, str], services: Any) -> None:
    chainlog = str(REPO / ".venv" / "bin" / "chainlog")
    name = f"cli-{os.urandom(3).hex()}"
    out = subprocess.run(
        [
            chainlog,
            "workspace",
            "create",
            name,
            "--owner-email",
            "o@example.com",
            "--plan",
            "starter",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    created = json.loads(out.stdout)
    shown = json.loads(
        subprocess.run(
            [chainlog, "workspace", "show", created["workspace_id"]],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert shown["name"] == name and shown["plan"]["id"] == "starter"
    assert shown["plan"]["limits"]["requests_per_minute"] == 300
    assert shown["members"][0]["email"] == "o@example.com"
    assert [k["prefix"] for k in shown["api_keys"]] == [created["api_key"].split("_")[1]]
    bad = subprocess.run(
        [chainlog, "workspace", "create", name, "--plan", "gold"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "plan" in bad.stderr


async def test_cli_keys_and_members_through_the_api(
    env: dict[str, str], workspace: Workspace, api: httpx.AsyncClient
) -> None:
    chainlog = str(REPO / ".venv" / "bin" / "chainlog")
    cli_env = env | {"CHAINLOG_API_URL": str(api.base_url), "CHAINLOG_API_KEY": workspace.key}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [chainlog, *args], env=cli_env, capture_output=True, text=True, check=False
        )

    made = await asyncio.to_thread(run, "keys", "create", "deploy", "--scopes", "ingest,read")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["scopes"] == ["ingest", "read"] and key["key"].startswith("clk_")
    listed = json.loads((await asyncio.to_thread(run, "keys", "list")).stdout)["data"]
    assert key["prefix"] in [k["prefix"] for k in listed]
    assert (await asyncio.to_thread(run, "keys", "revoke", key["id"])).returncode == 0
    assert (
        await asyncio.to_thread(run, "members", "add", "dee@example.com", "--role", "owner")
    ).returncode == 0
    assert (
        await asyncio.to_thread(run, "members", "set-role", "dee@example.com", "admin")
    ).returncode == 1
    refused = await asyncio.to_thread(run, "members", "remove", "dee@example.com")
    assert refused.returncode == 1 and "owner" in refused.stderr
    members = json.loads((await asyncio.to_thread(run, "members", "list")).stdout)["data"]
    assert [(m["email"], m["role"]) for m in members] == [("dee@example.com", "owner")]
