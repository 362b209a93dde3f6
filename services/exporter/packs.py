"""Evidence packs: a period's records for a SOC 2 review, gathered, zipped and signed.

A pack is a leased job like an export (``services/exporter/jobs.py``); the
exporter polls for pending packs instead of waiting for a Kafka message.
Here the records are gathered from PostgreSQL with the code that serves
them (the export writer, ``GET /api/v1/verify``, the proofs, the management
API's renderers), so a pack says exactly what the API says; the zip, its
manifest and signature are ``libs/common/packformat.write_pack``'s.

**What a pack holds.** The events whose ``occurred_at`` is in
``[from, to)``, as an export filtered by ``from``/``to`` would, up to the
latest signed checkpoint when the pack is built (``through_seq``). A pack
waits (:class:`NotReady`, back to pending) until the admin event of its own
request is stored and a signed checkpoint holds it, so it always records
its own request and every event in it is in a signed tree; after
``READY_WAIT_S`` it is built with what there is, and ``checkpoints.json``
says so. Every event file, and every query of the period, stops at
``through_seq``: ``events.csv`` and ``events.jsonl`` hold the same rows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.common import checkpoint as notes
from libs.common import logkey
from libs.common.logs import Logger
from libs.common.packformat import PackMeta, checkpoint_file, json_bytes, write_pack
from libs.common.secretbox import SecretBox
from libs.common.settings import Settings
from libs.common.storage import Storage
from libs.common.timeutil import format_ts, format_ts_or_none, now_ts
from services.exporter.exports import write_export
from services.exporter.jobs import LeasedJobs, NotReady, Output, Written
from services.ingest import alerts_api, exports_api, manage, proofs_api, streams_api
from services.ingest.verify import verify

#: How often an exporter looks for pending packs.
POLL_S = 3.0
#: How long a pack waits for its request's admin event and a checkpoint over it.
READY_WAIT_S = 600
REQUEST_ACTION = "admin.evidence_pack.requested"

READINESS = (
    "SELECT (SELECT seq FROM events WHERE workspace_id = $1 AND resource = 'evidence_pack'"
    "   AND resource_id = $2 AND action = $3 LIMIT 1) AS request,"
    " (SELECT size FROM checkpoints WHERE workspace_id = $1"
    "   ORDER BY created_at DESC LIMIT 1) AS signed,"
    " (SELECT max(seq) FROM events WHERE workspace_id = $1) AS stored,"
    " now() - $4::timestamptz > make_interval(secs => $5) AS late"
)
#: Configuration in force at some time of the period: created before its end,
#: not deleted before its start.
IN_FORCE = " AND {t}.created_at < $3 AND ({t}.deleted_at IS NULL OR {t}.deleted_at >= $2)"


class EvidencePacks:
    def __init__(
        self,
        settings: Settings,
        log: Logger,
        storage: Storage,
        pool: asyncpg.Pool,
        box: SecretBox,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.box = box
        self.key: tuple[str, Ed25519PrivateKey] | None = None
        self.stopping = asyncio.Event()
        self.jobs = LeasedJobs(
            "evidence_packs",
            "evidence_pack",
            settings,
            log,
            storage,
            pool,
            self._build,
            pending_after_s=0,
            sweep_s=POLL_S,
        )

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.jobs.sweep_forever(self.stopping)

    async def _build(self, pack_id: str, job: asyncpg.Record, workdir: Path) -> Output:
        workspace_id = str(job["workspace_id"])
        through = await self._through(pack_id, job)
        if self.key is None:
            self.key = await logkey.load(self.pool, self.box, self.settings.log_name)
        name, private = self.key
        period = Period(workspace_id, job["period_from"], job["period_to"], through)
        files, events = await gather(self.pool, self.settings, period, workdir, self.box)
        meta = PackMeta(
            pack_id,
            workspace_id,
            format_ts(period.start),
            format_ts(period.end),
            list(job["controls"]),
            now_ts(),
        )
        path = workdir / "evidence-pack.zip"
        size, digest = await asyncio.to_thread(write_pack, path, files, meta, name, private)
        written = Written(events.rows, size, digest, events.first_seq, events.last_seq)
        key = f"evidence-packs/{workspace_id}/{pack_id}.zip"
        return Output(path, key, "application/zip", written)

    async def _through(self, pack_id: str, job: asyncpg.Record) -> int:
        """The last seq the pack holds; raises NotReady while its request is not in a signed tree."""
        r = await self.pool.fetchrow(
            READINESS,
            job["workspace_id"],
            pack_id,
            REQUEST_ACTION,
            job["created_at"],
            float(READY_WAIT_S),
        )
        request, signed, stored = r["request"], int(r["signed"] or 0), int(r["stored"] or 0)
        transparency = self.settings.transparency
        if request is not None and (not transparency or signed >= request):
            return signed if transparency else stored
        if not r["late"]:
            raise NotReady(
                "the request's admin event is not stored yet"
                if request is None
                else "no signed checkpoint holds the request yet"
            )
        # Waited long enough: everything stored; checkpoints.json tells what is not covered.
        return stored


@dataclass(frozen=True, slots=True)
class Period:
    workspace_id: str
    start: datetime
    end: datetime
    #: The last seq of the pack: later events are left out of every file.
    through: int

    def filters(self, **more: str) -> dict[str, str]:
        return {"from": format_ts(self.start), "to": format_ts(self.end), **more}


async def gather(
    pool: asyncpg.Pool, settings: Settings, period: Period, workdir: Path, box: SecretBox
) -> tuple[dict[str, bytes | Path], Written]:
    """Every data file of the pack (``packformat.DATA_FILES``, checkpoint notes), and its events."""
    files: dict[str, bytes | Path] = {}
    written: dict[str, Written] = {}
    for name, fmt, more in (
        ("events.csv", "csv", {}),
        ("events.jsonl", "jsonl", {}),
        ("admin-trail.csv", "csv", {"action": "admin.*"}),
    ):
        path = files[name] = workdir / name
        written[name] = await write_export(
            pool,
            period.workspace_id,
            fmt,
            period.filters(**more),
            path,
            max_seq=period.through,
            box=box,
        )
    events = written["events.jsonl"]
    files["verification.json"] = json_bytes(await _verification(pool, settings, period, events))
    checkpoints, cp_files = await _checkpoints(pool, settings, period, events)
    files["checkpoints.json"] = json_bytes(checkpoints)
    files.update(cp_files)
    files["alert-rules.json"] = json_bytes(await _rules(pool, period))
    files["alerts.json"] = json_bytes(await _alerts(pool, period))
    files["log-streams.json"] = json_bytes(await _streams(pool, period))
    files["access-review.json"] = json_bytes(await _access(pool, period.workspace_id))
    return files, events


def _bounds(period: Period) -> tuple[str, datetime, datetime]:
    return period.workspace_id, period.start, period.end


async def _verification(
    pool: asyncpg.Pool, settings: Settings, period: Period, events: Written
) -> dict[str, Any]:
    """The chain over the period's seq range, checked now as ``GET /api/v1/verify`` does, and
    the scheduled runs of the period."""
    checked = None
    if events.first_seq is not None:
        checked = await verify(
            pool,
            period.workspace_id,
            {"from_seq": str(events.first_seq), "to_seq": str(events.last_seq)},
            max_breaks=settings.verify_max_breaks,
            workers=None,
            dsn=settings.database_url,
            parallel_min=0,
        )
    runs = await pool.fetch(
        f"SELECT {exports_api.VERIFICATION_COLUMNS} FROM verifications WHERE workspace_id = $1"
        " AND started_at >= $2 AND started_at < $3 ORDER BY started_at, id",
        *_bounds(period),
    )
    return {
        "range": checked,
        "scheduled_runs": [exports_api.render_verification(r) for r in runs],
    }


async def _checkpoints(
    pool: asyncpg.Pool, settings: Settings, period: Period, events: Written
) -> tuple[dict[str, Any], dict[str, bytes | Path]]:
    """The first checkpoint of each tree size signed in the period, and the first that covers
    the pack's last event; an inclusion proof of that event, a consistency proof first to last."""
    ws = period.workspace_id
    rows = list(
        await pool.fetch(
            "SELECT DISTINCT ON (size) size, root, note, created_at FROM checkpoints"
            " WHERE workspace_id = $1 AND created_at >= $2 AND created_at < $3"
            " ORDER BY size, created_at",
            *_bounds(period),
        )
    )
    covering: dict[str, Any] | None = None
    if events.last_seq is not None:
        cover = await pool.fetchrow(
            "SELECT size, root, note, created_at FROM checkpoints"
            " WHERE workspace_id = $1 AND size >= $2 ORDER BY created_at LIMIT 1",
            ws,
            events.last_seq,
        )
        if cover is not None:
            event_id = await pool.fetchval(
                "SELECT id FROM events WHERE workspace_id = $1 AND seq = $2", ws, events.last_seq
            )
            params = {"event_id": str(event_id), "tree_size": str(cover["size"])}
            proof = await proofs_api.inclusion(pool, ws, params)
            covering = {
                "seq": events.last_seq,
                "event_id": str(event_id),
                "size": cover["size"],
                "file": checkpoint_file(cover["size"]),
                "audit_path": proof["audit_path"],
            }
            if all(r["size"] != cover["size"] for r in rows):
                rows = sorted([*rows, cover], key=lambda r: int(r["size"]))
    consistency = None
    sizes = [int(r["size"]) for r in rows]
    if len(sizes) > 1 and sizes[0] > 0:
        params = {"first": str(sizes[0]), "second": str(sizes[-1])}
        proof = await proofs_api.consistency(pool, ws, params)
        consistency = {"first": sizes[0], "second": sizes[-1], "proof": proof["proof"]}
    listed = []
    for r in rows:
        served = notes.served_row(r)
        del served["checkpoint"]
        listed.append({**served, "file": checkpoint_file(r["size"])})
    doc = {
        "origin": notes.workspace_origin(ws, settings.log_name),
        "through_seq": period.through,
        "checkpoints": listed,
        "covering": covering,
        "consistency": consistency,
    }
    return doc, {checkpoint_file(r["size"]): r["note"].encode() for r in rows}


