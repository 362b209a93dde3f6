"""The deliverer: drains the outbox of alert deliveries (email, webhooks).

A delivery row is written in the same transaction as its alert, so it
exists exactly when the alert does. The deliverer *leases* due rows
(``FOR UPDATE SKIP LOCKED``, so several alerters share the work), sends each
in its own task and records every attempt. A crash loses nothing: the lease
expires and the row is sent again (at-least-once; webhook receivers dedupe
on ``webhook-id``, which is the delivery id).

A slow or dead endpoint holds only its own deliveries: each attempt has a
deadline, at most ``PER_ENDPOINT`` attempts per endpoint run at once, and
the evaluator never waits for any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import aiosmtplib
import asyncpg
import httpx
import orjson

from libs.common import checkpoint as notes
from libs.common.db import DATABASE_UNAVAILABLE
from libs.common.logs import Logger
from libs.common.metrics import AlerterMetrics
from libs.common.secretbox import SecretBox, SecretError
from libs.common.settings import Settings
from libs.common.ssrf import UnsafeDestination, check_url, guarded_client
from libs.common.timeutil import format_ts
from services.alerter import email, webhook

CAPACITY = 64
PER_ENDPOINT = 4
POLL_SECONDS = 1.0

CLAIM = """
UPDATE alert_deliveries d
SET lease_until = now() + make_interval(secs => $2), attempts = d.attempts + 1
WHERE d.id IN (
  SELECT id FROM alert_deliveries
  WHERE status = 'pending' AND next_attempt_at <= now()
    AND (lease_until IS NULL OR lease_until < now())
  ORDER BY next_attempt_at
  LIMIT $1
  FOR UPDATE SKIP LOCKED)
RETURNING d.id, d.alert_id, d.checkpoint_id, d.workspace_id, d.channel, d.webhook_endpoint_id,
          d.recipients, d.attempts
"""

DETAILS = """
SELECT a.id, a.rule_id, a.rule_name, a.rule_type, a.event_id, a.reason, a.triggered_at,
       a.event, w.name AS workspace_name
FROM alerts a JOIN workspaces w ON w.id = a.workspace_id
WHERE a.id = $1
"""

CHECKPOINT = "SELECT size, root, note, created_at FROM checkpoints WHERE id = $1"

ENDPOINT = "SELECT url, secret_enc, deleted_at FROM webhook_endpoints WHERE id = $1"

RECORD_ATTEMPT = """
INSERT INTO alert_delivery_attempts (delivery_id, attempt, status, error, duration_ms, outcome)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
"""

FINISH = """
UPDATE alert_deliveries
SET status = $2, last_status = $3, last_error = $4, lease_until = NULL,
    delivered_at = CASE WHEN $2 = 'delivered' THEN now() END,
    next_attempt_at = now() + make_interval(secs => $5)
