"""Retention: archive a workspace's events older than its plan keeps, then remove them.

For each workspace whose plan keeps events ``retention_days`` (Enterprise
keeps everything):

1. The range to remove is a seq prefix: from after the current anchor up
   to the event before the first one received within the window. (Seq
   order and ``received_at`` order can differ by a few milliseconds across
   gateways; cutting at the first recent event keeps the cut a prefix, so
   what stays is one unbroken chain.)
2. The range is written as gzipped JSON Lines, one file per UTC day of
   ``received_at`` (a file is a contiguous seq range; a straggler stays in
   the file of its neighbours), each with a manifest: first and last seq,
   the hash before the first and the last hash, rows, the file's SHA-256.
   Files are stored before anything is removed.
3. One transaction, connected as the retention role
   (``CHAINLOG_RETENTION_DATABASE_URL``): records the archives, moves the
   workspace's anchor to the last archived event, and deletes everything
   at or below the anchor that no active legal hold matches
   (``chainlog_event_held``, libs/common/holds.py). The table's triggers
   let only that role delete, only at or below the anchor, and never a
   held event; UPDATE and TRUNCATE stay refused for everyone.
4. The run is an admin event (``admin.retention.archived``) in the
   workspace's own chain, published before the commit; it says what was
   kept and under which hold.

Held events are archived like the rest (an archive is a whole seq range)
and stay in the table below the anchor: "held islands". A later run deletes
the islands whose holds were released, even with no new range to archive.

The chain still verifies: ``GET /api/v1/verify`` and the scheduled runs
start from the anchor and check each island on its own, and the archive
files plus a later export verify offline as one chain (``chainlog
verify-export``; docs/legal-holds.md for an export holding islands).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from libs.common import holds
from libs.common.chain import ZERO_HASH
from libs.common.exportformat import jsonl_line
from libs.common.logs import Logger
from libs.common.plans import Plan, effective
from libs.common.settings import Settings
from libs.common.storage import HashingWriter, Storage
from libs.common.timeutil import uuid7
from services.ingest.adminlog import Actor, AdminLog

ACTOR = Actor(id="system:retention", type="system", name="Chainlog retention")
FETCH = 10_000


@dataclass
class Archive:
    day: date
    first_seq: int
    last_seq: int
    first_prev_hash: str
    last_hash: str
    rows: int
    key: str
    sha256: str
    #: The first signed checkpoint whose tree holds the archive's last event.
    checkpoint: str | None = None

    def manifest(self, workspace_id: str) -> dict[str, Any]:
        return {
            "workspace_id": workspace_id,
            "day": self.day.isoformat(),
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_prev_hash": self.first_prev_hash,
            "last_hash": self.last_hash,
            "rows": self.rows,
            "sha256": self.sha256,
            "file": self.key.rsplit("/", 1)[-1],
            "checkpoint": self.checkpoint,
        }


class _DayFile:
    def __init__(self, path: Path, day: date) -> None:
        self.path = path
        self.day = day
        self.raw = HashingWriter(open(path, "wb"))  # noqa: SIM115 (closed in finish)
        self.gz = gzip.GzipFile(fileobj=self.raw, mode="wb", compresslevel=6, mtime=0)
        self.first_seq = 0
        self.last_seq = 0
        self.first_prev = ""
        self.last_hash = ""
        self.rows = 0

    def add(self, seq: int, prev: bytes, digest: bytes, line: bytes) -> None:
        if not self.rows:
            self.first_seq, self.first_prev = seq, prev.hex()
        self.last_seq, self.last_hash = seq, digest.hex()
        self.rows += 1
        self.gz.write(line)

    def finish(self) -> str:
        """Close the file; the SHA-256 of the gzipped bytes, counted as they were written."""
        self.gz.close()
        self.raw.flush()
        self.raw.close()
        return self.raw.digest.hexdigest()


class Retention:
    def __init__(
        self,
        settings: Settings,
        log: Logger,
        storage: Storage,
        pool: asyncpg.Pool,
        admin: AdminLog,
        plans: dict[str, Plan],
    ) -> None:
        self.settings = settings
        self.log = log
        self.storage = storage
        self.pool = pool
        self.admin = admin
        self.plans = plans
        self.scratch = settings.storage_dir / ".partial"
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    def retention_days(self, row: asyncpg.Record) -> int | None:
        plan = self.plans.get(row["plan"])
        if plan is None:
            return None  # an unknown plan keeps everything rather than guess
        override: Any = row["limits_override"]
        if isinstance(override, str):
            override = json.loads(override)
        return effective(plan, override).limit("retention_days")

    async def run_all(
        self, now: datetime | None = None, only: str | None = None
    ) -> list[dict[str, Any]]:
        """One pass over every workspace (or ``only``); returns what each run archived."""
        now = now or datetime.now(UTC)
        done = []
        rows = await self.pool.fetch(
            "SELECT id, plan, limits_override FROM workspaces"
            " WHERE $1::uuid IS NULL OR id = $1::uuid ORDER BY created_at",
            only,
        )
        conn = await asyncpg.connect(self.settings.retention_database_url)
        try:
            for row in rows:
                if self.stopping.is_set():
                    break
                days = self.retention_days(row)
                if days is None:
                    continue
                run = await self.run_workspace(conn, str(row["id"]), now - timedelta(days=days))
                if run is not None:
                    done.append({"workspace_id": str(row["id"])} | run)
        finally:
            await conn.close()
        return done

    async def run_workspace(
        self, conn: asyncpg.Connection, workspace_id: str, cutoff: datetime
    ) -> dict[str, Any] | None:
        # One retention run per workspace at a time, across exporters.
        async with conn.transaction():
            got = await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7))", workspace_id
            )
            if not got:
                return None
            anchor = await conn.fetchrow(
                "SELECT seq, hash FROM chain_anchors WHERE workspace_id = $1", workspace_id
            )
            after = anchor["seq"] if anchor else 0
            # The cut: before the first event received within the window.
            first_kept = await conn.fetchval(
                "SELECT seq FROM events WHERE workspace_id = $1 AND seq > $2"
                " AND received_at >= $3 ORDER BY seq LIMIT 1",
                workspace_id,
                after,
                cutoff,
            )
            if first_kept is None:
                upto = await conn.fetchval(
                    "SELECT max(seq) FROM events WHERE workspace_id = $1", workspace_id
                )
            else:
                upto = first_kept - 1
            if upto is None or upto <= after:
                upto = after  # nothing new to archive; released islands may still go
            archives = await self._archive(conn, workspace_id, after, upto) if upto > after else []
            await conn.executemany(
                "INSERT INTO archives (id, workspace_id, day, first_seq, last_seq,"
                " first_prev_hash, last_hash, rows, location, sha256)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                [
                    (
                        uuid7(),
                        workspace_id,
                        a.day,
                        a.first_seq,
                        a.last_seq,
                        bytes.fromhex(a.first_prev_hash),
                        bytes.fromhex(a.last_hash),
                        a.rows,
                        a.key,
                        a.sha256,
                    )
                    for a in archives
                ],
            )
            if archives:
                new_anchor = (archives[-1].last_seq, archives[-1].last_hash)
                await conn.execute(
                    "INSERT INTO chain_anchors (workspace_id, seq, hash) VALUES ($1, $2, $3)"
                    " ON CONFLICT (workspace_id) DO UPDATE SET seq = EXCLUDED.seq,"
                    " hash = EXCLUDED.hash, updated_at = now()",
                    workspace_id,
                    new_anchor[0],
                    bytes.fromhex(new_anchor[1]),
                )
            elif anchor is not None:
                new_anchor = (anchor["seq"], anchor["hash"].hex())
            else:
                return None
            # The range and the islands of released holds: everything archived
            # that no active hold keeps.
            removed = await conn.execute(
                "DELETE FROM events e WHERE e.workspace_id = $1 AND e.seq <= $2"
                " AND NOT chainlog_event_held(e)",
                workspace_id,
                upto,
            )
            events_removed = int(removed.split()[-1])
            if not archives and not events_removed:
                return None
            kept = await conn.fetchval(
                "SELECT count(*) FROM events WHERE workspace_id = $1 AND seq <= $2",
                workspace_id,
                upto,
            )
            summary = {
                "cutoff": cutoff.isoformat(),
                "anchor": {"seq": new_anchor[0], "hash": new_anchor[1]},
                "events_removed": events_removed,
                "kept": kept,
                "holds": await holds.kept_by_hold(conn, workspace_id, upto),
                "archives": [
                    {k: v for k, v in a.manifest(workspace_id).items() if k != "checkpoint"}
                    | {"key": a.key}
                    for a in archives
                ],
            }
            # The admin event before the commit, as every management change.
            await self.admin.record(
                workspace_id,
                ACTOR,
                "retention.archived",
                "workspace",
                workspace_id,
                before={"anchor_seq": after},
                after={
                    k: summary[k] for k in ("cutoff", "anchor", "events_removed", "kept", "holds")
                }
                | {"archives": [a.key for a in archives]},
            )
        self.log.info(
            "retention.archived",
            workspace_id=workspace_id,
            events=summary["events_removed"],
            kept=summary["kept"],
            files=len(archives),
        )
        return summary

    async def _archive(
        self, conn: asyncpg.Connection, workspace_id: str, after: int, upto: int
    ) -> list[Archive]:
        """Write and store the day files of seq ``after+1 .. upto``; returns them in order."""
        await asyncio.to_thread(self.scratch.mkdir, parents=True, exist_ok=True)
        files: list[_DayFile] = []
        current: _DayFile | None = None
        day_of_file: date | None = None
        cursor = conn.cursor(
            "SELECT seq, prev_hash, hash, body, ip_country, ip_city, received_at FROM events"
            " WHERE workspace_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
            workspace_id,
            after,
            upto,
            prefetch=FETCH,
        )
        async for r in cursor:
            day = r["received_at"].astimezone(UTC).date()
            if current is None or (day_of_file is not None and day > day_of_file):
                path = self.scratch / f"archive-{workspace_id}-{r['seq']}.jsonl.gz"
                current = _DayFile(path, day)
                files.append(current)
                day_of_file = day
            current.add(
                r["seq"],
                r["prev_hash"],
                r["hash"],
                jsonl_line(r["body"], r["hash"], r["ip_country"], r["ip_city"]),
            )
        out = []
        for f in files:
            digest = await asyncio.to_thread(f.finish)
            base = f"archives/{workspace_id}/{f.day.isoformat()}-{f.first_seq:020d}"
            archive = Archive(
                f.day,
                f.first_seq,
                f.last_seq,
                f.first_prev or ZERO_HASH,
                f.last_hash,
                f.rows,
                base + ".jsonl.gz",
                digest,
                await conn.fetchval(
                    "SELECT note FROM checkpoints WHERE workspace_id = $1 AND size >= $2"
                    " ORDER BY created_at LIMIT 1",
                    workspace_id,
                    f.last_seq,
                ),
            )
            manifest = self.scratch / f"{f.path.name}.manifest.json"
            await asyncio.to_thread(
                manifest.write_bytes,
                orjson.dumps(archive.manifest(workspace_id), option=orjson.OPT_INDENT_2),
            )
            await self.storage.put(archive.key, f.path, "application/gzip")
            await self.storage.put(base + ".manifest.json", manifest, "application/json")
            out.append(archive)
        return out

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.run_all()
            except (OSError, asyncpg.PostgresError) as exc:
                self.log.warning("retention.failed", error=repr(exc))
            try:
                async with asyncio.timeout(self.settings.retention_interval_s):
                    await self.stopping.wait()
            except TimeoutError:
                pass
