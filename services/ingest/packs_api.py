"""Evidence packs: the API side (read key). The pack itself: docs/evidence-packs.md.

``POST /api/v1/evidence-packs {"from", "to", "controls": ["CC6", ...]}``
stores a pending pack with its admin event (``admin.evidence_pack.requested``);
an exporter polls for pending packs and builds them
(``services/exporter/packs.py``). Status, listing and download work as for
exports, through the same helpers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from libs.common import errors
from libs.common.packformat import CONTROLS
from libs.common.timeutil import format_ts, format_ts_or_none, parse_rfc3339, uuid7
from services.ingest.exports_api import (
    check_running,
    download_url,
    job_row,
    list_jobs,
    stored_file,
)
from services.ingest.manage import Change

FIELDS = ("from", "to", "controls")
#: Packs a workspace may have pending or processing at once: each reads a whole period.
MAX_RUNNING = 2
WHAT = "evidence pack"
COLUMNS = (
    "id, period_from, period_to, controls, status, total_rows, file_size, sha256, first_seq,"
    " last_seq, error, requested_by, created_at, started_at, completed_at, expires_at, location"
)


def parse_request(body: Any) -> tuple[datetime, datetime, list[str]]:
    """The period and controls of a request body; a 422 names every bad field."""
    if not isinstance(body, dict):
        raise errors.validation_failed(
            [{"field": "body", "message": "the body must be a JSON object: from, to, controls"}]
        )
    violations = [
        {"field": k, "message": f"{k} is not a field of an evidence pack request"}
        for k in body
        if k not in FIELDS
    ]
    bounds: dict[str, datetime] = {}
    for name in ("from", "to"):
        value = body.get(name)
        try:
            if not isinstance(value, str):
                raise ValueError("is required, an RFC 3339 date-time such as 2026-01-01T00:00:00Z")
            bounds[name] = parse_rfc3339(value).astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            violations.append({"field": name, "message": f"{name} {exc}"})
    if len(bounds) == 2 and bounds["from"] >= bounds["to"]:
        violations.append({"field": "to", "message": "to must be after from"})
    controls = parse_controls(body.get("controls"))
    if controls is None:
        violations.append({"field": "controls", "message": CONTROLS_MESSAGE})
    if violations:
        raise errors.validation_failed(violations)
    assert controls is not None
    return bounds["from"], bounds["to"], controls


CONTROLS_MESSAGE = "controls must be a non-empty list of distinct SOC 2 common criteria: " + (
    ", ".join(CONTROLS)
)


def parse_controls(controls: Any) -> list[str] | None:
    """The controls in CC order; None unless a non-empty list of distinct known ones
    (also for scheduled packs, ``services/ingest/schedules_api.py``)."""
    if (
        not isinstance(controls, list)
        or not controls
        or any(not isinstance(c, str) or c not in CONTROLS for c in controls)
        or len(set(controls)) != len(controls)
    ):
        return None
    return [c for c in CONTROLS if c in controls]


async def create(
    conn: asyncpg.Connection, workspace_id: str, body: Any, requested_by: str
) -> Change:
    start, end, controls = parse_request(body)
    # Locks the workspace row: concurrent requests take turns for the last slot.
    await conn.execute("SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE", workspace_id)
    await check_running(conn, "evidence_packs", workspace_id, MAX_RUNNING, "evidence packs")
    pack_id = str(uuid7())
    row = await conn.fetchrow(
        "INSERT INTO evidence_packs (id, workspace_id, period_from, period_to, controls,"
        f" requested_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}",
        pack_id,
        workspace_id,
        start,
        end,
        controls,
        requested_by,
    )
    shown = {"from": format_ts(start), "to": format_ts(end), "controls": controls}
    doc = {"id": pack_id, "status": "pending", **shown, "created_at": format_ts(row["created_at"])}
    return Change(doc, pack_id, after=shown)


def render(r: asyncpg.Record, public_url: str, now: datetime) -> dict[str, Any]:
    url, expired = download_url(r, f"{public_url}/api/v1/evidence-packs/{r['id']}/download", now)
    return {
        "id": str(r["id"]),
        "status": r["status"],
        "from": format_ts(r["period_from"]),
        "to": format_ts(r["period_to"]),
        "controls": list(r["controls"]),
        "total_events": r["total_rows"],
        "first_seq": r["first_seq"],
        "last_seq": r["last_seq"],
        "size": r["file_size"],
        "sha256": r["sha256"],
        "download_url": url,
        "created_at": format_ts(r["created_at"]),
        "started_at": format_ts_or_none(r["started_at"]),
        "completed_at": format_ts_or_none(r["completed_at"]),
        "expires_at": format_ts_or_none(r["expires_at"]),
        "expired": expired,
        "error": r["error"],
        "requested_by": r["requested_by"],
    }


async def get(
    pool: asyncpg.Pool, workspace_id: str, pack_id: str, public_url: str
) -> dict[str, Any]:
    row = await job_row(pool, "evidence_packs", COLUMNS, workspace_id, pack_id, WHAT)
    return render(row, public_url, row["now"])


async def list_packs(pool: asyncpg.Pool, workspace_id: str, public_url: str) -> dict[str, Any]:
    rows = await list_jobs(pool, "evidence_packs", COLUMNS, workspace_id)
    return {"data": [render(r, public_url, r["now"]) for r in rows]}


async def download(
    pool: asyncpg.Pool, workspace_id: str, pack_id: str
) -> tuple[str, str, int, str]:
    """(storage key, file name, size, sha256) of a downloadable pack; 409 or 410 otherwise."""
    row = await job_row(pool, "evidence_packs", COLUMNS, workspace_id, pack_id, WHAT)
    return stored_file(row, WHAT, f"chainlog-evidence-pack-{pack_id}.zip")