WHERE id = $1
"""


def alert_document(alert: Mapping[str, Any]) -> dict[str, Any]:
    """An alert as the API and webhooks show it (without deliveries)."""
    return {
        "id": str(alert["id"]),
        "rule_id": str(alert["rule_id"]),
        "rule_name": alert["rule_name"],
        "rule_type": alert["rule_type"],
        "event_id": str(alert["event_id"]),
        "reason": alert["reason"],
        "triggered_at": format_ts(alert["triggered_at"]),
    }


class Deliverer:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        log: Logger,
        metrics: AlerterMetrics,
        secrets: SecretBox,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.log = log
        self.metrics = metrics
        self.secrets = secrets
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.inflight: set[asyncio.Task[None]] = set()
        self.endpoints: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(PER_ENDPOINT)
        )
        timeout = settings.webhook_timeout_s
        # A lease outlives an attempt and a short wait for a busy endpoint;
        # one that runs out only means the delivery may be sent twice.
        self.lease_seconds = 3 * timeout + 30
        self.client = webhook_client(settings)
        self.smtp = email.SmtpSettings.from_settings(settings)

    def notify(self) -> None:
        """New deliveries are waiting: look now rather than at the next poll."""
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        try:
            while not self.stopping.is_set():
                free = CAPACITY - len(self.inflight)
                if free > 0:
                    for row in await self._claim(free):
                        task = asyncio.create_task(self._deliver(row))
                        self.inflight.add(task)
                        task.add_done_callback(self._done)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS):
                        await self.wake.wait()
                self.wake.clear()
        finally:
            # What is still in flight is sent again once its lease expires.
            if self.inflight:
                await asyncio.wait(self.inflight, timeout=self.settings.webhook_timeout_s)
            for task in self.inflight:
                task.cancel()
            await self.client.aclose()

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self.wake.set()

    async def _claim(self, limit: int) -> list[asyncpg.Record]:
        try:
            async with self.pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    CLAIM, limit, float(self.lease_seconds)
                )
                return rows
        except DATABASE_UNAVAILABLE as exc:
            self.log.warning("delivery.database_unavailable", error=repr(exc))
            return []

    async def _deliver(self, d: asyncpg.Record) -> None:
        try:
            async with self.pool.acquire() as conn:
                if d["checkpoint_id"] is not None:
                    cp = await conn.fetchrow(CHECKPOINT, d["checkpoint_id"])
                    alert = None
                else:
                    alert = await conn.fetchrow(DETAILS, d["alert_id"])
                    cp = None
                endpoint = (
                    await conn.fetchrow(ENDPOINT, d["webhook_endpoint_id"])
                    if d["webhook_endpoint_id"] is not None
                    else None
                )
            if cp is not None:
                body = webhook.checkpoint_payload(
                    workspace_id=str(d["workspace_id"]),
                    checkpoint=notes.served_row(cp),
                )
                status, error, duration_ms, outcome = await self._webhook(d, body, endpoint)
            elif alert is None:
                return
            elif d["channel"] == "webhook":
                body = webhook.payload(
                    workspace_id=str(d["workspace_id"]),
                    alert=alert_document(alert),
                    event=orjson.loads(alert["event"]),
                )
                status, error, duration_ms, outcome = await self._webhook(d, body, endpoint)
            else:
                status, error, duration_ms, outcome = await self._email(d, alert)
            await self._record(d, status, error, duration_ms, outcome)
        except DATABASE_UNAVAILABLE as exc:
            # The lease expires and the delivery is tried again.
            self.log.warning("delivery.database_unavailable", error=repr(exc))
        except Exception as exc:
            self.log.error("delivery.unexpected_error", delivery_id=str(d["id"]), error=repr(exc))

    async def _webhook(
        self, d: asyncpg.Record, body: bytes, endpoint: asyncpg.Record | None
    ) -> tuple[int | None, str | None, int, str]:
        if endpoint is None or endpoint["deleted_at"] is not None:
            return None, "the webhook endpoint was deleted", 0, "failed"
        endpoint_id = str(d["webhook_endpoint_id"])
        try:
            secret = self.secrets.decrypt(
                endpoint["secret_enc"], context=f"webhook_endpoint:{endpoint_id}"
            )
        except SecretError:
            return None, "the endpoint's secret cannot be decrypted with this key", 0, "failed"
        async with self.endpoints[endpoint_id]:
            try:
                # Checked again now, after DNS resolution; the client also
                # refuses a forbidden address when it connects.
                await check_url(
                    endpoint["url"], allow_private=self.settings.allow_private_destinations
                )
            except UnsafeDestination as exc:
                return None, f"refused: {exc.reason}", 0, "failed"
            except ValueError as exc:
                return None, f"cannot resolve: {exc}", 0, "retry"
            attempt = await webhook.post(
                self.client,
                endpoint["url"],
                secret,
                str(d["id"]),
                body,
                timeout=float(self.settings.webhook_timeout_s),
            )
        return attempt.status, attempt.error, attempt.duration_ms, attempt.outcome

    async def _email(
        self, d: asyncpg.Record, alert: asyncpg.Record
    ) -> tuple[int | None, str | None, int, str]:
        if not self.settings.smtp_host:
            return None, "email is not configured (CHAINLOG_SMTP_HOST)", 0, "failed"
        event = orjson.loads(alert["event"])
        message = email.compose(
            sender=self.settings.smtp_sender,
            recipients=list(d["recipients"]),
            workspace_name=alert["workspace_name"],
            rule_name=alert["rule_name"],
            rule_type=alert["rule_type"],
            reason=alert["reason"],
            event=event,
            event_url=f"{self.settings.public_url}/api/v1/events/{alert['event_id']}",
            triggered_at=format_ts(alert["triggered_at"]),
        )
        started = time.monotonic()
        try:
            await email.send(self.smtp, message)
            status, error, outcome = 250, None, "delivered"
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx: the server refuses for good; 4xx: try again later.
            status, error = exc.code, f"SMTP {exc.code}: {exc.message}"[:200]
            outcome = "failed" if exc.code >= 500 else "retry"
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            status, error, outcome = None, f"SMTP: {type(exc).__name__}: {exc}"[:200], "retry"
        return status, error, round((time.monotonic() - started) * 1000), outcome

    async def _record(
        self,
        d: asyncpg.Record,
        status: int | None,
        error: str | None,
        duration_ms: int,
        outcome: str,
    ) -> None:
        attempt = d["attempts"]
        self.metrics.attempts.labels(d["channel"], outcome).inc()
        final = outcome
        delay = 0.0
        if outcome == "retry":
            if attempt >= webhook.MAX_ATTEMPTS:
                final = "failed"
                error = f"gave up after {attempt} attempts; last: {error or status}"
            else:
                final = "pending"
                delay = webhook.backoff_seconds(
                    attempt, base=self.settings.webhook_backoff_base_ms / 1000
                )
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                RECORD_ATTEMPT, d["id"], attempt, status, error, duration_ms, outcome
            )
            await conn.execute(FINISH, d["id"], final, status, error, delay)
        self.log.info(
            "delivery.attempted",
            delivery_id=str(d["id"]),
            channel=d["channel"],
            attempt=attempt,
            status=status,
            outcome=final,
        )


def webhook_client(settings: Settings) -> httpx.AsyncClient:
    return guarded_client(
        allow_private=settings.allow_private_destinations,
        timeout=float(settings.webhook_timeout_s),
    )
