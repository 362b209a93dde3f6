"""Scheduled verification: every workspace's chain, checked for the customer.

Each pass is incremental: from the last verified seq, starting from the
hash verified then (kept in ``verify_progress``, not re-read from the
events table, so a later rewrite of that row cannot vouch for itself), to
the current head. Once a day (``CHAINLOG_VERIFY_FULL_INTERVAL_SECONDS``) a
full pass re-checks everything from where the stored chain starts, which
catches a tamper of events verified earlier. Every run is stored
(``GET /api/v1/verifications``); a break raises an alert for every enabled
``chain_integrity`` rule of the workspace, once per broken seq.

Runs of one workspace never overlap: the workspace's ``verify_progress``
row is locked for the run (``FOR UPDATE SKIP LOCKED``), so several
exporters share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from libs.common.chain import ZERO_HASH
from libs.common.db import DATABASE_UNAVAILABLE
from libs.common.logs import Logger
from libs.common.settings import Settings
from libs.common.timeutil import uuid7
from services.alerter.pipeline import NewAlert, rule_from_row, write_alerts
from services.ingest.verify import verify

DUE = (
    "SELECT w.id FROM workspaces w LEFT JOIN verify_progress p ON p.workspace_id = w.id"
    " WHERE (p.last_run_at IS NULL OR p.last_run_at < now() - make_interval(secs => $1))"
    " AND w.id <> ALL($2::uuid[])"
    # the longest overdue first: a new workspace is due from its creation
    " ORDER BY coalesce(p.last_run_at + make_interval(secs => $1), w.created_at) LIMIT 1"
)
RULES = (
    "SELECT id, workspace_id, name, rule_type, conditions, channels, email_recipients,"
    " webhook_endpoint_ids, cooldown_seconds, version, created_at FROM alert_rules"
    " WHERE workspace_id = $1 AND rule_type = 'chain_integrity' AND enabled"
    " AND deleted_at IS NULL ORDER BY created_at, id"
)


class ScheduledVerification:
    def __init__(self, settings: Settings, log: Logger, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.log = log
        self.pool = pool
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                ran = await self.run_due()
            except DATABASE_UNAVAILABLE as exc:
                self.log.warning("verification.database_unavailable", error=repr(exc))
                ran = []
            if not ran:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(5, self.settings.verify_interval_s)):
                        await self.stopping.wait()

    async def run_due(self, limit: int = 50) -> list[dict[str, Any]]:
        """Runs for the workspaces most overdue, one at a time; returns them (empty: none due).

        Due: never verified, or not in the last ``CHAINLOG_VERIFY_INTERVAL_SECONDS``;
        the longest overdue goes first (a new workspace is due from its creation).
        """
        runs: list[dict[str, Any]] = []
        skipped: list[str] = []
        while len(runs) + len(skipped) < limit and not self.stopping.is_set():
            workspace_id = await self.pool.fetchval(
                DUE, float(self.settings.verify_interval_s), skipped
            )
            if workspace_id is None:
                break
            run = await self.run_workspace(str(workspace_id))
            if run is None:  # another exporter has it
                skipped.append(str(workspace_id))
            else:
                runs.append(run)
        return runs

    async def run_workspace(self, workspace_id: str) -> dict[str, Any] | None:
        """Verify one workspace (incremental, or full when one is due); None if another runs it."""
        async with self.pool.acquire() as lock, lock.transaction():
            await lock.execute(
                "INSERT INTO verify_progress (workspace_id, last_seq, last_hash)"
                " VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
                workspace_id,
                bytes.fromhex(ZERO_HASH),
            )
            progress = await lock.fetchrow(
                "SELECT last_seq, last_hash, last_full_at, now() AS now FROM verify_progress"
                " WHERE workspace_id = $1 FOR UPDATE SKIP LOCKED",
                workspace_id,
            )
            if progress is None:
                return None
            now: datetime = progress["now"]
            due = progress["last_full_at"] is None or now - progress["last_full_at"] >= timedelta(
                seconds=self.settings.verify_full_interval_s
            )
            kind = "full" if due else "incremental"
            start = None if due else (progress["last_seq"], progress["last_hash"].hex())
            started = datetime.now(UTC)
            result = await verify(
                self.pool,
                workspace_id,
                {},
                max_breaks=self.settings.verify_max_breaks,
                workers=None,
                dsn=self.settings.database_url,
                parallel_min=0,
                start=start,
            )
            finished = datetime.now(UTC)
            run = {
                "id": str(uuid7()),
                "workspace_id": workspace_id,
                "kind": kind,
                "from_seq": result["first_seq"],
                "to_seq": result["last_seq"],
                "events_checked": result["events_checked"],
                "valid": result["valid"],
                "breaks": result["breaks"],
                # Legal holds' islands below the anchor, checked on their own (full runs).
                "held": result.get("held"),
            }
            await lock.execute(
                "INSERT INTO verifications (id, workspace_id, kind, started_at, finished_at,"
                " from_seq, to_seq, events_checked, valid, breaks)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
                run["id"],
                workspace_id,
                kind,
                started,
                finished,
                run["from_seq"],
                run["to_seq"],
                run["events_checked"],
                run["valid"],
                orjson.dumps(run["breaks"]).decode(),
            )
            if result["valid"]:
                if result["last_seq"] is not None:
                    await lock.execute(
                        "UPDATE verify_progress SET last_seq = $2, last_hash = $3,"
                        " updated_at = now() WHERE workspace_id = $1",
                        workspace_id,
                        result["last_seq"],
                        bytes.fromhex(result["head_hash"]),
                    )
            else:
                await self._alert(lock, workspace_id, run)
            await lock.execute(
                "UPDATE verify_progress SET last_run_at = now(),"
                " last_full_at = CASE WHEN $2 THEN $3 ELSE last_full_at END"
                " WHERE workspace_id = $1",
                workspace_id,
                due,
                started,
            )
        log = self.log.info if run["valid"] else self.log.error
        log(
            "verification.run",
            workspace_id=workspace_id,
            kind=kind,
            events_checked=run["events_checked"],
            valid=run["valid"],
            breaks=len(run["breaks"]),
            held=run["held"]["count"] if run["held"] else None,
        )
        return run

    async def _alert(
        self, conn: asyncpg.Connection, workspace_id: str, run: dict[str, Any]
    ) -> None:
        rules = [rule_from_row(r) for r in await conn.fetch(RULES, workspace_id)]
        if not rules:
            return
        new: list[NewAlert] = []
        for brk in run["breaks"]:
            seq = int(brk["seq"])
            reason = (
                f"Scheduled verification found a {brk['type'].replace('_', ' ')} at seq {seq}:"
                f" the stored chain no longer matches what was hashed."
            )
            payload = {
                "workspace_id": workspace_id,
                "seq": seq,
                "id": brk.get("event_id"),
                "action": "chain.integrity_break",
                "break": brk,
                "verification": {k: run[k] for k in ("id", "kind", "from_seq", "to_seq")},
            }
            # A gap has no event: the run's id stands in for it.
            event_id = brk.get("event_id") or run["id"]
            new.extend(NewAlert(rule, event_id, seq, reason, payload) for rule in rules)
        await write_alerts(conn, new)
