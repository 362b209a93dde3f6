"""Schedules: each complete period becomes an export or an evidence pack, and its file
goes to the schedule's bucket. The API side: ``services/ingest/schedules_api.py``;
the story for operators: docs/schedules.md.

Every ``CHAINLOG_SCHEDULE_POLL_SECONDS`` an exporter does two things.

**Runs.** A schedule is due when its ``next_run_at`` has passed and none
of its jobs is still pending or processing. For each, in one transaction
holding the schedule's row lock (``FOR UPDATE SKIP LOCKED``: two exporters
never take the same schedule at once) it inserts the period's run and a
pending job (``requested_by 'schedule:<id>'``) and records the request as
an admin event, then moves ``last_period_end`` on. The run's
``UNIQUE (schedule_id, period_start)`` makes a period run once even if the
lock were bypassed. A new schedule runs the last period complete when it
was created; after that, period after period, oldest first, so one that
was down for a week catches up one period per job. Periods are
``libs/common/periods.py``'s (UTC, complete 5 minutes after their end).

**Deliveries.** A run whose job has completed is claimed with a lease
(``schedule_runs.lease_until``), its stored file read back and checked
against the job's SHA-256, then PUT in the bucket under
``{prefix}{workspace_id}/{kind}/{period}.{ext}`` (SigV4,
``libs/common/storage.S3Storage`` over the SSRF-guarded client). A
delivery is an admin event, ``admin.schedule.delivered``, with the key and
the SHA-256 (never the secret). A failure is retried after one poll
interval, then twice as long each time up to an hour; after
``MAX_ATTEMPTS`` the run fails (``admin.schedule.delivery_failed``), as it
does at once when its job failed. A retried PUT writes the same key: the
bucket keeps one object per period.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer

from libs.common.db import DATABASE_UNAVAILABLE
from libs.common.logs import Logger
from libs.common.periods import Period, due_at, next_period
from libs.common.secretbox import SecretBox, SecretError
from libs.common.settings import Settings
from libs.common.ssrf import UnsafeDestination, guarded_client
from libs.common.storage import HashingWriter, Storage, StorageError
from libs.common.timeutil import format_ts, uuid7
from services.ingest.adminlog import Actor, AdminLog
from services.ingest.schedules_api import bucket, open_secret

ACTOR = Actor(id="system:scheduler", type="system", name="Chainlog scheduler")
#: Deliveries tried before a run fails (about five hours with the default poll).
MAX_ATTEMPTS = 10
MAX_BACKOFF_S = 3600.0
#: The exporter delivering a run holds it this long (a large file, a slow bucket).
LEASE_S = 900.0
MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson", "zip": "application/zip"}
JOB_TABLES = {"export": "exports", "evidence_pack": "evidence_packs"}

_UNFINISHED = (
    "NOT EXISTS (SELECT 1 FROM schedule_runs r"
    " LEFT JOIN exports e ON r.kind = 'export' AND e.id = r.job_id"
    " LEFT JOIN evidence_packs p ON r.kind = 'evidence_pack' AND p.id = r.job_id"
    " WHERE r.schedule_id = s.id AND coalesce(e.status, p.status) IN ('pending', 'processing'))"
)
DUE = (
    "SELECT s.id FROM schedules s WHERE s.disabled_at IS NULL AND s.next_run_at <= now()"
    f" AND {_UNFINISHED} ORDER BY s.next_run_at LIMIT 50"
)
CLAIM_SCHEDULE = (
    "SELECT s.*, now() AS now FROM schedules s WHERE s.id = $1 AND s.disabled_at IS NULL"
    f" AND s.next_run_at <= now() AND {_UNFINISHED} FOR UPDATE OF s SKIP LOCKED"
)
READY = (
    "SELECT r.id FROM schedule_runs r"
    " LEFT JOIN exports e ON r.kind = 'export' AND e.id = r.job_id"
    " LEFT JOIN evidence_packs p ON r.kind = 'evidence_pack' AND p.id = r.job_id"
    " WHERE r.status = 'pending' AND coalesce(e.status, p.status) IN ('completed', 'failed')"
    " AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= now())"
    " AND (r.lease_until IS NULL OR r.lease_until < now()) ORDER BY r.created_at LIMIT 20"
)
CLAIM_RUN = (
    "UPDATE schedule_runs SET lease_until = now() + make_interval(secs => $2)"
    " WHERE id = $1 AND status = 'pending' AND (lease_until IS NULL OR lease_until < now())"
    " RETURNING *"
)


class DeliveryError(Exception):
    """This attempt failed; the message says why, without a secret."""


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        log: Logger,
        storage: Storage,
        pool: asyncpg.Pool,
        admin: AdminLog,
        box: SecretBox,
        producer: AIOKafkaProducer,
    ) -> None:
        self.settings = settings
        self.log = log
        self.storage = storage
        self.pool = pool
        self.admin = admin
        self.box = box
        self.producer = producer
        self.poll_s = float(settings.schedule_poll_s)
        self.scratch = settings.storage_dir / ".partial"
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                for r in await self.pool.fetch(DUE):
                    await self._safely("schedule.run_failed", self.run_schedule, str(r["id"]))
                for r in await self.pool.fetch(READY):
                    await self._safely("schedule.delivery_error", self.deliver, str(r["id"]))
            except DATABASE_UNAVAILABLE as exc:
                self.log.warning("schedule.poll_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self.stopping.wait()

    async def _safely(
        self, event: str, step: Callable[[str], Awaitable[object]], item_id: str
    ) -> None:
        """One schedule or run; a failure (Kafka or the database away) is retried next poll:
        its transaction rolled back, or its lease runs out."""
        try:
            await step(item_id)
        except Exception as exc:
            self.log.warning(event, id=item_id, error=repr(exc))

    # -- runs -------------------------------------------------------------------

    async def run_schedule(self, schedule_id: str) -> str | None:
        """Make the schedule's next period's job if it is due; returns the job's id."""
        async with self.pool.acquire() as conn, conn.transaction():
            s = await conn.fetchrow(CLAIM_SCHEDULE, schedule_id)
            if s is None:
                return None  # another exporter has it, or it is not due any more
            cadence = s["cadence"]
            period = next_period(cadence, s["created_at"], s["last_period_end"])
            if due_at(period) > s["now"]:
                await conn.execute(
                    "UPDATE schedules SET next_run_at = $2 WHERE id = $1", s["id"], due_at(period)
                )
                return None
            job_id = uuid7()
            made = await conn.fetchval(
                "INSERT INTO schedule_runs (id, schedule_id, workspace_id, kind, period_start,"
                " period_end, period_label, job_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (schedule_id, period_start) DO NOTHING RETURNING id",
                uuid7(),
                s["id"],
                s["workspace_id"],
                s["kind"],
                period.start,
                period.end,
                period.label,
                job_id,
            )
            if made is not None:
                await self._request(conn, s, period, job_id)
            following = next_period(cadence, s["created_at"], period.end)
            await conn.execute(
                "UPDATE schedules SET last_period_end = $2, next_run_at = $3 WHERE id = $1",
                s["id"],
                period.end,
                due_at(following),
            )
        if made is None:
            return None
        workspace_id = str(s["workspace_id"])
        if s["kind"] == "export":
            # As the gateway does; the sweep takes the job anyway if this is lost.
            with contextlib.suppress(Exception):
                await self.producer.send_and_wait(
                    self.settings.topics.export_requests,
                    orjson.dumps({"export_id": job_id, "workspace_id": workspace_id}),
                    key=workspace_id.encode(),
                )
        self.log.info(
            "schedule.run",
            schedule_id=schedule_id,
            workspace_id=workspace_id,
            period=period.label,
            **{f"{s['kind']}_id": job_id},
        )
        return job_id

    async def _request(
        self, conn: asyncpg.Connection, s: asyncpg.Record, period: Period, job_id: str
    ) -> None:
        """The pending job and its admin event, as a request through the API makes them."""
        params = _json(s["params"])
        by = f"schedule:{s['id']}"
        bounds = {"from": format_ts(period.start), "to": format_ts(period.end)}
        run = {"schedule_id": str(s["id"]), "period": {**bounds, "label": period.label}}
        if s["kind"] == "export":
            filters = {**bounds, **params["filters"]}
            await conn.execute(
                "INSERT INTO exports (id, workspace_id, format, filters, requested_by, schedule_id)"
                " VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
                job_id,
                s["workspace_id"],
                params["format"],
                orjson.dumps(filters).decode(),
                by,
                s["id"],
            )
            after = {"format": params["format"], "filters": filters, **run}
        else:
            await conn.execute(
                "INSERT INTO evidence_packs (id, workspace_id, period_from, period_to, controls,"
                " requested_by, schedule_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                job_id,
                s["workspace_id"],
                period.start,
                period.end,
                params["controls"],
                by,
                s["id"],
            )
            # The pack waits for this very event (services/exporter/packs.py).
            after = {**bounds, "controls": params["controls"], **run}
        kind = s["kind"]
        await self.admin.record(
            str(s["workspace_id"]), ACTOR, f"{kind}.requested", kind, job_id, after=after
        )

    # -- deliveries ---------------------------------------------------------------

    async def deliver(self, run_id: str) -> None:
        """Deliver one run's file if it is free to take; safe to call for any run, any time."""
        run = await self.pool.fetchrow(CLAIM_RUN, run_id, LEASE_S)
        if run is None:
            return
        s = await self.pool.fetchrow("SELECT * FROM schedules WHERE id = $1", run["schedule_id"])
        table = JOB_TABLES[run["kind"]]
        job = await self.pool.fetchrow(f"SELECT * FROM {table} WHERE id = $1", run["job_id"])
        what = run["kind"].replace("_", " ")
        if job["status"] == "failed":
            await self._failed(s, run, f"the {what} failed: {job['error']}", tried=False)
            return
        if job["location"] is None:
            await self._failed(s, run, f"the {what}'s file expired undelivered", tried=False)
            return
        ext = job["format"] if run["kind"] == "export" else "zip"
        key = f"{s['workspace_id']}/{run['kind']}/{run['period_label']}.{ext}"
        destination = _json(s["destination"])
        try:
            await self._put(s, job, key, MEDIA[ext])
        except DeliveryError as exc:
            await self._retry(s, run, str(exc))
            return
        object_key = str(destination.get("prefix", "")) + key
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                "UPDATE schedule_runs SET status = 'delivered', attempts = attempts + 1,"
                " object_key = $2, sha256 = $3, delivered_at = now(), lease_until = NULL,"
                " last_error = NULL, next_attempt_at = NULL"
                " WHERE id = $1 AND status = 'pending' RETURNING attempts",
                run["id"],
                object_key,
                job["sha256"],
            )
            if done is None:
                return  # the schedule was disabled meanwhile: the run is cancelled
            await self.admin.record(
                str(s["workspace_id"]),
                ACTOR,
                "schedule.delivered",
                "schedule",
                str(s["id"]),
                after={
                    **_run_doc(run),
                    "bucket": destination["bucket"],
                    "endpoint_url": destination.get("endpoint_url"),
                    "object_key": object_key,
                    "sha256": job["sha256"],
                    "size": job["file_size"],
                    "attempts": done,
                },
            )
        self.log.info(
            "schedule.delivered",
            schedule_id=str(s["id"]),
            workspace_id=str(s["workspace_id"]),
            period=run["period_label"],
            bytes=job["file_size"],
        )

    async def _put(self, s: asyncpg.Record, job: asyncpg.Record, key: str, media: str) -> None:
        """Copy the stored file to scratch, checking its SHA-256, and PUT it in the bucket."""
        workdir = self.scratch / f"delivery-{uuid7()}"
        path = workdir / key.rsplit("/", 1)[-1]
        try:
            await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
            digest = await self._copy(str(job["location"]), path)
            if digest != job["sha256"]:
                raise DeliveryError("the stored file does not match the SHA-256 of its record")
            secret = open_secret(self.box, s)
            allow_private = self.settings.allow_private_destinations

            def client(timeout: float) -> httpx.AsyncClient:
                return guarded_client(allow_private=allow_private, timeout=timeout)

            await bucket(_json(s["destination"]), secret, client).put(key, path, media)
        except (StorageError, UnsafeDestination) as exc:
            raise DeliveryError(str(exc)) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"the bucket could not be reached: {type(exc).__name__}") from None
        except SecretError:
            raise DeliveryError("the schedule's secret cannot be opened with this key") from None
        except FileNotFoundError:
            raise DeliveryError("the stored file is gone") from None
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)

    async def _copy(self, location: str, path: Path) -> str:
        out = HashingWriter(await asyncio.to_thread(open, path, "wb"))
        try:
            async for chunk in self.storage.read(location):
                await asyncio.to_thread(out.write, chunk)
        finally:
            await asyncio.to_thread(out.close)
        return out.digest.hexdigest()

    async def _retry(self, s: asyncpg.Record, run: asyncpg.Record, error: str) -> None:
        attempts = run["attempts"] + 1
        if attempts >= MAX_ATTEMPTS:
            await self._failed(s, run, error, tried=True)
            return
        wait = min(self.poll_s * 2 ** (attempts - 1), MAX_BACKOFF_S)
        await self.pool.execute(
            "UPDATE schedule_runs SET attempts = $2, last_error = $3, lease_until = NULL,"
            " next_attempt_at = now() + make_interval(secs => $4)"
            " WHERE id = $1 AND status = 'pending'",
            run["id"],
            attempts,
            error,
            wait,
        )
        self.log.warning(
            "schedule.delivery_retry",
            schedule_id=str(s["id"]),
            period=run["period_label"],
            attempts=attempts,
            error=error,
        )

    async def _failed(
        self, s: asyncpg.Record, run: asyncpg.Record, error: str, *, tried: bool
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            attempts = await conn.fetchval(
                "UPDATE schedule_runs SET status = 'failed', attempts = attempts + $2,"
                " last_error = $3, lease_until = NULL, next_attempt_at = NULL"
                " WHERE id = $1 AND status = 'pending' RETURNING attempts",
                run["id"],
                int(tried),
                error,
            )
            if attempts is None:
                return
            await self.admin.record(
                str(s["workspace_id"]),
                ACTOR,
                "schedule.delivery_failed",
                "schedule",
                str(s["id"]),
                after={**_run_doc(run), "error": error, "attempts": attempts},
            )
        self.log.error(
            "schedule.delivery_failed", schedule_id=str(s["id"]), period=run["period_label"]
        )


def _run_doc(run: asyncpg.Record) -> dict[str, Any]:
    return {
        "run_id": str(run["id"]),
        f"{run['kind']}_id": str(run["job_id"]),
        "period": {
            "from": format_ts(run["period_start"]),
            "to": format_ts(run["period_end"]),
            "label": run["period_label"],
        },
    }


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value
