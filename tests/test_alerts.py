"""Alerts end to end: POST an event, receive a signed webhook and an email.

Real Kafka, real PostgreSQL, the real gateway, chainer, enricher, exporter
and alerter processes, a real HTTP receiver and a real SMTP server. Silence
is proven without sleeping: the test waits until the alerter has committed
the workspace's last event (``alerter_progress``), then counts alerts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook

from tests.conftest import Workspace, settle
from tests.receivers import Received, SmtpSink, WebhookReceiver
from tests.stack import SMTP_PORT, wait_until

DE, FR, BR = "2a02:ff0:1::1", "90.84.200.7", "2804:14c:65::2"


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(SMTP_PORT).start()
    yield sink
    sink.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


class Setup:
    """A workspace with an owner to email and a webhook endpoint to call."""

    def __init__(
        self, api: httpx.AsyncClient, db: asyncpg.Pool, ws: Workspace, receiver: WebhookReceiver
    ) -> None:
        self.api, self.db, self.ws, self.receiver = api, db, ws, receiver
        self.owner = f"owner-{ws.id[:8]}@example.com"
        self.secret = ""
        self.endpoint_id = ""
        self.sent_ids: list[str] = []

    async def prepare(self) -> Setup:
        await self.db.execute(
            "INSERT INTO workspace_members (workspace_id, email, role) VALUES ($1, $2, 'owner')",
            self.ws.id,
            self.owner,
        )
        r = await self.api.post(
            "/api/v1/webhook-endpoints",
            json={"url": self.receiver.url, "description": "test receiver"},
            headers=self.ws.headers,
        )
        assert r.status_code == 201, r.text
        self.secret, self.endpoint_id = r.json()["secret"], r.json()["id"]
        assert self.secret.startswith("whsec_")
        return self

    async def rule(self, rule_type: str, conditions: dict[str, Any], **extra: Any) -> str:
        body = {
            "name": f"{rule_type} rule",
            "rule_type": rule_type,
            "conditions": conditions,
            "channels": ["email", "webhook"],
            "cooldown_seconds": 0,
            **extra,
        }
        r = await self.api.post("/api/v1/alert-rules", json=body, headers=self.ws.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def send(self, *events: dict[str, Any]) -> list[str]:
        r = await self.api.post(
            "/api/v1/events/batch", json={"events": list(events)}, headers=self.ws.headers
        )
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == len(events), r.text
        ids = [item["id"] for item in r.json()["results"]]
        self.sent_ids.extend(ids)
        return ids

    async def settled(self) -> None:
        """Wait until the alerter has committed every event sent so far.

        The chain also holds the admin events of this test's management
        calls, so the target is the seq of the last event sent, read back.
        """
        await settle(self.db, self.ws.id, self.sent_ids)

    async def alerts(self) -> list[dict[str, Any]]:
        r = await self.api.get("/api/v1/alerts", headers=self.ws.headers)
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    async def webhooks(self, n: int) -> list[Received]:
        async def arrived() -> list[Received]:
            got = self.receiver.snapshot()
            return got if len(got) >= n else []

        return await wait_until(arrived, what=f"{n} webhook(s)")

    def verify(self, got: Received) -> dict[str, Any]:
        """Check the signature as a receiver would, with the Standard Webhooks library."""
        payload: dict[str, Any] = Webhook(self.secret).verify(got.body, got.headers)
        return payload


@pytest.fixture
async def setup(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    receiver: WebhookReceiver,
    services: Any,
) -> AsyncIterator[Setup]:
    yield await Setup(api, admin_db, workspace, receiver).prepare()


async def _delivered_both(setup: Setup, smtp: SmtpSink, n: int = 1) -> dict[str, Any]:
    """The alerts that fired, each delivered as a signed webhook and an email."""
    hooks = await setup.webhooks(n)
    payload = setup.verify(hooks[0])
    assert payload["type"] == "alert.triggered"
    assert payload["workspace_id"] == setup.ws.id
    mails = await wait_until(lambda: _mails(smtp, setup.owner, n), what="the alert email")
    text = mails[0].get_body(("plain",))
    assert text is not None and payload["alert"]["reason"] in text.get_content()

    async def recorded() -> list[dict[str, Any]]:
        alerts = await setup.alerts()
        done = (
            all(d["status"] == "delivered" for a in alerts for d in a["deliveries"])
            and len(alerts) >= n
        )
        return alerts if done else []

    alerts = await wait_until(recorded, what="both deliveries recorded as delivered")
    assert {d["channel"] for d in alerts[0]["deliveries"]} == {"email", "webhook"}
    return payload


async def _mails(smtp: SmtpSink, address: str, n: int) -> list[Any]:
    got = smtp.to(address)
    return got if len(got) >= n else []


def ev(actor: str, action: str, **fields: Any) -> dict[str, Any]:
    return {"actor_id": actor, "action": action, **fields}


async def test_new_country(setup: Setup, smtp: SmtpSink) -> None:
    await setup.rule("new_country", {"lookback_days": 30})
    await setup.send(ev("u_42", "user.login", ip_address=DE))  # baseline: no alert
    await setup.send(ev("u_42", "user.login", ip_address=DE))  # seen: no alert
    await setup.settled()
    assert await setup.alerts() == []
    (br,) = await setup.send(ev("u_42", "user.login", ip_address=BR))
    payload = await _delivered_both(setup, smtp)
    assert payload["alert"]["rule_type"] == "new_country"
    assert "BR" in payload["alert"]["reason"] and "DE" in payload["alert"]["reason"]
    # The event carries the enricher's fields, outside the hash.
    assert payload["event"]["ip_country"] == "BR"
    assert payload["event"]["ip_city"] == "São Paulo"
    assert payload["event"]["id"] == br


async def test_high_volume_destructive(setup: Setup, smtp: SmtpSink) -> None:
    await setup.rule("high_volume_destructive", {"threshold": 3, "window_seconds": 600})
    # Three deletes are not more than three; other actors and actions do not count.
    await setup.send(*(ev("u_1", "document.delete") for _ in range(3)))
    await setup.send(ev("u_2", "document.delete"), ev("u_1", "document.update"))
    await setup.settled()
    assert await setup.alerts() == []
    await setup.send(ev("u_1", "user.revoke"))
    payload = await _delivered_both(setup, smtp)
    assert "u_1" in payload["alert"]["reason"]
    assert payload["event"]["action"] == "user.revoke"


async def test_ingestion_spike(setup: Setup, smtp: SmtpSink) -> None:
    conditions = {
        # A day: the whole test falls in one window (an hour could roll over).
        "window_seconds": 86400,
        "multiplier": 2,
        "baseline_windows": 1,
        "min_events": 30,
    }
    rule_id = await setup.rule("ingestion_spike", conditions)
    # The rule counts every event of the workspace received since it exists,
    # its own admin event (admin.alert_rule.created) included.
    admin = await _admin_events_since(setup, rule_id)
    await setup.send(*(ev(f"u_{i}", "document.view") for i in range(29 - admin)))
    await setup.settled()
    assert await setup.alerts() == []  # below the floor: quiet workspaces stay quiet
    (last,) = await setup.send(ev("u_x", "document.view"))
    payload = await _delivered_both(setup, smtp)
    assert payload["event"]["id"] == last
    # Once per window: more events in the same window raise nothing more.
    await setup.send(*(ev(f"u_{i}", "document.view") for i in range(40)))
    await setup.settled()
    assert len(await setup.alerts()) == 1


async def _admin_events_since(setup: Setup, rule_id: str) -> int:
    async def stored() -> int:
        return int(
            await setup.db.fetchval(
                "SELECT count(*) FROM events e WHERE e.workspace_id = $1"
                " AND e.received_at >= (SELECT created_at FROM alert_rules WHERE id = $2)",
                setup.ws.id,
                rule_id,
            )
        )

    return await wait_until(stored, what="the rule's own admin event to be stored")


async def test_repeated_action(setup: Setup, smtp: SmtpSink) -> None:
    await setup.rule(
        "repeated_action",
        {"threshold": 3, "window_seconds": 300, "action_pattern": "user.login_*"},
    )
    await setup.send(ev("u_7", "user.login_failed"), ev("u_7", "user.login_failed"))
    await setup.send(ev("u_8", "user.login_failed"), ev("u_7", "document.view"))
    await setup.settled()
    assert await setup.alerts() == []
    await setup.send(ev("u_7", "user.login_failed"))
    payload = await _delivered_both(setup, smtp)
    assert "3 times" in payload["alert"]["reason"]


async def test_off_hours(setup: Setup, smtp: SmtpSink) -> None:
    await setup.rule(
        "off_hours",
        {
            "start": "09:00",
            "end": "18:00",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "timezone": "Europe/Berlin",
            # Not every action: the rule's own admin event is off-hours when
            # the suite runs at night.
            "action_pattern": "billing.*",
        },
    )
    # Tuesday 10:00 in Berlin (08:00 UTC in winter): working hours.
    await setup.send(ev("u_3", "billing.export", occurred_at="2026-11-24T09:00:00Z"))
    await setup.settled()
    assert await setup.alerts() == []
    # Saturday 00:30 in Berlin.
    await setup.send(ev("u_3", "billing.export", occurred_at="2026-11-27T23:30:00Z"))
    payload = await _delivered_both(setup, smtp)
    assert "Sat" in payload["alert"]["reason"] and "Europe/Berlin" in payload["alert"]["reason"]


async def test_cooldown_and_rule_channels(setup: Setup, smtp: SmtpSink) -> None:
    """A cooldown stops a storm; a rule's own recipients replace the admins."""
    to = f"oncall-{os.urandom(3).hex()}@example.com"
    await setup.rule(
        "repeated_action",
        {"threshold": 2, "window_seconds": 300},
        cooldown_seconds=3600,
        channels=["email"],
        email_recipients=[to],
    )
    await setup.send(*(ev("u_9", "report.download") for _ in range(6)))
    await setup.settled()
    alerts = await setup.alerts()
    assert len(alerts) == 1, alerts  # fired at 2, then held by the cooldown
    await wait_until(lambda: _mails(smtp, to, 1), what="the email to the rule's recipient")
    assert smtp.to(setup.owner) == []
    assert setup.receiver.snapshot() == []  # no webhook channel on this rule


