"""Legal holds: which events retention keeps and which subjects erasure refuses.

"This event is held" has ONE definition, the SQL function
``chainlog_event_held(events)`` (over ``chainlog_hold_matches(filter,
events)``) of migration 012: retention's DELETE, the table's trigger, the
API's counts and :func:`subject_held` all ask it, so they cannot disagree.
This module checks a hold's filter before it is stored (the function
trusts it) and wraps the questions the services ask. docs/legal-holds.md
tells the whole story.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import asyncpg

from libs.common.patterns import check_pattern
from libs.common.timeutil import format_ts, parse_rfc3339

#: The keys a hold's filter may have: those of the event query API that
#: name who, whose, what and when.
FILTER_KEYS = ("actor_id", "tenant_id", "action", "resource", "resource_id", "from", "to")
MAX_VALUE_LEN = 256


def parse_filter(value: Any, field: str = "filter") -> tuple[dict[str, str], list[dict[str, str]]]:
    """A hold's filter, normalised (times in UTC), and every bad key, named ``filter.<key>``.

    At least one key is required: a hold on everything is a retention
    setting, not a hold.
    """
    if not isinstance(value, dict):
        return {}, [{"field": field, "message": f"{field} must be a JSON object"}]
    out: dict[str, str] = {}
    bad: list[dict[str, str]] = []
    for key, raw in value.items():
        name = f"{field}.{key}"
        if key not in FILTER_KEYS:
            known = ", ".join(FILTER_KEYS)
            bad.append({"field": name, "message": f"{key} is not a hold filter ({known})"})
        elif not isinstance(raw, str) or not raw or len(raw) > MAX_VALUE_LEN:
            message = f"{key} must be a non-empty string of at most {MAX_VALUE_LEN} characters"
            bad.append({"field": name, "message": message})
        elif key == "action":
            problem = check_pattern(raw)
            if problem is None:
                out[key] = raw
            else:
                bad.append({"field": name, "message": f"action {problem}"})
        elif key in ("from", "to"):
            try:
                out[key] = format_ts(parse_rfc3339(raw).astimezone(UTC))
            except ValueError as exc:
                bad.append({"field": name, "message": f"{key} {exc}"})
            except OverflowError:
                bad.append({"field": name, "message": f"{key} is out of range"})
        else:
            out[key] = raw
    if "from" in out and "to" in out and out["from"] >= out["to"]:
        bad.append({"field": f"{field}.to", "message": "to must be after from"})
    if not value:
        known = ", ".join(FILTER_KEYS)
        bad.append({"field": field, "message": f"{field} needs at least one of {known}"})
    return out, bad


async def subject_held(conn: asyncpg.Connection, workspace_id: str, actor_id: str) -> list[str]:
    """Ids of the active holds that name ``actor_id`` or match any event of that actor.

    Erasure MUST refuse a subject for whom this is not empty: crypto-shredding
    a held event's personal fields destroys what the hold keeps.
    """
    rows = await conn.fetch(
        "SELECT h.id FROM legal_holds h WHERE h.workspace_id = $1 AND h.released_at IS NULL"
        " AND (h.filter->>'actor_id' = $2 OR EXISTS (SELECT 1 FROM events e"
        "  WHERE e.workspace_id = $1 AND e.actor_id = $2 AND chainlog_hold_matches(h.filter, e)))"
        " ORDER BY h.created_at, h.id",
        workspace_id,
        actor_id,
    )
    return [str(r["id"]) for r in rows]


async def held_count(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: str, hold_id: str
) -> int:
    """How many stored events the hold matches now (0 once released)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM legal_holds h JOIN events e ON e.workspace_id = h.workspace_id"
            " AND chainlog_hold_matches(h.filter, e)"
            " WHERE h.id = $1 AND h.workspace_id = $2 AND h.released_at IS NULL",
            hold_id,
            workspace_id,
        )
    )


async def kept_by_hold(
    conn: asyncpg.Connection, workspace_id: str, upto: int
) -> list[dict[str, Any]]:
    """For each active hold matching an event at or below ``upto``: its id, name and count.

    What retention reports it kept and why; an event two holds match counts in both.
    """
    rows = await conn.fetch(
        "SELECT h.id, h.name, count(*) AS kept FROM legal_holds h JOIN events e"
        " ON e.workspace_id = h.workspace_id AND chainlog_hold_matches(h.filter, e)"
        " WHERE h.workspace_id = $1 AND h.released_at IS NULL AND e.seq <= $2"
        " GROUP BY h.id, h.name, h.created_at ORDER BY h.created_at, h.id",
        workspace_id,
        upto,
    )
    return [{"id": str(r["id"]), "name": r["name"], "kept": int(r["kept"])} for r in rows]
