"""Exports and verification runs: the API side (read key).

``POST /api/v1/exports`` takes the query filters (``from``, ``to``,
``actor_id``, ``action``, ``tenant_id``, ``resource``, ``session_id``,
``search``, and every other filter of ``GET /api/v1/events``) and
``format`` (``csv`` or ``jsonl``) as one flat JSON object. The gateway
checks them, stores the job as ``pending`` with its admin event, and asks
the exporter through Kafka after the commit; the exporter also sweeps up
any pending job it was not told about (a gateway that died in between), so
the Kafka message only makes it start sooner.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from libs.common import errors
from libs.common.plans import Plan, enforce
from libs.common.timeutil import format_ts, uuid7
from services.ingest.manage import Change, parse_uuid
from services.ingest.query import EXPORT_FILTERS, filter_clauses

FORMATS = ("csv", "jsonl")
#: Exports a workspace may have pending or processing at once.
MAX_RUNNING = 5
COLUMNS = (
    "id, format, filters, status, total_rows, file_size, sha256, first_seq, last_seq, error,"
    " requested_by, created_at, started_at, completed_at, expires_at, location,"
    # the first signed checkpoint whose tree holds the export's last event
    " (SELECT c.note FROM checkpoints c WHERE c.workspace_id = exports.workspace_id"
    "  AND c.size >= exports.last_seq ORDER BY c.created_at LIMIT 1) AS checkpoint"
)


def parse_request(workspace_id: str, body: Any) -> tuple[str, dict[str, str]]:
    """The format and the filters of a request body; a 422 names every bad field."""
    if not isinstance(body, dict):
        raise errors.validation_failed(
            [{"field": "body", "message": "the body must be a JSON object of filters and format"}]
        )
    violations: list[dict[str, str]] = []
    fmt = body.get("format", "csv")
    if fmt not in FORMATS:
        violations.append({"field": "format", "message": "format must be csv or jsonl"})
    filters: dict[str, str] = {}
    for key, value in body.items():
        if key == "format" or value is None:
            continue
        if not isinstance(value, str):
            violations.append({"field": key, "message": f"{key} must be a string"})
            continue
        if value:
            filters[key] = value
    # The same checks as the query API (unknown filters, timestamps, codes).
    violations.extend(filter_clauses(workspace_id, filters, EXPORT_FILTERS)[2])
    if violations:
        raise errors.validation_failed(violations)
    return str(fmt), filters


async def check_running(
    conn: asyncpg.Connection, table: str, workspace_id: str, limit: int, what: str
) -> None:
    """429 ``too_many_<what>`` when the workspace has ``limit`` jobs pending or processing.

    The caller holds the workspace row's lock (``plans.enforce``, or ``lock_workspace``):
    concurrent requests take turns for the last slot.
    """
    running = await conn.fetchval(
        f"SELECT count(*) FROM {table} WHERE workspace_id = $1"
        " AND status IN ('pending', 'processing')",
        workspace_id,
    )
    if running >= limit:
        raise errors.ApiError(
            429,
            f"too_many_{what.replace(' ', '_')}",
            f"A workspace may have {limit} {what} running at once; wait for one to finish.",
            headers={"Retry-After": "10"},
            limit=limit,
            running=running,
        )


async def create(
    conn: asyncpg.Connection,
    workspace_id: str,
    body: Any,
    plans: Mapping[str, Plan],
    requested_by: str,
) -> Change:
    fmt, filters = parse_request(workspace_id, body)
    # Locks the workspace row: concurrent requests take turns for the last slot.
    await enforce(conn, workspace_id, "exports_per_month", plans)
    await check_running(conn, "exports", workspace_id, MAX_RUNNING, "exports")
    export_id = str(uuid7())
    row = await conn.fetchrow(
        f"INSERT INTO exports (id, workspace_id, format, filters, requested_by)"
        f" VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING {COLUMNS}",
        export_id,
        workspace_id,
        fmt,
        orjson.dumps(filters).decode(),
        requested_by,
    )
    doc = {
        "id": export_id,
        "status": "pending",
        "format": fmt,
        "filters": filters,
        "created_at": format_ts(row["created_at"]),
    }
    return Change(doc, export_id, after={"format": fmt, "filters": filters})


def download_url(r: asyncpg.Record, url: str, now: datetime) -> tuple[str | None, bool]:
    """The job's download ``url`` while it can be downloaded (else None), and whether it expired."""
    expired = r["expires_at"] is not None and r["expires_at"] <= now
    return (url if r["status"] == "completed" and not expired else None), expired


