"""The streamer: every stored event of a workspace, forwarded to each of its log streams.

One worker task per enabled stream reads the workspace's events from
PostgreSQL after the stream's cursor (``log_stream_cursors.last_seq``),
in seq order, filters them, sends a batch and only then moves the cursor.
So delivery is at least once and in order; a destination that
de-duplicates (Elasticsearch ``_id``, the S3 object key, ``webhook-id``)
makes it effectively once. Reading from the stored events, not from Kafka,
is what lets a stream that was down for hours, or re-enabled, catch up
from its cursor without a retention limit.

The exporter ``NOTIFY``s ``chainlog_events`` with the workspace id after
each write, which wakes that workspace's workers at once; without it a
worker looks every ``POLL_S``.

A stream is held by one streamer at a time through a lease on its cursor
row, renewed with every batch: a second streamer takes it over only after
the first stopped renewing. A failing destination holds only its own
worker: it backs off, and after ``max_failures`` consecutive failures (or
one permanent refusal) the stream goes to status ``error`` with the last
error, until it is re-enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson

from libs.common import checkpoint as notes
from libs.common.db import DATABASE_UNAVAILABLE
from libs.common.health import Health
from libs.common.logs import Logger
from libs.common.metrics import StreamerMetrics
from libs.common.patterns import matches_any
from libs.common.secretbox import SecretBox, SecretError
from libs.common.settings import Settings
from libs.common.ssrf import GuardedTransport
from services.ingest.query import render
from services.ingest.streams_api import full_config
from services.streamer.destinations import DESTINATIONS, Result

CHANNEL = "chainlog_events"
POLL_S = 1.0
REFRESH_S = 2.0
LEASE_S = 60.0
#: A batch that is not full waits for more events up to this long after its
#: first event was received ("up to 500 events or 1 s").
LINGER_S = 1.0
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0

STREAMS = """
SELECT id, workspace_id, name, type, config, secrets_enc, filter, consecutive_failures, updated_at
FROM log_streams WHERE enabled AND status = 'active' AND deleted_at IS NULL
"""
CLAIM = """
UPDATE log_stream_cursors SET owner = $2, lease_until = now() + make_interval(secs => $3)
WHERE stream_id = $1 AND (owner IS NULL OR owner = $2 OR lease_until < now())
RETURNING last_seq, last_checkpoint
"""
READ = """
SELECT seq, body, hash, ip_country, ip_city, tenant_id, action, received_at FROM events
WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""
HEAD = "SELECT max(seq) FROM events WHERE workspace_id = $1"
#: Checkpoints after the stream's last one; a stream that has sent none
#: starts at the newest (a witness needs the current size, not the history).
CHECKPOINTS = """
SELECT id, size, root, note, created_at FROM checkpoints
WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3
"""
NEWEST_CHECKPOINT = """
SELECT id, size, root, note, created_at FROM checkpoints
WHERE workspace_id = $1 ORDER BY id DESC LIMIT 1
"""
CHECKPOINTS_PER_STEP = 20
ADVANCE_CHECKPOINT = """
UPDATE log_stream_cursors SET last_checkpoint = $3, updated_at = now()
WHERE stream_id = $1 AND owner = $2
"""
ADVANCE = """
UPDATE log_stream_cursors SET last_seq = $3, delivered = delivered + $4, updated_at = now()
WHERE stream_id = $1 AND owner = $2
"""


@dataclass(frozen=True)
class Stream:
    id: str
    workspace_id: str
    name: str
    type: str
    config: dict[str, Any]
    actions: tuple[str, ...]
    tenants: frozenset[str] | None
    failures: int
    version: datetime
    checkpoints: bool = False

    def wants(self, row: asyncpg.Record) -> bool:
        if self.actions and not matches_any(list(self.actions), row["action"]):
            return False
        return self.tenants is None or row["tenant_id"] in self.tenants


