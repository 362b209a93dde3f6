"""Legal holds (admin key): events retention must keep and subjects erasure must refuse.

``POST /api/v1/legal-holds``::

    {"name": "...", "reason": "...",
     "filter": {"actor_id", "tenant_id", "action", "resource", "resource_id", "from", "to"}}

At least one filter key; ``action`` is the glob of the alert rules (``*`` is
any run), ``from`` and ``to`` bound ``occurred_at`` as the event query
does. ``POST /api/v1/legal-holds/{id}/release`` ``{"reason"}`` ends it.
Creating and releasing are admin events. A hold is never edited: narrowing
one in place would let events it held go at the next retention run with no
record that they were ever held; release it and create another instead,
and both stay on record. docs/legal-holds.md tells the whole story.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from libs.common import errors, holds
from libs.common.timeutil import format_ts, format_ts_or_none, uuid7
from services.ingest.manage import Change, bad, parse_uuid

FIELDS = ("name", "filter", "reason")
MAX_NAME = 200
MAX_REASON = 2000
COLUMNS = (
    "id, name, filter, reason, created_by, created_at, released_at, released_by, release_reason"
)


def _text(body: dict[str, Any], name: str, limit: int) -> tuple[str, list[dict[str, str]]]:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return "", [bad(name, f"{name} must be a non-empty string of at most {limit} characters")]
    return value, []


def parse_request(body: Any) -> tuple[str, dict[str, str], str]:
    """``name``, ``filter`` (normalised) and ``reason``; a 422 names every bad field."""
    if not isinstance(body, dict):
        raise errors.validation_failed([bad("body", "the body must be a JSON object")])
    v = [bad(k, f"{k} is not a field of a legal hold") for k in body if k not in FIELDS]
    name, problems = _text(body, "name", MAX_NAME)
    v += problems
    reason, problems = _text(body, "reason", MAX_REASON)
    v += problems
    where, problems = holds.parse_filter(body.get("filter"))
    v += problems
    if v:
        raise errors.validation_failed(v)
    return name, where, reason


def parse_release(body: Any) -> str:
    if not isinstance(body, dict):
        raise errors.validation_failed([bad("body", "the body must be a JSON object")])
    v = [bad(k, f"{k} is not a field of a release") for k in body if k != "reason"]
    reason, problems = _text(body, "reason", MAX_REASON)
    if v + problems:
        raise errors.validation_failed(v + problems)
    return reason


def render(r: asyncpg.Record) -> dict[str, Any]:
    f = r["filter"]
    return {
        "id": str(r["id"]),
        "name": r["name"],
        "filter": orjson.loads(f) if isinstance(f, str) else f,
        "reason": r["reason"],
        "active": r["released_at"] is None,
        "created_by": r["created_by"],
        "created_at": format_ts(r["created_at"]),
        "released_at": format_ts_or_none(r["released_at"]),
        "released_by": r["released_by"],
        "release_reason": r["release_reason"],
    }


async def _lock_retention(conn: asyncpg.Connection, workspace_id: str) -> None:
    """Wait for a retention run of the workspace to end (services/exporter/retention.py
    takes the same lock): a hold created while it deletes would come too late for it."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", workspace_id)


async def create(conn: asyncpg.Connection, workspace_id: str, body: Any, created_by: str) -> Change:
    name, where, reason = parse_request(body)
    await _lock_retention(conn, workspace_id)
    row = await conn.fetchrow(
        "INSERT INTO legal_holds (id, workspace_id, name, filter, reason, created_by)"
        f" VALUES ($1, $2, $3, $4::jsonb, $5, $6) RETURNING {COLUMNS}",
        uuid7(),
        workspace_id,
        name,
        orjson.dumps(where).decode(),
        reason,
        created_by,
    )
    shown = render(row)
    return Change(shown, shown["id"], after=shown)


async def _row(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: str, hold_id: str, lock: str = ""
) -> asyncpg.Record:
    hid = parse_uuid(hold_id)
    row = None
    if hid is not None:
        row = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM legal_holds WHERE id = $1 AND workspace_id = $2{lock}",
            hid,
            workspace_id,
        )
    if row is None:
        raise errors.not_found(f"no legal hold {hold_id} in this workspace")
    return row


async def get(pool: asyncpg.Pool, workspace_id: str, hold_id: str) -> dict[str, Any]:
    """The hold, with ``events_held``: how many stored events it matches now (0 once released)."""
    row = await _row(pool, workspace_id, hold_id)
    return render(row) | {"events_held": await holds.held_count(pool, workspace_id, str(row["id"]))}


async def list_holds(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        f"SELECT {COLUMNS} FROM legal_holds WHERE workspace_id = $1"
        " ORDER BY created_at DESC, id LIMIT 500",
        workspace_id,
    )
    return {"data": [render(r) for r in rows]}


async def release(
    conn: asyncpg.Connection, workspace_id: str, hold_id: str, body: Any, released_by: str
) -> Change:
    """End the hold; its events go at the next retention run that no other hold stops."""
    reason = parse_release(body)
    row = await _row(conn, workspace_id, hold_id, " FOR UPDATE")
    if row["released_at"] is not None:
        raise errors.ApiError(409, "already_released", f"legal hold {hold_id} was released already")
    after = await conn.fetchrow(
        "UPDATE legal_holds SET released_at = now(), released_by = $2, release_reason = $3"
        f" WHERE id = $1 RETURNING {COLUMNS}",
        row["id"],
        released_by,
        reason,
    )
    shown = render(after)
    return Change(shown, shown["id"], before=render(row), after=shown)
