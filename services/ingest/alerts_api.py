"""Alert rules, webhook endpoints and alerts: the management API.

Rules and endpoints need an ``admin`` key; reading alerts needs ``read``.
Every refusal is a 422 naming the field (``conditions.threshold``,
``webhook_endpoint_ids[1]``). Webhook secrets are shown once, at creation,
and stored encrypted.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import asyncpg
import orjson

from libs.common import errors
from libs.common.plans import Plan, enforce
from libs.common.secretbox import SecretBox
from libs.common.ssrf import UnsafeDestination, check_url, check_url_syntax
from libs.common.timeutil import format_ts, format_ts_or_none, parse_rfc3339, uuid7
from services.alerter.delivery import alert_document
from services.alerter.rules import RULE_TYPES, validate_conditions
from services.alerter.rules.base import ConditionsInvalid
from services.alerter.webhook import new_endpoint_secret
from services.ingest.manage import Change, parse_uuid
from services.ingest.manage import bad as _bad
from services.ingest.query import parse_limit

CHANNELS = ("email", "webhook")
DEFAULT_COOLDOWN_S = 300
MAX_COOLDOWN_S = 7 * 86_400
MAX_RECIPIENTS = 50
MAX_NAME = 200
_EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+\Z|^[^@\s<>,;\"]+@localhost\Z")
RULE_FIELDS = (
    "name",
    "rule_type",
    "conditions",
    "channels",
    "enabled",
    "cooldown_seconds",
    "email_recipients",
    "webhook_endpoint_ids",
)

Violations = list[dict[str, str]]


def _rule_values(body: Any, *, partial: bool) -> tuple[dict[str, Any], Violations]:
    """Checked rule fields from a request body; every problem is reported."""
    if not isinstance(body, dict):
        return {}, [_bad("body", "the body must be a JSON object")]
    v: Violations = [
        _bad(k, f"{k} is not a field of an alert rule") for k in body if k not in RULE_FIELDS
    ]
    out: dict[str, Any] = {}
    if not partial:
        for required in ("name", "rule_type", "conditions", "channels"):
            if required not in body:
                v.append(_bad(required, f"{required} is required"))
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            v.append(
                _bad("name", f"name must be a non-empty string of at most {MAX_NAME} characters")
            )
        else:
            out["name"] = name.strip()
    if "rule_type" in body:
        if body["rule_type"] not in RULE_TYPES:
            v.append(_bad("rule_type", "rule_type must be one of " + ", ".join(sorted(RULE_TYPES))))
        else:
            out["rule_type"] = body["rule_type"]
    if "conditions" in body and "rule_type" in out:
        try:
            out["conditions"] = validate_conditions(out["rule_type"], body["conditions"])
        except ConditionsInvalid as exc:
            v.extend(_bad(f, m) for f, m in exc.errors)
    if "channels" in body:
        channels = body["channels"]
        if (
            not isinstance(channels, list)
            or not channels
            or any(c not in CHANNELS for c in channels)
            or len(set(channels)) != len(channels)
        ):
            v.append(
                _bad(
                    "channels",
                    "channels must be a non-empty list of distinct values from: email, webhook",
                )
            )
        else:
            out["channels"] = channels
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            v.append(_bad("enabled", "enabled must be true or false"))
        else:
            out["enabled"] = body["enabled"]
    if "cooldown_seconds" in body:
        c = body["cooldown_seconds"]
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= MAX_COOLDOWN_S:
            v.append(
                _bad(
                    "cooldown_seconds",
                    f"cooldown_seconds must be an integer from 0 to {MAX_COOLDOWN_S}",
                )
            )
        else:
            out["cooldown_seconds"] = c
    if "email_recipients" in body:
        r = body["email_recipients"]
        if not isinstance(r, list) or len(r) > MAX_RECIPIENTS:
            v.append(
                _bad(
                    "email_recipients",
                    f"email_recipients must be a list of at most {MAX_RECIPIENTS} addresses",
                )
            )
        else:
            for i, addr in enumerate(r):
                if not isinstance(addr, str) or len(addr) > 254 or not _EMAIL_RE.match(addr):
                    v.append(_bad(f"email_recipients[{i}]", "must be an email address"))
            out["email_recipients"] = r
    if "webhook_endpoint_ids" in body:
        ids = body["webhook_endpoint_ids"]
        if ids is None:
            out["webhook_endpoint_ids"] = None
        elif not isinstance(ids, list):
            v.append(
                _bad(
                    "webhook_endpoint_ids",
                    "webhook_endpoint_ids must be a list of endpoint ids, or null for all",
                )
            )
        else:
            parsed = []
            for i, raw in enumerate(ids):
                u = parse_uuid(raw)
                if u is None:
                    v.append(_bad(f"webhook_endpoint_ids[{i}]", "must be a webhook endpoint id"))
                parsed.append(u)
            out["webhook_endpoint_ids"] = parsed
    return out, v


async def _check_endpoints(
    conn: asyncpg.Connection, workspace_id: str, ids: list[str]
) -> Violations:
    rows = await conn.fetch(
        "SELECT id FROM webhook_endpoints WHERE workspace_id = $1 AND id = ANY($2::uuid[])"
        " AND deleted_at IS NULL",
        workspace_id,
        ids,
    )
    known = {str(r["id"]) for r in rows}
    return [
        _bad(f"webhook_endpoint_ids[{i}]", f"no webhook endpoint {e} in this workspace")
        for i, e in enumerate(ids)
        if e is not None and e not in known
    ]


RULE_COLUMNS = (
    "id, name, rule_type, conditions, channels, email_recipients, webhook_endpoint_ids,"
    " cooldown_seconds, enabled, version, created_at, updated_at"
)


def render_rule(r: asyncpg.Record) -> dict[str, Any]:
    ids = r["webhook_endpoint_ids"]
    return {
        "id": str(r["id"]),
        "name": r["name"],
        "rule_type": r["rule_type"],
        "conditions": orjson.loads(r["conditions"]),
        "channels": list(r["channels"]),
        "email_recipients": list(r["email_recipients"]),
        "webhook_endpoint_ids": None if ids is None else [str(i) for i in ids],
        "cooldown_seconds": r["cooldown_seconds"],
        "enabled": r["enabled"],
        "version": r["version"],
        "created_at": format_ts(r["created_at"]),
        "updated_at": format_ts(r["updated_at"]),
    }


async def create_rule(
    conn: asyncpg.Connection, workspace_id: str, body: Any, plans: dict[str, Plan]
) -> Change:
    values, v = _rule_values(body, partial=False)
    if values.get("webhook_endpoint_ids"):
        v.extend(await _check_endpoints(conn, workspace_id, values["webhook_endpoint_ids"]))
    if v:
        raise errors.validation_failed(v)
    await enforce(conn, workspace_id, "alert_rules", plans)
    row = await conn.fetchrow(
        "INSERT INTO alert_rules (id, workspace_id, name, rule_type, conditions, channels,"
        " email_recipients, webhook_endpoint_ids, cooldown_seconds, enabled)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::uuid[], $9, $10)"
        f" RETURNING {RULE_COLUMNS}",
        uuid7(),
        workspace_id,
        values["name"],
        values["rule_type"],
        orjson.dumps(values["conditions"]).decode(),
        values["channels"],
        values.get("email_recipients", []),
        values.get("webhook_endpoint_ids"),
        values.get("cooldown_seconds", DEFAULT_COOLDOWN_S),
        values.get("enabled", True),
    )
    rule = render_rule(row)
    return Change(rule, rule["id"], after=rule)


async def _rule_row(
    conn: asyncpg.Connection, workspace_id: str, rule_id: str, *, lock: bool = False
) -> asyncpg.Record:
    rid = parse_uuid(rule_id)
    row = None
    if rid is not None:
        row = await conn.fetchrow(
            f"SELECT {RULE_COLUMNS} FROM alert_rules"
            " WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL"
            + (" FOR UPDATE" if lock else ""),
            rid,
            workspace_id,
        )
    if row is None:
        raise errors.not_found(f"no alert rule {rule_id} in this workspace")
    return row


async def get_rule(pool: asyncpg.Pool, workspace_id: str, rule_id: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return render_rule(await _rule_row(conn, workspace_id, rule_id))


async def list_rules(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE workspace_id = $1 AND deleted_at IS NULL"
        " ORDER BY created_at, id",
        workspace_id,
    )
    return {"data": [render_rule(r) for r in rows]}


async def update_rule(
    conn: asyncpg.Connection, workspace_id: str, rule_id: str, body: Any
) -> Change:
    values, v = _rule_values(body, partial=True)
    current = await _rule_row(conn, workspace_id, rule_id, lock=True)
    if isinstance(body, dict) and "conditions" in body and "rule_type" not in body:
        try:
            values["conditions"] = validate_conditions(current["rule_type"], body["conditions"])
        except ConditionsInvalid as exc:
            v.extend(_bad(f, m) for f, m in exc.errors)
    elif isinstance(body, dict) and "rule_type" in values and "conditions" not in body:
        v.append(_bad("conditions", "conditions are required when rule_type changes"))
    if values.get("webhook_endpoint_ids"):
        v.extend(await _check_endpoints(conn, workspace_id, values["webhook_endpoint_ids"]))
    if v:
        raise errors.validation_failed(v)
    before = render_rule(current)
    if not values:
        return Change(before, before["id"], before=before, after=before)
    evaluated_changed = ("rule_type" in values and values["rule_type"] != current["rule_type"]) or (
        "conditions" in values and values["conditions"] != orjson.loads(current["conditions"])
    )
    sets = []
    args: list[Any] = [current["id"]]
    for name, value in values.items():
        cast = {"conditions": "::jsonb", "webhook_endpoint_ids": "::uuid[]"}.get(name, "")
        args.append(orjson.dumps(value).decode() if name == "conditions" else value)
        sets.append(f"{name} = ${len(args)}{cast}")
    if evaluated_changed:
        sets.append("version = version + 1")
    row = await conn.fetchrow(
        f"UPDATE alert_rules SET {', '.join(sets)}, updated_at = now() WHERE id = $1"
        f" RETURNING {RULE_COLUMNS}",
        *args,
    )
    after = render_rule(row)
    return Change(after, after["id"], before=before, after=after)


async def delete_rule(conn: asyncpg.Connection, workspace_id: str, rule_id: str) -> Change:
    row = await _rule_row(conn, workspace_id, rule_id, lock=True)
    await conn.execute(
        "UPDATE alert_rules SET deleted_at = now(), enabled = false WHERE id = $1", row["id"]
    )
    before = render_rule(row)
    return Change(None, before["id"], before=before)


# -- webhook endpoints ---------------------------------------------------------


ENDPOINT_COLUMNS = "id, url, description, checkpoints, created_at"


def render_endpoint(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "url": r["url"],
        "description": r["description"],
        "checkpoints": r["checkpoints"],
        "created_at": format_ts(r["created_at"]),
    }


async def create_endpoint(
    conn: asyncpg.Connection,
    box: SecretBox,
    workspace_id: str,
    body: Any,
    *,
    allow_private: bool,
) -> Change:
    if not isinstance(body, dict):
        raise errors.validation_failed([_bad("body", "the body must be a JSON object")])
    v = [
        _bad(k, f"{k} is not a field of a webhook endpoint")
        for k in body
        if k not in ("url", "description", "checkpoints")
    ]
    url = body.get("url")
    description = body.get("description", "")
    checkpoints = body.get("checkpoints", False)
    if not isinstance(checkpoints, bool):
        v.append(_bad("checkpoints", "checkpoints must be true or false"))
    if not isinstance(description, str) or len(description) > 500:
        v.append(_bad("description", "description must be a string of at most 500 characters"))
    if not isinstance(url, str):
        v.append(_bad("url", "url is required: the https URL that receives alerts"))
    else:
        try:
            url = check_url_syntax(url)
            await check_url(url, allow_private=allow_private)
        except UnsafeDestination as exc:
            v.append(_bad("url", exc.reason))
        except ValueError as exc:
            v.append(_bad("url", f"url cannot be resolved: {exc}"))
    if v:
        raise errors.validation_failed(v)
    endpoint_id = uuid7()
    secret = new_endpoint_secret()
    row = await conn.fetchrow(
        "INSERT INTO webhook_endpoints"
        " (id, workspace_id, url, description, secret_enc, checkpoints)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENDPOINT_COLUMNS}",
        endpoint_id,
        workspace_id,
        url,
        description,
        box.encrypt(secret, context=f"webhook_endpoint:{endpoint_id}"),
        checkpoints,
    )
    shown = render_endpoint(row)
    # The only time the secret leaves the server; the admin log never holds it.
    return Change({**shown, "secret": secret}, shown["id"], after=shown)


async def list_endpoints(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints"
        " WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
        workspace_id,
    )
    return {"data": [render_endpoint(r) for r in rows]}


async def delete_endpoint(conn: asyncpg.Connection, workspace_id: str, endpoint_id: str) -> Change:
    eid = parse_uuid(endpoint_id)
    row = None
    if eid is not None:
        row = await conn.fetchrow(
            "UPDATE webhook_endpoints SET deleted_at = now()"
            " WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL"
            f" RETURNING {ENDPOINT_COLUMNS}",
            eid,
            workspace_id,
        )
    if row is None:
        raise errors.not_found(f"no webhook endpoint {endpoint_id} in this workspace")
    before = render_endpoint(row)
    return Change(None, before["id"], before=before)


# -- alerts ----------------------------------------------------------------------

ALERT_FILTERS = ("from", "to", "rule_type", "rule_id", "cursor", "limit")


def _encode_cursor(triggered_at: Any, alert_id: str) -> str:
    doc = {"t": format_ts(triggered_at), "i": alert_id}
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[Any, str]:
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        when = parse_rfc3339(doc["t"]).astimezone(UTC)
        alert_id = parse_uuid(doc["i"])
        if alert_id is None:
            raise ValueError
        return when, alert_id
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise errors.validation_failed(
            [_bad("cursor", "cursor is not one this API returned")]
        ) from None


async def list_alerts(
    pool: asyncpg.Pool, workspace_id: str, params: Mapping[str, str]
) -> dict[str, Any]:
    """Alerts, newest first, each with its deliveries and every attempt."""
    v = [_bad(k, f"{k} is not a known filter") for k in params if k not in ALERT_FILTERS]
    where = ["a.workspace_id = $1"]
    args: list[Any] = [workspace_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    for name, op in (("from", ">="), ("to", "<")):
        if params.get(name):
            try:
                when = parse_rfc3339(params[name]).astimezone(UTC)
            except (ValueError, OverflowError) as exc:
                v.append(_bad(name, f"{name} must be an RFC 3339 timestamp: {exc}"))
            else:
                where.append(f"a.triggered_at {op} {arg(when)}")
    if params.get("rule_type"):
        if params["rule_type"] not in RULE_TYPES:
            v.append(_bad("rule_type", "rule_type must be one of " + ", ".join(sorted(RULE_TYPES))))
        else:
            where.append(f"a.rule_type = {arg(params['rule_type'])}")
    if params.get("rule_id"):
        rid = parse_uuid(params["rule_id"])
        if rid is None:
            v.append(_bad("rule_id", "rule_id must be an alert rule id"))
        else:
            where.append(f"a.rule_id = {arg(rid)}")
    limit = parse_limit(params, v)
    if params.get("cursor"):
        when, alert_id = _decode_cursor(params["cursor"])
        where.append(f"(a.triggered_at, a.id) < ({arg(when)}, {arg(alert_id)}::uuid)")
    if v:
        raise errors.validation_failed(v)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT a.id, a.rule_id, a.rule_name, a.rule_type, a.event_id, a.reason,"
            " a.triggered_at FROM alerts a WHERE "
            + " AND ".join(where)
            + f" ORDER BY a.triggered_at DESC, a.id DESC LIMIT {limit + 1}",
            *args,
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        ids = [r["id"] for r in rows]
        deliveries = await conn.fetch(
            "SELECT id, alert_id, channel, webhook_endpoint_id, recipients, status, attempts,"
            " next_attempt_at, last_status, last_error, delivered_at"
            " FROM alert_deliveries WHERE alert_id = ANY($1::uuid[]) ORDER BY created_at, id",
            ids,
        )
        attempts = await conn.fetch(
            "SELECT delivery_id, attempt, at, status, error, duration_ms, outcome"
            " FROM alert_delivery_attempts WHERE delivery_id = ANY($1::uuid[])"
            " ORDER BY delivery_id, attempt",
            [d["id"] for d in deliveries],
        )
    by_delivery: dict[str, list[dict[str, Any]]] = {}
    for a in attempts:
        by_delivery.setdefault(str(a["delivery_id"]), []).append(
            {
                "attempt": a["attempt"],
                "at": format_ts(a["at"]),
                "status": a["status"],
                "error": a["error"],
                "duration_ms": a["duration_ms"],
                "outcome": a["outcome"],
            }
        )
    by_alert: dict[str, list[dict[str, Any]]] = {}
    for d in deliveries:
        did = str(d["id"])
        by_alert.setdefault(str(d["alert_id"]), []).append(
            {
                "id": did,
                "channel": d["channel"],
                "webhook_endpoint_id": None
                if d["webhook_endpoint_id"] is None
                else str(d["webhook_endpoint_id"]),
                "recipients": None if d["recipients"] is None else list(d["recipients"]),
                "status": d["status"],
                "attempts": by_delivery.get(did, []),
                "next_attempt_at": format_ts(d["next_attempt_at"])
                if d["status"] == "pending"
                else None,
                "delivered_at": format_ts_or_none(d["delivered_at"]),
                "last_status": d["last_status"],
                "last_error": d["last_error"],
            }
        )
    return {
        "data": [{**alert_document(r), "deliveries": by_alert.get(str(r["id"]), [])} for r in rows],
        "pagination": {
            "has_more": has_more,
            "next_cursor": _encode_cursor(rows[-1]["triggered_at"], str(rows[-1]["id"]))
            if has_more
            else None,
        },
    }
