"""The alert management API: bad definitions are refused field by field."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from libs.common import errors, keys
from libs.common.secretbox import SecretBox
from services.ingest import alerts_api
from tests.conftest import Workspace

GOOD = {
    "name": "too many deletes",
    "rule_type": "high_volume_destructive",
    "conditions": {"threshold": 10},
    "channels": ["webhook"],
}


def fields(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    return [v["field"] for v in r.json()["violations"]]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"rule_type": "nope"}, ["rule_type"]),
        ({"conditions": {"threshold": "ten"}}, ["conditions.threshold"]),
        (
            {"conditions": {"threshold": 0, "window_seconds": -1}},
            ["conditions.threshold", "conditions.window_seconds"],
        ),
        ({"conditions": {"threshold": 3, "colour": "red"}}, ["conditions.colour"]),
        ({"channels": ["sms"]}, ["channels"]),
        ({"channels": []}, ["channels"]),
        ({"name": ""}, ["name"]),
        ({"cooldown_seconds": True}, ["cooldown_seconds"]),
        ({"email_recipients": ["ok@example.com", "not-an-address"]}, ["email_recipients[1]"]),
        (
            {"webhook_endpoint_ids": ["0190d5a0-0000-7000-8000-000000000000"]},
            ["webhook_endpoint_ids[0]"],
        ),
        ({"webhook_endpoint_ids": ["x"]}, ["webhook_endpoint_ids[0]"]),
        ({"severity": "high"}, ["severity"]),
    ],
)
async def test_bad_rule_is_422_naming_the_field(
    api: httpx.AsyncClient, workspace: Workspace, change: dict[str, Any], expected: list[str]
) -> None:
    r = await api.post("/api/v1/alert-rules", json={**GOOD, **change}, headers=workspace.headers)
    assert fields(r) == expected


async def test_off_hours_and_missing_fields(api: httpx.AsyncClient, workspace: Workspace) -> None:
    r = await api.post(
        "/api/v1/alert-rules",
        json={
            **GOOD,
            "rule_type": "off_hours",
            "conditions": {"start": "25:00", "end": "09:00", "timezone": "Mars/Olympus"},
        },
        headers=workspace.headers,
    )
    assert set(fields(r)) == {"conditions.start", "conditions.timezone"}
    r = await api.post("/api/v1/alert-rules", json={"name": "x"}, headers=workspace.headers)
    assert set(fields(r)) == {"rule_type", "conditions", "channels"}
    r = await api.post("/api/v1/alert-rules", json=[1], headers=workspace.headers)
    assert fields(r) == ["body"]


async def test_rule_lifecycle(api: httpx.AsyncClient, workspace: Workspace) -> None:
    h = workspace.headers
    r = await api.post("/api/v1/alert-rules", json=GOOD, headers=h)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["conditions"]["window_seconds"] == 300  # defaults filled in
    assert rule["enabled"] is True and rule["version"] == 1
    assert (await api.get(f"/api/v1/alert-rules/{rule['id']}", headers=h)).json() == rule
    r = await api.patch(f"/api/v1/alert-rules/{rule['id']}", json={"enabled": False}, headers=h)
    assert r.json()["enabled"] is False and r.json()["version"] == 1
    r = await api.patch(
        f"/api/v1/alert-rules/{rule['id']}", json={"conditions": {"threshold": 5}}, headers=h
    )
    assert r.json()["conditions"]["threshold"] == 5 and r.json()["version"] == 2
    r = await api.patch(
        f"/api/v1/alert-rules/{rule['id']}", json={"conditions": {"threshold": -5}}, headers=h
    )
    assert fields(r) == ["conditions.threshold"]
    r = await api.patch(
        f"/api/v1/alert-rules/{rule['id']}", json={"rule_type": "off_hours"}, headers=h
    )
    assert fields(r) == ["conditions"]
    listed = (await api.get("/api/v1/alert-rules", headers=h)).json()["data"]
    # Every workspace starts with its chain_integrity rule (docs/exports.md).
    assert [(x["rule_type"], x["id"]) for x in listed][1:] == [(rule["rule_type"], rule["id"])]
    assert listed[0]["rule_type"] == "chain_integrity"
    assert (await api.delete(f"/api/v1/alert-rules/{rule['id']}", headers=h)).status_code == 204
    assert (await api.get(f"/api/v1/alert-rules/{rule['id']}", headers=h)).status_code == 404
    assert (await api.delete(f"/api/v1/alert-rules/{rule['id']}", headers=h)).status_code == 404
    assert (await api.get("/api/v1/alert-rules/not-a-uuid", headers=h)).status_code == 404


async def test_admin_scope_required(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    async with admin_db.acquire() as conn:
        reader = await keys.create_key(conn, workspace.id, "reader", ["read", "ingest"])
    h = {"Authorization": f"Bearer {reader.key}"}
    assert (await api.post("/api/v1/alert-rules", json=GOOD, headers=h)).status_code == 403
    assert (await api.get("/api/v1/alert-rules", headers=h)).status_code == 403
    assert (await api.get("/api/v1/webhook-endpoints", headers=h)).status_code == 403
    assert (await api.get("/api/v1/alerts", headers=h)).status_code == 200


async def test_webhook_endpoint_secret_shown_once_and_stored_encrypted(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    h = workspace.headers
    r = await api.post("/api/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=h)
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created.pop("secret")
    listed = (await api.get("/api/v1/webhook-endpoints", headers=h)).json()["data"]
    assert listed == [created]  # no secret, ever again
    stored = await admin_db.fetchval(
        "SELECT secret_enc FROM webhook_endpoints WHERE id = $1", created["id"]
    )
    assert secret.encode() not in stored and secret[6:].encode() not in stored
    assert (
        await api.delete(f"/api/v1/webhook-endpoints/{created['id']}", headers=h)
    ).status_code == 204
    assert (await api.get("/api/v1/webhook-endpoints", headers=h)).json()["data"] == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http"),
        ("not a url", "url"),
        ("http://user:pw@example.com/", "user"),
    ],
)
async def test_bad_endpoint_url(
    api: httpx.AsyncClient, workspace: Workspace, url: str, why: str
) -> None:
    r = await api.post("/api/v1/webhook-endpoints", json={"url": url}, headers=workspace.headers)
    assert fields(r) == ["url"]
    assert why in r.json()["violations"][0]["message"].lower()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://10.0.0.8/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
    ],
)
async def test_private_destinations_refused_unless_allowed(
    admin_db: asyncpg.Pool, workspace: Workspace, url: str
) -> None:
    """The operator setting decides; the test stack allows them, so ask the API module directly."""
    box = SecretBox(bytes(32))
    async with admin_db.acquire() as conn:
        with pytest.raises(errors.ApiError) as refused:
            await alerts_api.create_endpoint(
                conn, box, workspace.id, {"url": url}, allow_private=False
            )
        assert refused.value.status == 422
        assert refused.value.extra["violations"][0]["field"] == "url"
        created = await alerts_api.create_endpoint(
            conn, box, workspace.id, {"url": url}, allow_private=True
        )
    assert created.result["url"].startswith("http://")
    assert "secret" not in created.after
