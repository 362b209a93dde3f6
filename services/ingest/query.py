"""Reading events back: filters, cursor paging, one event.

Every event served is the stored canonical body (what was hashed) plus
``hash`` and the derived, unhashed ``ip_country`` and ``ip_city`` (and
``personal`` for an event with sealed fields, docs/privacy.md).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from libs.common import errors, subjects
from libs.common.exportformat import PERSONAL_COLUMN
from libs.common.sealing import MARK, personal
from libs.common.secretbox import SecretBox
from libs.common.timeutil import parse_rfc3339
from services.ingest.verify import MAX_SEQ

MAX_LIMIT = 100
#: The largest seq PostgreSQL can hold (bigint); a larger one is a client error.
DEFAULT_LIMIT = 25

FILTERS = (
    "action",
    "actor_id",
    "resource",
    "resource_id",
    "tenant_id",
    "session_id",
    "ip_country",
    "action_category",
    "schema_violation",
    "target_type",
    "target_id",
    "search",
    "from",
    "to",
    "cursor",
    "limit",
    "order",
)
#: ``order``: ``seq`` (the default: newest received first) or ``occurred``
#: (latest ``occurred_at`` first, then seq). With a time range, ``occurred``
#: reads the window from its index in order, where ``seq`` order has to
#: look past every newer event first: the console asks for it then.
ORDERS = ("seq", "occurred")


def _like_pattern(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def encode_cursor(seq: int, occurred_us: int | None = None) -> str:
    doc: dict[str, int] = {"s": seq} if occurred_us is None else {"s": seq, "o": occurred_us}
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


def _cursor_doc(text: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        seq = doc["s"]
        if not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
            raise ValueError
        if "o" in doc and not isinstance(doc["o"], int):
            raise ValueError
        return dict(doc)
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise errors.validation_failed(
            [{"field": "cursor", "message": "cursor is not one this API returned"}]
        ) from None


def decode_cursor(text: str) -> int:
    return int(_cursor_doc(text)["s"])


def _epoch_us(when: datetime) -> int:
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_limit(params: Mapping[str, str], violations: list[dict[str, str]]) -> int:
    """The ``limit`` of a page (default 25, 1 to 100); a bad one is added to ``violations``."""
    if not params.get("limit"):
        return DEFAULT_LIMIT
    try:
        limit = int(params["limit"])
        if 1 <= limit <= MAX_LIMIT:
            return limit
    except ValueError:
        pass
    violations.append(
        {"field": "limit", "message": f"limit must be an integer from 1 to {MAX_LIMIT}"}
    )
    return DEFAULT_LIMIT


#: The filters of an export: every event filter, without paging.
EXPORT_FILTERS = tuple(f for f in FILTERS if f not in ("cursor", "limit", "order"))


def filter_clauses(
    workspace_id: str, params: Mapping[str, str], allowed: tuple[str, ...] = FILTERS
) -> tuple[list[str], list[Any], list[dict[str, str]]]:
    """The WHERE conditions (joined by AND) of ``params``, their arguments, and every bad filter."""
    unknown = [k for k in params if k not in allowed]
    violations = [{"field": k, "message": f"{k} is not a known filter"} for k in unknown]
    where = ["workspace_id = $1"]
    args: list[Any] = [workspace_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    for name in (
        "actor_id",
        "resource",
        "resource_id",
        "tenant_id",
        "session_id",
        "action_category",
    ):
        if params.get(name):
            where.append(f"{name} = {arg(params[name])}")
    flag = params.get("schema_violation")
    if flag:
        if flag in ("true", "false"):
            where.append("schema_violation" if flag == "true" else "NOT schema_violation")
        else:
            violations.append(
                {"field": "schema_violation", "message": "schema_violation must be true or false"}
            )
    country = params.get("ip_country")
    if country:
        if len(country) == 2 and country.isascii() and country.isalpha():
            where.append(f"ip_country = {arg(country.upper())}")
        else:
            violations.append(
                {
                    "field": "ip_country",
                    "message": "ip_country must be a two-letter ISO 3166 country code",
                }
            )
    action = params.get("action")
    if action:
        if "*" in action:
            where.append(f"action LIKE {arg(_like_pattern(action))}")
        else:
            where.append(f"action = {arg(action)}")
    target: dict[str, str] = {}
    if params.get("target_type"):
        target["type"] = params["target_type"]
    if params.get("target_id"):
        target["id"] = params["target_id"]
    if target:
        where.append(f"targets @> {arg(orjson.dumps([target]).decode())}::jsonb")
    if params.get("search"):
        where.append(f"search_text LIKE {arg('%' + _like_pattern(params['search'].lower()) + '%')}")
    for name, op in (("from", ">="), ("to", "<")):
        if params.get(name):
            try:
                # To UTC here, as the driver would: an instant outside what a
                # datetime holds in UTC (year 1 minus an offset) is a 422, not a 500.
                when = parse_rfc3339(params[name]).astimezone(UTC)
            except ValueError as exc:
                violations.append({"field": name, "message": f"{name} {exc}"})
            except OverflowError:
                violations.append({"field": name, "message": f"{name} is out of range"})
            else:
                where.append(f"occurred_at {op} {arg(when)}")
    return where, args, violations


def build_query(
    workspace_id: str, params: Mapping[str, str], *, page_size: int | None = None
) -> tuple[str, list[Any], int]:
    """SQL for a page of events, newest first; returns (sql, args, limit).

    It reads one row more than ``limit`` (whether there is another page).
    ``page_size`` replaces the ``limit`` parameter, for callers that page
    through more than a client may ask for at once.
    """
    where, args, violations = filter_clauses(workspace_id, params)
    order = params.get("order") or "seq"
    if order not in ORDERS:
        violations.append({"field": "order", "message": "order must be seq or occurred"})
    if params.get("cursor"):
        cursor = _cursor_doc(params["cursor"])
        args.append(cursor["s"])
        if order == "occurred":
            if "o" not in cursor:
                violations.append(
                    {"field": "cursor", "message": "this cursor is for order=seq, not occurred"}
                )
            else:
                args.append(_EPOCH + timedelta(microseconds=cursor["o"]))
                where.append(f"(occurred_at, seq) < (${len(args)}, ${len(args) - 1})")
        else:
            where.append(f"seq < ${len(args)}")
    limit = parse_limit(params, violations) if page_size is None else page_size
    if violations:
        raise errors.validation_failed(violations)
    by = "occurred_at DESC, seq DESC" if order == "occurred" else "seq DESC"
    sql = (
        "SELECT seq, body, hash, ip_country, ip_city, occurred_at FROM events WHERE "
        + " AND ".join(where)
        + f" ORDER BY {by} LIMIT {limit + 1}"
    )
    return sql, args, limit


def next_cursor(row: asyncpg.Record, params: Mapping[str, str]) -> str:
    """The cursor of the page after ``row``, in the page's order."""
    if params.get("order") == "occurred":
        return encode_cursor(row["seq"], _epoch_us(row["occurred_at"]))
    return encode_cursor(row["seq"])


