"""Log streams: the management API (admin key).

``{"name", "type", "config": {...}, "filter": {"actions": [...], "tenant_ids": [...],
"checkpoints": bool}, "enabled"}``; ``checkpoints: true`` also sends each new
signed checkpoint of the workspace (docs/proofs.md, "Keeping a witness").
Secret config fields (tokens, keys, passwords, signing secrets) are sealed
with the secret box, bound to the stream's id, and never returned; an
``http`` stream without a ``secret`` gets a ``whsec_`` one, shown once.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx
import orjson

from libs.common import errors
from libs.common.patterns import check_pattern
from libs.common.plans import Plan, enforce
from libs.common.secretbox import SecretBox
from libs.common.ssrf import GuardedTransport, UnsafeDestination, check_endpoint
from libs.common.timeutil import format_ts, format_ts_or_none, now_ts, uuid7
from services.alerter.webhook import new_endpoint_secret
from services.ingest.manage import Change, bad, parse_uuid
from services.streamer.destinations import DESTINATIONS

FIELDS = ("name", "type", "config", "filter", "enabled")
MAX_TENANTS = 100
COLUMNS = (
    "s.id, s.name, s.type, s.config, s.filter, s.enabled, s.status, s.last_error,"
    " s.last_error_at, s.consecutive_failures, s.created_at, s.updated_at,"
    " c.last_seq, c.delivered"
)
FROM = " FROM log_streams s LEFT JOIN log_stream_cursors c ON c.stream_id = s.id"


def _filter(value: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [bad("filter", "filter must be an object with actions and/or tenant_ids")]
    v = [
        bad(f"filter.{k}", f"{k} is not a filter (actions, tenant_ids, checkpoints)")
        for k in value
        if k not in ("actions", "tenant_ids", "checkpoints")
    ]
    out: dict[str, Any] = {}
    actions = value.get("actions")
    if actions is not None:
        if not isinstance(actions, list) or not actions or len(actions) > 50:
            v.append(bad("filter.actions", "actions must be a list of 1 to 50 action patterns"))
        else:
            for i, p in enumerate(actions):
                problem = check_pattern(p)
                if problem:
                    v.append(bad(f"filter.actions[{i}]", problem))
            out["actions"] = actions
    tenants = value.get("tenant_ids")
    if tenants is not None:
        if (
            not isinstance(tenants, list)
            or not tenants
            or len(tenants) > MAX_TENANTS
            or not all(isinstance(t, str) and 0 < len(t) <= 256 for t in tenants)
        ):
            v.append(
                bad(
                    "filter.tenant_ids",
                    f"tenant_ids must be a list of 1 to {MAX_TENANTS} tenant ids",
                )
            )
        else:
            out["tenant_ids"] = tenants
    checkpoints = value.get("checkpoints")
    if checkpoints is not None:
        if not isinstance(checkpoints, bool):
            v.append(bad("filter.checkpoints", "checkpoints must be true or false"))
        elif checkpoints:
            out["checkpoints"] = True
    return out, v


def _values(
    body: Any, *, current: dict[str, Any] | None
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Checked fields; for a PATCH, ``current`` is the stream's type and full config."""
    if not isinstance(body, dict):
        return {}, [bad("body", "the body must be a JSON object")]
    v = [bad(k, f"{k} is not a field of a log stream") for k in body if k not in FIELDS]
    out: dict[str, Any] = {}
    if current is None:
        for required in ("name", "type", "config"):
            if required not in body:
                v.append(bad(required, f"{required} is required"))
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"].strip() or len(body["name"]) > 200:
            v.append(bad("name", "name must be a non-empty string of at most 200 characters"))
        else:
            out["name"] = body["name"].strip()
    kind = current["type"] if current else body.get("type")
    if current is not None and "type" in body and body["type"] != kind:
        v.append(bad("type", "the type of a stream cannot change; create another stream"))
    elif kind not in DESTINATIONS:
        v.append(bad("type", "type must be one of: " + ", ".join(sorted(DESTINATIONS))))
    else:
        out["type"] = kind
    if "config" in body and kind in DESTINATIONS:
        config = body["config"]
        if current is not None and isinstance(config, dict):
            # Secrets not sent again are kept.
            config = {**current["config"], **config}
        checked, problems = DESTINATIONS[kind].validate(config)
        v.extend(problems)
        out["config"] = checked
    if "filter" in body:
        flt, problems = _filter(body["filter"])
        v.extend(problems)
        out["filter"] = flt
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            v.append(bad("enabled", "enabled must be true or false"))
        else:
            out["enabled"] = body["enabled"]
    return out, v


