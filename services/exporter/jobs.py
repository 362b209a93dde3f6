"""Jobs claimed with a lease: export files and evidence packs, one mechanism.

A job is a row (``exports``, ``evidence_packs``: the columns below have the
same names in both) going pending → processing → completed | failed. An
exporter MUST hold a job's lease (``lease_until``) to work on it: it claims
the job with one UPDATE (a pending job, or a processing one whose lease ran
out), renews the lease every third of its length while it works, and clears
it when it completes or fails the job. So two exporters never work on one
job at once, and a job whose exporter died is taken over when its lease
runs out. Rerunning a job writes the same file again.

The sweep finds the jobs nobody is working on: pending for ``pending_after_s``
(exports: the gateway's Kafka message starts them, so only one that missed
it; evidence packs are only swept), or processing with a lease run out. Each
job works in a scratch directory of its own, removed afterwards; its file is
stored only when whole (``libs/common/storage.py``). Files of expired jobs
are deleted; the records stay, and a download answers 410.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from libs.common.db import DATABASE_UNAVAILABLE
from libs.common.logs import Logger
from libs.common.settings import Settings
from libs.common.storage import Storage

LEASE_S = 60
SWEEP_S = 15
#: A pending export this old without a worker is taken by the sweep.
ORPHAN_S = 20


@dataclass(frozen=True, slots=True)
class Written:
    """What a job wrote: its events (rows and seq range), the file's size and digest."""

    rows: int
    size: int
    sha256: str
    first_seq: int | None
    last_seq: int | None


@dataclass(frozen=True, slots=True)
class Output:
    path: Path
    key: str
    media: str
    written: Written


class NotReady(Exception):
    """The job cannot be done yet: it goes back to pending, and a later sweep tries again."""


#: Does the job's work in its scratch directory: ``(job id, claimed row, directory)``.
Work = Callable[[str, asyncpg.Record, Path], Awaitable[Output]]


class LeasedJobs:
    """The jobs of one table. ``kind`` names them in logs (``export.completed``)."""

    def __init__(
        self,
        table: str,
        kind: str,
        settings: Settings,
        log: Logger,
        storage: Storage,
        pool: asyncpg.Pool,
        work: Work,
        *,
        pending_after_s: float = ORPHAN_S,
        sweep_s: float = SWEEP_S,
    ) -> None:
        self.kind = kind
        self.settings = settings
        self.log = log
        self.storage = storage
        self.pool = pool
        self.work = work
        self.pending_after_s = pending_after_s
        self.sweep_s = sweep_s
        self.scratch = settings.storage_dir / ".partial"
        self.sql_claim = (
            f"UPDATE {table} SET status = 'processing', started_at = coalesce(started_at, now()),"
            " lease_until = now() + make_interval(secs => $2) WHERE id = $1"
            " AND (status = 'pending' OR (status = 'processing' AND lease_until < now()))"
            " RETURNING *"
        )
        self.sql_renew = (
            f"UPDATE {table} SET lease_until = now() + make_interval(secs => $2)"
            " WHERE id = $1 AND status = 'processing'"
        )
        self.sql_release = (
            f"UPDATE {table} SET status = 'pending', lease_until = NULL"
            " WHERE id = $1 AND status = 'processing'"
        )
        self.sql_fail = (
            f"UPDATE {table} SET status = 'failed', error = $2, lease_until = NULL WHERE id = $1"
        )
        self.sql_complete = (
            f"UPDATE {table} SET status = 'completed', total_rows = $2, file_size = $3,"
            " sha256 = $4, location = $5, first_seq = $6, last_seq = $7, completed_at = now(),"
            " expires_at = now() + make_interval(days => $8), lease_until = NULL, error = NULL"
            " WHERE id = $1"
        )
        self.sql_orphans = (
            f"SELECT id FROM {table} WHERE (status = 'pending'"
            " AND created_at < now() - make_interval(secs => $1))"
            " OR (status = 'processing' AND lease_until < now()) ORDER BY created_at LIMIT 20"
        )
        self.sql_expired = (
            f"SELECT id, location FROM {table}"
            " WHERE status = 'completed' AND expires_at <= now() AND location IS NOT NULL LIMIT 100"
        )
        self.sql_forget = f"UPDATE {table} SET location = NULL WHERE id = $1"

    async def sweep_forever(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                for r in await self.pool.fetch(self.sql_orphans, float(self.pending_after_s)):
                    await self.process(str(r["id"]))
                await self.expire()
            except DATABASE_UNAVAILABLE as exc:
                self.log.warning(f"{self.kind}.sweep_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.sweep_s):
                    await stopping.wait()

    async def expire(self) -> None:
        """Delete the files of expired jobs (their records stay: a download answers 410)."""
        for r in await self.pool.fetch(self.sql_expired):
            await self.storage.delete(r["location"])
            await self.pool.execute(self.sql_forget, r["id"])
            self.log.info(f"{self.kind}.expired", **{f"{self.kind}_id": str(r["id"])})

    async def process(self, job_id: str) -> None:
        """Run one job if it is free to take; safe to call for any id, any number of times."""
        job = await self.pool.fetchrow(self.sql_claim, job_id, float(LEASE_S))
        if job is None:
            return
        ids = {f"{self.kind}_id": job_id, "workspace_id": str(job["workspace_id"])}
        renew = asyncio.create_task(self._renew(job_id))
        workdir = self.scratch / job_id
        try:
            await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
            out = await self.work(job_id, job, workdir)
            await self.storage.put(out.key, out.path, out.media)
        except NotReady as exc:
            await self.pool.execute(self.sql_release, job_id)
            self.log.info(f"{self.kind}.not_ready", reason=str(exc), **ids)
            return
        except DATABASE_UNAVAILABLE as exc:
            # Left processing: the lease runs out and the sweep retries it.
            self.log.warning(f"{self.kind}.database_unavailable", error=repr(exc), **ids)
            return
        except Exception as exc:
            self.log.error(f"{self.kind}.failed", error=repr(exc), **ids)
            what = self.kind.replace("_", " ")
            error = f"the {what} could not be written: {type(exc).__name__}"
            await self.pool.execute(self.sql_fail, job_id, error)
            return
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        w = out.written
        await self.pool.execute(
            self.sql_complete,
            job_id,
            w.rows,
            w.size,
            w.sha256,
            out.key,
            w.first_seq,
            w.last_seq,
            self.settings.export_ttl_days,
        )
        self.log.info(f"{self.kind}.completed", rows=w.rows, bytes=w.size, **ids)

    async def _renew(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            with contextlib.suppress(*DATABASE_UNAVAILABLE):
                await self.pool.execute(self.sql_renew, job_id, float(LEASE_S))