async def _rules(pool: asyncpg.Pool, period: Period) -> dict[str, Any]:
    rows = await pool.fetch(
        f"SELECT {alerts_api.RULE_COLUMNS}, deleted_at FROM alert_rules r"
        " WHERE workspace_id = $1" + IN_FORCE.format(t="r") + " ORDER BY created_at, id",
        *_bounds(period),
    )
    return {
        "data": [
            {**alerts_api.render_rule(r), "deleted_at": format_ts_or_none(r["deleted_at"])}
            for r in rows
        ]
    }


async def _alerts(pool: asyncpg.Pool, period: Period) -> dict[str, Any]:
    """Every alert of the period with its deliveries, as ``GET /api/v1/alerts`` pages them."""
    data: list[dict[str, Any]] = []
    params = {**period.filters(), "limit": "100"}
    while True:
        page = await alerts_api.list_alerts(pool, period.workspace_id, params)
        data += page["data"]
        if not page["pagination"]["has_more"]:
            return {"data": data}
        params["cursor"] = page["pagination"]["next_cursor"]


async def _streams(pool: asyncpg.Pool, period: Period) -> dict[str, Any]:
    """The log streams of the period as the API shows them (secret fields are never stored
    in ``config``), with their delivery cursors as of now."""
    rows = await pool.fetch(
        f"SELECT {streams_api.COLUMNS}, s.deleted_at{streams_api.FROM}"
        " WHERE s.workspace_id = $1" + IN_FORCE.format(t="s") + " ORDER BY s.created_at, s.id",
        *_bounds(period),
    )
    return {
        "as_of": now_ts(),
        "data": [
            {**streams_api.render(r), "deleted_at": format_ts_or_none(r["deleted_at"])}
            for r in rows
        ],
    }


async def _access(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    """Keys, members and the allowlist now, as the management API lists them (no key hash)."""
    return {
        "as_of": now_ts(),
        "api_keys": (await manage.list_keys(pool, workspace_id))["data"],
        "members": (await manage.list_members(pool, workspace_id))["data"],
        "ip_allowlist": (await manage.list_allowlist(pool, workspace_id))["data"],
    }