def render(row: asyncpg.Record) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(row["body"])
    event["hash"] = row["hash"].hex()
    event["ip_country"] = row["ip_country"]
    event["ip_city"] = row["ip_city"]
    return event


async def opened(
    pool: asyncpg.Pool,
    box: SecretBox | None,
    workspace_id: str,
    rows: Sequence[asyncpg.Record],
) -> list[dict[str, Any]]:
    """``render`` of each row, with ``personal`` where the event holds sealed fields.

    ``personal`` gives each sealed field's readable value, or ``[erased]``
    once its subject was erased (docs/privacy.md); the fields themselves
    stay as hashed. One query fetches the page's keys.
    """
    events = [render(r) for r in rows]
    if box is None:
        return events
    sealed = [e for e, r in zip(events, rows, strict=True) if MARK in r["body"]]
    if sealed:
        keys = await subjects.keys_for_events(pool, box, workspace_id, sealed)
        for event in sealed:
            shown = personal(event, workspace_id, keys)
            if shown is not None:
                event[PERSONAL_COLUMN] = shown
    return events


async def list_events(
    pool: asyncpg.Pool,
    workspace_id: str,
    params: Mapping[str, str],
    box: SecretBox | None = None,
) -> dict[str, Any]:
    sql, args, limit = build_query(workspace_id, params)
    rows = await pool.fetch(sql, *args)
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "data": await opened(pool, box, workspace_id, rows),
        "pagination": {
            "has_more": has_more,
            "next_cursor": next_cursor(rows[-1], params) if has_more else None,
        },
    }


async def get_event(
    pool: asyncpg.Pool, workspace_id: str, event_id: str, box: SecretBox | None = None
) -> dict[str, Any]:
    try:
        row = await pool.fetchrow(
            "SELECT seq, body, hash, ip_country, ip_city FROM events"
            " WHERE id = $1::uuid AND workspace_id = $2",
            event_id,
            workspace_id,
        )
    except asyncpg.DataError:
        row = None
    if row is None:
        raise errors.not_found(f"no event {event_id} in this workspace")
    return (await opened(pool, box, workspace_id, [row]))[0]