async def test_webhook_retried_until_delivered(setup: Setup, smtp: SmtpSink) -> None:
    """429 and 5xx are retried with backoff; every attempt is recorded."""
    setup.receiver.respond = lambda n: 503 if n == 1 else (429 if n == 2 else 200)
    await setup.rule("repeated_action", {"threshold": 2}, channels=["webhook"])
    await setup.send(ev("u_5", "key.create"), ev("u_5", "key.create"))
    hooks = await setup.webhooks(3)
    assert len({h.headers["webhook-id"] for h in hooks}) == 1  # one delivery, retried
    for h in hooks:
        setup.verify(h)

    async def delivered() -> list[dict[str, Any]]:
        alerts = await setup.alerts()
        d = alerts[0]["deliveries"][0] if alerts else None
        return [d] if d and d["status"] == "delivered" else []

    (d,) = await wait_until(delivered, what="the delivery to be recorded as delivered")
    assert [a["status"] for a in d["attempts"]] == [503, 429, 200]
    assert [a["outcome"] for a in d["attempts"]] == ["retry", "retry", "delivered"]


async def test_permanent_failure_is_not_retried(setup: Setup, smtp: SmtpSink) -> None:
    setup.receiver.respond = lambda n: 410
    await setup.rule("repeated_action", {"threshold": 2}, channels=["webhook"])
    await setup.send(ev("u_6", "key.create"), ev("u_6", "key.create"))

    async def failed() -> list[dict[str, Any]]:
        alerts = await setup.alerts()
        d = alerts[0]["deliveries"][0] if alerts else None
        return [d] if d and d["status"] == "failed" else []

    (d,) = await wait_until(failed, what="the delivery to be recorded as failed")
    assert [a["status"] for a in d["attempts"]] == [410]
    assert len(setup.receiver.snapshot()) == 1