def render(r: asyncpg.Record, public_url: str, now: datetime) -> dict[str, Any]:
    filters = r["filters"]
    if isinstance(filters, str):
        filters = orjson.loads(filters)
    url, expired = download_url(r, f"{public_url}/api/v1/exports/{r['id']}/download", now)
    return {
        "id": str(r["id"]),
        "status": r["status"],
        "format": r["format"],
        "filters": filters,
        # An unfiltered export is a whole seq range: verify-export proves it complete.
        "complete_range": not filters,
        "total_rows": r["total_rows"],
        "file_size": r["file_size"],
        "sha256": r["sha256"],
        "first_seq": r["first_seq"],
        "last_seq": r["last_seq"],
        "download_url": url,
        "created_at": format_ts(r["created_at"]),
        "started_at": format_ts(r["started_at"]) if r["started_at"] else None,
        "completed_at": format_ts(r["completed_at"]) if r["completed_at"] else None,
        "expires_at": format_ts(r["expires_at"]) if r["expires_at"] else None,
        "expired": expired,
        "error": r["error"],
        "requested_by": r["requested_by"],
        # Proves the exported rows are in the log everyone is shown: check each
        # row's inclusion against it (docs/proofs.md). Null until signed.
        "checkpoint": r["checkpoint"],
    }


async def job_row(
    pool: asyncpg.Pool, table: str, columns: str, workspace_id: str, job_id: str, what: str
) -> asyncpg.Record:
    """One job of the workspace (with the database's ``now``); 404 otherwise."""
    uid = parse_uuid(job_id)
    row = None
    if uid is not None:
        row = await pool.fetchrow(
            f"SELECT {columns}, now() AS now FROM {table} WHERE id = $1 AND workspace_id = $2",
            uid,
            workspace_id,
        )
    if row is None:
        raise errors.not_found(f"no {what} {job_id} in this workspace")
    return row


def stored_file(row: asyncpg.Record, what: str, name: str) -> tuple[str, str, int, str]:
    """(storage key, ``name``, size, sha256) of a downloadable job.

    409 ``<what>_not_ready`` before completion, 410 ``<what>_expired`` after expiry.
    """
    code = what.replace(" ", "_")
    if row["status"] != "completed":
        raise errors.ApiError(
            409,
            f"{code}_not_ready",
            f"The {what} is {row['status']}; download it once its status is completed.",
            **{f"{code}_status": row["status"]},
        )
    if row["expires_at"] <= row["now"]:
        raise errors.ApiError(
            410,
            f"{code}_expired",
            f"The {what} expired at {format_ts(row['expires_at'])}; request a new one.",
        )
    return str(row["location"]), name, int(row["file_size"]), str(row["sha256"])


async def _row(pool: asyncpg.Pool, workspace_id: str, export_id: str) -> asyncpg.Record:
    return await job_row(pool, "exports", COLUMNS, workspace_id, export_id, "export")


async def get(
    pool: asyncpg.Pool, workspace_id: str, export_id: str, public_url: str
) -> dict[str, Any]:
    row = await _row(pool, workspace_id, export_id)
    return render(row, public_url, row["now"])


async def list_jobs(
    pool: asyncpg.Pool, table: str, columns: str, workspace_id: str
) -> list[asyncpg.Record]:
    """The workspace's last 100 jobs, newest first, each with the database's ``now``."""
    rows: list[asyncpg.Record] = await pool.fetch(
        f"SELECT {columns}, now() AS now FROM {table} WHERE workspace_id = $1"
        " ORDER BY created_at DESC LIMIT 100",
        workspace_id,
    )
    return rows


async def list_exports(pool: asyncpg.Pool, workspace_id: str, public_url: str) -> dict[str, Any]:
    rows = await list_jobs(pool, "exports", COLUMNS, workspace_id)
    return {"data": [render(r, public_url, r["now"]) for r in rows]}


async def download(
    pool: asyncpg.Pool, workspace_id: str, export_id: str
) -> tuple[str, str, int, str]:
    """(storage key, file name, size, sha256) of a downloadable export; 409 or 410 otherwise."""
    row = await _row(pool, workspace_id, export_id)
    return stored_file(row, "export", f"chainlog-export-{export_id}.{row['format']}")


VERIFICATION_COLUMNS = (
    "id, kind, started_at, finished_at, from_seq, to_seq, events_checked, valid, breaks"
)


async def list_verifications(
    pool: asyncpg.Pool, workspace_id: str, params: Mapping[str, str]
) -> dict[str, Any]:
    violations = [
        {"field": k, "message": f"{k} is not a known filter"} for k in params if k != "limit"
    ]
    limit = 50
    if params.get("limit"):
        try:
            limit = int(params["limit"])
            if not 1 <= limit <= 500:
                raise ValueError
        except ValueError:
            violations.append(
                {"field": "limit", "message": "limit must be an integer from 1 to 500"}
            )
    if violations:
        raise errors.validation_failed(violations)
    rows = await pool.fetch(
        f"SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE workspace_id = $1"
        " ORDER BY started_at DESC, id DESC LIMIT $2",
        workspace_id,
        limit,
    )
    return {"data": [render_verification(r) for r in rows]}


def render_verification(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "kind": r["kind"],
        "started_at": format_ts(r["started_at"]),
        "finished_at": format_ts(r["finished_at"]),
        "from_seq": r["from_seq"],
        "to_seq": r["to_seq"],
        "events_checked": r["events_checked"],
        "valid": r["valid"],
        "breaks": orjson.loads(r["breaks"]) if isinstance(r["breaks"], str) else r["breaks"],
    }