def _split(kind: str, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    secret_keys = DESTINATIONS[kind].SECRET_FIELDS
    return (
        {k: val for k, val in config.items() if k not in secret_keys},
        {k: val for k, val in config.items() if k in secret_keys},
    )


def render(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "name": r["name"],
        "type": r["type"],
        "config": orjson.loads(r["config"]),
        "filter": orjson.loads(r["filter"]),
        "enabled": r["enabled"],
        "status": r["status"] if r["enabled"] else "disabled",
        "last_error": r["last_error"],
        "last_error_at": format_ts_or_none(r["last_error_at"]),
        "consecutive_failures": r["consecutive_failures"],
        "cursor": {"last_seq": r["last_seq"] or 0, "delivered": r["delivered"] or 0},
        "created_at": format_ts(r["created_at"]),
        "updated_at": format_ts(r["updated_at"]),
    }


async def _reachable(kind: str, config: dict[str, Any], allow_private: bool) -> None:
    """The destination's host, resolved, must not be private (unless allowed): 422 on config."""
    try:
        await check_endpoint(DESTINATIONS[kind].endpoint(config), allow_private=allow_private)
    except UnsafeDestination as exc:
        raise errors.validation_failed([bad("config", exc.reason)]) from None
    except ValueError as exc:
        raise errors.validation_failed(
            [bad("config", f"cannot resolve the destination: {exc}")]
        ) from None


async def create(
    conn: asyncpg.Connection,
    box: SecretBox,
    workspace_id: str,
    body: Any,
    plans: dict[str, Plan],
    *,
    allow_private: bool,
) -> Change:
    if (
        isinstance(body, dict)
        and body.get("type") == "http"
        and isinstance(body.get("config"), dict)
    ):
        if not body["config"].get("secret"):
            body = {**body, "config": {**body["config"], "secret": new_endpoint_secret()}}
    values, v = _values(body, current=None)
    if v:
        raise errors.validation_failed(v)
    await _reachable(values["type"], values["config"], allow_private)
    await enforce(conn, workspace_id, "log_streams", plans)
    stream_id = uuid7()
    public, secrets = _split(values["type"], values["config"])
    sealed = box.encrypt(orjson.dumps(secrets).decode(), context=f"log_stream:{stream_id}")
    await conn.execute(
        "INSERT INTO log_streams (id, workspace_id, name, type, config, secrets_enc, filter, enabled)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8)",
        stream_id,
        workspace_id,
        values["name"],
        values["type"],
        orjson.dumps(public).decode(),
        sealed,
        orjson.dumps(values.get("filter", {})).decode(),
        values.get("enabled", True),
    )
    # A new stream starts at the workspace's current head: it forwards what
    # comes from now on (documented in docs/log-streams.md).
    head = await conn.fetchval(
        "SELECT coalesce(max(seq), 0) FROM events WHERE workspace_id = $1", workspace_id
    )
    await conn.execute(
        "INSERT INTO log_stream_cursors (stream_id, last_seq) VALUES ($1, $2)", stream_id, head
    )
    shown = render(await _row(conn, workspace_id, stream_id))
    result = shown
    if values["type"] == "http":
        result = {**shown, "secret": secrets["secret"]}  # shown once
    return Change(result, stream_id, after=shown)


async def _row(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: str,
    stream_id: str,
    *,
    lock: bool = False,
) -> asyncpg.Record:
    sid = parse_uuid(stream_id)
    row = None
    if sid is not None:
        row = await conn.fetchrow(
            f"SELECT {COLUMNS}, s.secrets_enc{FROM}"
            " WHERE s.id = $1 AND s.workspace_id = $2 AND s.deleted_at IS NULL"
            + (" FOR UPDATE OF s" if lock else ""),
            sid,
            workspace_id,
        )
    if row is None:
        raise errors.not_found(f"no log stream {stream_id} in this workspace")
    return row


async def get(pool: asyncpg.Pool, workspace_id: str, stream_id: str) -> dict[str, Any]:
    return render(await _row(pool, workspace_id, stream_id))


async def list_streams(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        f"SELECT {COLUMNS}{FROM} WHERE s.workspace_id = $1 AND s.deleted_at IS NULL"
        " ORDER BY s.created_at, s.id",
        workspace_id,
    )
    return {"data": [render(r) for r in rows]}


def full_config(box: SecretBox, row: asyncpg.Record) -> dict[str, Any]:
    """The stream's config with its secrets, for sending (never for answers)."""
    secrets = {}
    if row["secrets_enc"] is not None:
        secrets = orjson.loads(box.decrypt(row["secrets_enc"], context=f"log_stream:{row['id']}"))
    config: dict[str, Any] = {**orjson.loads(row["config"]), **secrets}
    return config


async def update(
    conn: asyncpg.Connection,
    box: SecretBox,
    workspace_id: str,
    stream_id: str,
    body: Any,
    *,
    allow_private: bool,
) -> Change:
    row = await _row(conn, workspace_id, stream_id, lock=True)
    before = render(row)
    values, v = _values(body, current={"type": row["type"], "config": full_config(box, row)})
    if v:
        raise errors.validation_failed(v)
    if "config" in values:
        await _reachable(row["type"], values["config"], allow_private)
    sets, args = [], [row["id"]]

    def put(column: str, value: Any, cast: str = "") -> None:
        args.append(value)
        sets.append(f"{column} = ${len(args)}{cast}")

    if "name" in values:
        put("name", values["name"])
    if "config" in values:
        public, secrets = _split(row["type"], values["config"])
        put("config", orjson.dumps(public).decode(), "::jsonb")
        put(
            "secrets_enc",
            box.encrypt(orjson.dumps(secrets).decode(), context=f"log_stream:{row['id']}"),
        )
    if "filter" in values:
        put("filter", orjson.dumps(values["filter"]).decode(), "::jsonb")
    if "enabled" in values:
        put("enabled", values["enabled"])
        if values["enabled"]:
            # Re-enabled: it catches up from its cursor.
            sets += ["status = 'active'", "consecutive_failures = 0"]
    if sets:
        await conn.execute(
            f"UPDATE log_streams SET {', '.join(sets)}, updated_at = now() WHERE id = $1", *args
        )
    after = render(await _row(conn, workspace_id, stream_id))
    return Change(after, after["id"], before=before, after=after)


async def delete(conn: asyncpg.Connection, workspace_id: str, stream_id: str) -> Change:
    row = await _row(conn, workspace_id, stream_id, lock=True)
    await conn.execute(
        "UPDATE log_streams SET deleted_at = now(), enabled = false WHERE id = $1", row["id"]
    )
    return Change(None, str(row["id"]), before=render(row))


def test_event(workspace_id: str) -> dict[str, Any]:
    """A synthetic event for ``POST /log-streams/{id}/test`` (not in the chain)."""
    return {
        "id": uuid7(),
        "workspace_id": workspace_id,
        "seq": 0,
        "prev_hash": "0" * 64,
        "hash": "0" * 64,
        "received_at": now_ts(),
        "action": "chainlog.stream_test",
        "actor_id": "chainlog",
        "metadata": {"test": True, "at": time.time()},
        "ip_country": None,
        "ip_city": None,
    }


async def send_test(
    pool: asyncpg.Pool, box: SecretBox, workspace_id: str, stream_id: str, *, allow_private: bool
) -> dict[str, Any]:
    row = await _row(pool, workspace_id, stream_id)
    destination = DESTINATIONS[row["type"]]
    config = full_config(box, row)
    try:
        await check_endpoint(destination.endpoint(config), allow_private=allow_private)
    except ValueError as exc:
        reason = exc.reason if isinstance(exc, UnsafeDestination) else str(exc)
        return {"outcome": "failed", "status": None, "error": f"refused: {reason}"}
    transport = GuardedTransport(
        allow_private=allow_private, verify=bool(config.get("verify_tls", True))
    )
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        event = test_event(workspace_id)
        result = await destination.send(client, config, [event], batch_id=f"test:{event['id']}")
    return {"outcome": result.outcome, "status": result.status, "error": result.error}