async def test_alerts_filters_and_paging(setup: Setup, smtp: SmtpSink) -> None:
    await setup.rule(
        "repeated_action", {"threshold": 2, "action_pattern": "file.*"}, channels=["webhook"]
    )
    await setup.rule("high_volume_destructive", {"threshold": 1}, channels=["webhook"])
    await setup.send(*(ev(f"u_{i}", "file.delete") for i in range(3) for _ in range(2)))
    await setup.settled()
    alerts = await setup.alerts()
    by_type = {
        t: [a for a in alerts if a["rule_type"] == t]
        for t in ("repeated_action", "high_volume_destructive")
    }
    assert len(by_type["repeated_action"]) == 3 and len(by_type["high_volume_destructive"]) == 3
    r = await setup.api.get(
        "/api/v1/alerts", params={"rule_type": "repeated_action"}, headers=setup.ws.headers
    )
    assert [a["id"] for a in r.json()["data"]] == [a["id"] for a in by_type["repeated_action"]]
    seen: list[str] = []
    params: dict[str, str] = {"limit": "4"}
    while True:
        page = (
            await setup.api.get("/api/v1/alerts", params=params, headers=setup.ws.headers)
        ).json()
        seen += [a["id"] for a in page["data"]]
        if not page["pagination"]["has_more"]:
            break
        params["cursor"] = page["pagination"]["next_cursor"]
    assert seen == [a["id"] for a in alerts]
    future = (
        await setup.api.get(
            "/api/v1/alerts", params={"from": "2999-01-01T00:00:00Z"}, headers=setup.ws.headers
        )
    ).json()
    assert future["data"] == []