class Streamer:
    def __init__(
        self, settings: Settings, log: Logger, metrics: StreamerMetrics, box: SecretBox
    ) -> None:
        self.settings = settings
        self.log = log
        self.metrics = metrics
        self.box = box
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = asyncio.Event()
        self.workers: dict[str, tuple[datetime, asyncio.Task[None]]] = {}
        self.wakeups: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.pool: asyncpg.Pool | None = None
        self.health = Health(needs=("postgres",))

    def stop(self) -> None:
        self.stopping.set()
        for event in self.wakeups.values():
            event.set()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.wakeups[payload].set()

    async def run(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        listener = await pool.acquire()
        await listener.add_listener(CHANNEL, self._notified)
        self.log.info("streamer.started", instance=self.instance)
        try:
            while not self.stopping.is_set():
                try:
                    await self._refresh()
                    self.health.up("postgres")
                except DATABASE_UNAVAILABLE as exc:
                    self.log.warning("streamer.database_unavailable", error=repr(exc))
                    self.health.down("postgres", repr(exc)[:200])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REFRESH_S):
                        await self.stopping.wait()
        finally:
            for _, task in self.workers.values():
                task.cancel()
            await asyncio.gather(*(t for _, t in self.workers.values()), return_exceptions=True)
            with contextlib.suppress(*DATABASE_UNAVAILABLE):
                await listener.remove_listener(CHANNEL, self._notified)
            await pool.release(listener)
            self.log.info("streamer.stopped")

    async def _refresh(self) -> None:
        """Start a worker per active stream; stop those of streams changed or gone."""
        assert self.pool is not None
        rows = {str(r["id"]): r for r in await self.pool.fetch(STREAMS)}
        for sid, (version, task) in list(self.workers.items()):
            row = rows.get(sid)
            if task.done() or row is None or row["updated_at"] != version:
                task.cancel()
                del self.workers[sid]
        for sid, row in rows.items():
            if sid in self.workers:
                continue
            try:
                stream = self._stream(row)
            except SecretError as exc:
                self.log.error("stream.secret_unreadable", stream_id=sid, error=str(exc))
                continue
            task = asyncio.create_task(self._work(stream))
            self.workers[sid] = (row["updated_at"], task)

    def _stream(self, row: asyncpg.Record) -> Stream:
        flt = orjson.loads(row["filter"])
        return Stream(
            id=str(row["id"]),
            workspace_id=str(row["workspace_id"]),
            name=row["name"],
            type=row["type"],
            config=full_config(self.box, row),
            actions=tuple(flt.get("actions") or ()),
            tenants=frozenset(flt["tenant_ids"]) if flt.get("tenant_ids") else None,
            failures=row["consecutive_failures"],
            version=row["updated_at"],
            checkpoints=bool(flt.get("checkpoints")),
        )

    # -- one stream ----------------------------------------------------------------

    async def _work(self, stream: Stream) -> None:
        verify = bool(stream.config.get("verify_tls", True))
        transport = GuardedTransport(
            allow_private=self.settings.allow_private_destinations, verify=verify
        )
        async with httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False
        ) as client:
            failures = stream.failures
            while not self.stopping.is_set():
                try:
                    outcome = await self._step(stream, client)
                except DATABASE_UNAVAILABLE as exc:
                    self.log.warning(
                        "stream.database_unavailable", stream_id=stream.id, error=repr(exc)
                    )
                    outcome = "idle"
                if outcome == "sent":
                    if failures:
                        failures = 0
                        await self._failures(stream, 0, None, "active")
                    continue
                if outcome in ("idle", "leased_elsewhere"):
                    await self._wait(stream, POLL_S if outcome == "idle" else LEASE_S / 4)
                    continue
                # a failed attempt: outcome is the Result
                assert isinstance(outcome, Result)
                # Progress (part of the batch stored) breaks a run of failures.
                failures = 1 if outcome.delivered else failures + 1
                permanent = outcome.outcome == "failed"
                give_up = permanent or failures >= self.settings.stream_max_failures
                error = outcome.error or f"HTTP {outcome.status}"
                await self._failures(stream, failures, error, "error" if give_up else "active")
                if give_up:
                    self.log.warning(
                        "stream.error", stream_id=stream.id, failures=failures, error=error
                    )
                    return
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures - 1))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()

    async def _wait(self, stream: Stream, seconds: float) -> None:
        wake = self.wakeups[stream.workspace_id]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()
        wake.clear()

    async def _step(self, stream: Stream, client: httpx.AsyncClient) -> str | Result:
        """Claim, read, send one batch; ``sent``, ``idle``, ``leased_elsewhere`` or the failure."""
        assert self.pool is not None
        destination = DESTINATIONS[stream.type]
        async with self.pool.acquire() as conn:
            claimed = await conn.fetchrow(CLAIM, stream.id, self.instance, LEASE_S)
            if claimed is None:
                return "leased_elsewhere"
            cursor = claimed["last_seq"]
            checkpoints = []
            if stream.checkpoints and claimed["last_checkpoint"] is None:
                checkpoints = await conn.fetch(NEWEST_CHECKPOINT, stream.workspace_id)
            elif stream.checkpoints:
                checkpoints = await conn.fetch(
                    CHECKPOINTS,
                    stream.workspace_id,
                    claimed["last_checkpoint"],
                    CHECKPOINTS_PER_STEP,
                )
            rows = await conn.fetch(READ, stream.workspace_id, cursor, destination.MAX_BATCH)
            head = await conn.fetchval(HEAD, stream.workspace_id) or 0
        if checkpoints:
            failed = await self._send_checkpoints(stream, client, checkpoints)
            if failed is not None:
                return failed
            if not rows:
                return "sent"
        self.metrics.lag_events.labels(stream.id).set(max(0, head - cursor))
        if not rows:
            self.metrics.lag_seconds.labels(stream.id).set(0)
            return "idle"
        if len(rows) < destination.MAX_BATCH:
            first = rows[0]["received_at"].timestamp()
            linger = first + LINGER_S - time.time()
            if linger > 0:
                await self._wait(stream, linger)
                async with self.pool.acquire() as conn:
                    rows = await conn.fetch(
                        READ, stream.workspace_id, cursor, destination.MAX_BATCH
                    )
        wanted = [r for r in rows if stream.wants(r)]
        events = [render(r) for r in wanted]
        for batch in destination.split(events) if events else []:
            first_seq, last_seq = batch[0]["seq"], batch[-1]["seq"]
            with self.metrics.send_seconds.labels(stream.id).time():
                result = await destination.send(
                    client,
                    stream.config,
                    batch,
                    batch_id=f"{stream.id}:{first_seq}-{last_seq}",
                    timeout=float(self.settings.webhook_timeout_s * 3),
                )
            if result.outcome != "delivered":
                if result.delivered:
                    await self._advance(
                        stream, batch[result.delivered - 1]["seq"], result.delivered
                    )
                counter = self.metrics.retried if result.outcome == "retry" else self.metrics.failed
                counter.labels(stream.id).inc()
                return result
            await self._advance(stream, last_seq, len(batch))
            self.metrics.delivered.labels(stream.id).inc(len(batch))
        # Everything read is delivered or filtered out.
        await self._advance(stream, rows[-1]["seq"], 0)
        behind = datetime.now(UTC) - rows[0]["received_at"]
        self.metrics.lag_seconds.labels(stream.id).set(max(0.0, behind.total_seconds()))
        self.metrics.lag_events.labels(stream.id).set(max(0, head - rows[-1]["seq"]))
        return "sent"

    async def _send_checkpoints(
        self, stream: Stream, client: httpx.AsyncClient, checkpoints: list[asyncpg.Record]
    ) -> Result | None:
        """Send new checkpoints, oldest first, as one batch; the failure, or None."""
        assert self.pool is not None
        destination = DESTINATIONS[stream.type]
        batch = [
            notes.as_event(stream.workspace_id, str(r["id"]), notes.served_row(r))
            for r in checkpoints
        ]
        result = await destination.send(
            client,
            stream.config,
            batch,
            batch_id=f"{stream.id}:checkpoint:{batch[-1]['id']}",
            timeout=float(self.settings.webhook_timeout_s * 3),
        )
        sent = len(batch) if result.outcome == "delivered" else result.delivered
        if sent:
            await self.pool.execute(
                ADVANCE_CHECKPOINT, stream.id, self.instance, checkpoints[sent - 1]["id"]
            )
            self.metrics.checkpoints.labels(stream.id).inc(sent)
        if result.outcome != "delivered":
            counter = self.metrics.retried if result.outcome == "retry" else self.metrics.failed
            counter.labels(stream.id).inc()
            return result
        return None

    async def _advance(self, stream: Stream, seq: int, delivered: int) -> None:
        assert self.pool is not None
        await self.pool.execute(ADVANCE, stream.id, self.instance, seq, delivered)

    async def _failures(
        self, stream: Stream, failures: int, error: str | None, status: str
    ) -> None:
        """Record the stream's health; keeps updated_at, so the worker is not restarted for it."""
        assert self.pool is not None
        with contextlib.suppress(*DATABASE_UNAVAILABLE):
            await self.pool.execute(
                "UPDATE log_streams SET consecutive_failures = $2, status = $3,"
                " last_error = coalesce($4, last_error),"
                " last_error_at = CASE WHEN $4 IS NULL THEN last_error_at ELSE now() END"
                " WHERE id = $1",
                stream.id,
                failures,
                status,
                error,
            )