async def test_slow_endpoint_delays_nothing_else(
    setup: Setup, smtp: SmtpSink, receiver: WebhookReceiver
) -> None:
    """While one endpoint holds a request open, the other endpoint, the email
    and the evaluation of later events all go ahead."""
    release = threading.Event()
    slow = WebhookReceiver(respond=lambda n: 200 if release.wait(60) else 500).start()
    try:
        r = await setup.api.post(
            "/api/v1/webhook-endpoints", json={"url": slow.url}, headers=setup.ws.headers
        )
        assert r.status_code == 201
        await setup.rule("repeated_action", {"threshold": 2})
        await setup.send(ev("u_s", "a.b"), ev("u_s", "a.b"))

        async def held() -> bool:
            return slow.open_requests() == 1

        await wait_until(held, what="the slow endpoint to hold a request open")
        await setup.webhooks(1)  # the fast endpoint got its copy meanwhile
        await wait_until(lambda: _mails(smtp, setup.owner, 1), what="the email meanwhile")
        # ... before the slow endpoint's first attempt ended (its deadline is
        # CHAINLOG_WEBHOOK_TIMEOUT_SECONDS): had deliveries waited in line,
        # that attempt would already be recorded.
        finished = await setup.db.fetchval(
            "SELECT count(*) FROM alert_delivery_attempts a"
            " JOIN alert_deliveries d ON d.id = a.delivery_id"
            " JOIN webhook_endpoints e ON e.id = d.webhook_endpoint_id"
            " WHERE e.url = $1",
            slow.url,
        )
        assert finished == 0
        await setup.send(ev("u_t", "c.d"), ev("u_t", "c.d"))
        await setup.settled()
        assert len(await setup.alerts()) == 2  # evaluation went on
        await setup.webhooks(2)
        assert slow.open_requests() >= 1, "the slow request ended early: the test proves nothing"
    finally:
        release.set()
        slow.stop()
