"""Management of a workspace: API keys, members, IP allowlist, options, schemas.

Each mutating function runs on a connection inside the caller's
transaction and returns a :class:`Change`: the answer for the client, and
what the admin audit log records (``before``/``after``, never a secret).
Count limits of the plan are enforced in the same transaction
(``libs.common.plans.enforce`` locks the workspace row), so two requests
cannot both take the last slot.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from libs.common import errors, keys
from libs.common.plans import Plan, enforce, to_dict
from libs.common.timeutil import format_ts_or_none, uuid7
from services.ingest.schemas import validate_schema_definition
from services.ingest.tenancy import within

ROLES = ("owner", "admin", "viewer", "auditor")
SCHEMA_MODES = ("strict", "permissive")
_EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\Z")
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class Change:
    result: Any
    resource_id: str
    before: Any = None
    after: Any = None


def bad(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _object(body: Any, allowed: tuple[str, ...], what: str) -> list[dict[str, str]]:
    if not isinstance(body, dict):
        return [bad("body", "the body must be a JSON object")]
    return [bad(k, f"{k} is not a field of {what}") for k in body if k not in allowed]


def parse_uuid(text: Any) -> str | None:
    """A canonical UUID string, or None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


# -- API keys --------------------------------------------------------------------


def render_key(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "name": r["name"],
        "prefix": r["prefix"],
        "scopes": list(r["scopes"]),
        "created_at": format_ts_or_none(r["created_at"]),
        "last_used_at": format_ts_or_none(r["last_used_at"]),
        "revoked_at": format_ts_or_none(r["revoked_at"]),
    }


KEY_COLUMNS = "id, name, prefix, scopes, created_at, last_used_at, revoked_at"


async def create_key(
    conn: asyncpg.Connection, workspace_id: str, body: Any, plans: dict[str, Plan]
) -> Change:
    v = _object(body, ("name", "scopes"), "an API key")
    name = body.get("name") if isinstance(body, dict) else None
    scopes = body.get("scopes") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        v.append(bad("name", f"name must be a non-empty string of at most {MAX_NAME} characters"))
    if (
        not isinstance(scopes, list)
        or not scopes
        or any(s not in keys.SCOPES for s in scopes)
        or len(set(scopes)) != len(scopes)
    ):
        v.append(bad("scopes", "scopes must be a non-empty list of: " + ", ".join(keys.SCOPES)))
    elif conflict := keys.scope_conflict(scopes):
        v.append(bad("scopes", conflict))
    if v:
        raise errors.validation_failed(v)
    assert isinstance(name, str) and isinstance(scopes, list)
    await enforce(conn, workspace_id, "api_keys", plans)
    new = await keys.create_key(conn, workspace_id, name.strip(), scopes)
    row = await conn.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1", new.id)
    shown = render_key(row)
    # The only time the key leaves the server; the log holds its prefix only.
    return Change({**shown, "key": new.key}, new.id, after=shown)


async def list_keys(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        f"SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id",
        workspace_id,
    )
    return {"data": [render_key(r) for r in rows]}


async def revoke_key(conn: asyncpg.Connection, workspace_id: str, key_id: str) -> Change:
    kid = parse_uuid(key_id)
    row = None
    if kid is not None:
        row = await conn.fetchrow(
            f"UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND workspace_id = $2"
            f" AND revoked_at IS NULL RETURNING {KEY_COLUMNS}",
            kid,
            workspace_id,
        )
    if row is None:
        raise errors.not_found(f"no active API key {key_id} in this workspace")
    after = render_key(row)
    return Change(after, str(row["id"]), before={**after, "revoked_at": None}, after=after)


# -- members ---------------------------------------------------------------------


def render_member(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "email": r["email"],
        "role": r["role"],
        "created_at": format_ts_or_none(r["created_at"]),
    }


async def list_members(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT email, role, created_at FROM workspace_members WHERE workspace_id = $1"
        " ORDER BY created_at, email",
        workspace_id,
    )
    return {"data": [render_member(r) for r in rows]}


def _check_member(body: Any, *, need_email: bool) -> tuple[str | None, str | None]:
    v = _object(body, ("email", "role") if need_email else ("role",), "a member")
    email = body.get("email") if isinstance(body, dict) else None
    role = body.get("role") if isinstance(body, dict) else None
    if need_email and (
        not isinstance(email, str) or len(email) > 254 or not _EMAIL_RE.match(email)
    ):
        v.append(bad("email", "email must be an email address"))
    if role not in ROLES:
        v.append(bad("role", "role must be one of: " + ", ".join(ROLES)))
    if v:
        raise errors.validation_failed(v)
    return (email.lower() if isinstance(email, str) else None), role


async def add_member(conn: asyncpg.Connection, workspace_id: str, body: Any) -> Change:
    email, role = _check_member(body, need_email=True)
    row = await conn.fetchrow(
        "INSERT INTO workspace_members (workspace_id, email, role) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING email, role, created_at",
        workspace_id,
        email,
        role,
    )
    if row is None:
        raise errors.ApiError(409, "conflict", f"{email} is already a member; change the role")
    after = render_member(row)
    return Change(after, str(email), after=after)


async def _owners_left(conn: asyncpg.Connection, workspace_id: str) -> None:
    owners = await conn.fetchval(
        "SELECT count(*) FROM workspace_members WHERE workspace_id = $1 AND role = 'owner'",
        workspace_id,
    )
    if owners == 0:
        raise errors.ApiError(
            409, "last_owner", "a workspace must keep at least one owner; make another first"
        )


async def _member_row(conn: asyncpg.Connection, workspace_id: str, email: str) -> asyncpg.Record:
    # Lock every member row: concurrent changes cannot remove the last two owners at once.
    await conn.execute(
        "SELECT 1 FROM workspace_members WHERE workspace_id = $1 FOR UPDATE", workspace_id
    )
    row = await conn.fetchrow(
        "SELECT email, role, created_at FROM workspace_members"
        " WHERE workspace_id = $1 AND email = $2",
        workspace_id,
        email.lower(),
    )
    if row is None:
        raise errors.not_found(f"{email} is not a member of this workspace")
    return row


async def change_member(
    conn: asyncpg.Connection, workspace_id: str, email: str, body: Any
) -> Change:
    _, role = _check_member(body, need_email=False)
    before = render_member(await _member_row(conn, workspace_id, email))
    row = await conn.fetchrow(
        "UPDATE workspace_members SET role = $3 WHERE workspace_id = $1 AND email = $2"
        " RETURNING email, role, created_at",
        workspace_id,
        email.lower(),
        role,
    )
    if before["role"] == "owner":
        await _owners_left(conn, workspace_id)
    after = render_member(row)
    return Change(after, email.lower(), before=before, after=after)


async def remove_member(conn: asyncpg.Connection, workspace_id: str, email: str) -> Change:
    before = render_member(await _member_row(conn, workspace_id, email))
    await conn.execute(
        "DELETE FROM workspace_members WHERE workspace_id = $1 AND email = $2",
        workspace_id,
        email.lower(),
    )
    if before["role"] == "owner":
        await _owners_left(conn, workspace_id)
    return Change(None, email.lower(), before=before)


# -- IP allowlist ----------------------------------------------------------------


def render_entry(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "cidr": str(r["cidr"]),
        "description": r["description"],
        "created_at": format_ts_or_none(r["created_at"]),
    }


async def list_allowlist(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT id, cidr, description, created_at FROM ip_allowlist WHERE workspace_id = $1"
        " ORDER BY created_at, id",
        workspace_id,
    )
    return {"data": [render_entry(r) for r in rows]}


async def _not_locked_out(conn: asyncpg.Connection, workspace_id: str, caller: str | None) -> None:
    """Refuse a change after which the caller's own address would be refused."""
    nets = [
        r["cidr"]
        for r in await conn.fetch(
            "SELECT cidr FROM ip_allowlist WHERE workspace_id = $1", workspace_id
        )
    ]
    if nets and not within(caller, nets):
        raise errors.validation_failed(
            [
                bad(
                    "cidr",
                    f"after this change your own address ({caller}) would be refused;"
                    " add it to the allowlist first",
                )
            ]
        )


async def add_allowlist(
    conn: asyncpg.Connection,
    workspace_id: str,
    body: Any,
    plans: dict[str, Plan],
    caller: str | None,
) -> Change:
    v = _object(body, ("cidr", "description"), "an allowlist entry")
    cidr = body.get("cidr") if isinstance(body, dict) else None
    description = body.get("description", "") if isinstance(body, dict) else ""
    network = None
    if not isinstance(cidr, str):
        v.append(bad("cidr", "cidr is required: an IPv4 or IPv6 address or network (CIDR)"))
    else:
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            v.append(bad("cidr", f"{cidr!r} is not an IPv4 or IPv6 address or network (CIDR)"))
    if not isinstance(description, str) or len(description) > 500:
        v.append(bad("description", "description must be a string of at most 500 characters"))
    if v:
        raise errors.validation_failed(v)
    await enforce(conn, workspace_id, "ip_allowlist_entries", plans)
    row = await conn.fetchrow(
        "INSERT INTO ip_allowlist (id, workspace_id, cidr, description) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING RETURNING id, cidr, description, created_at",
        uuid7(),
        workspace_id,
        network,
        description,
    )
    if row is None:
        raise errors.ApiError(409, "conflict", f"{network} is already on the allowlist")
    await _not_locked_out(conn, workspace_id, caller)
    after = render_entry(row)
    return Change(after, after["id"], after=after)


async def remove_allowlist(
    conn: asyncpg.Connection, workspace_id: str, entry_id: str, caller: str | None
) -> Change:
    eid = parse_uuid(entry_id)
    row = None
    if eid is not None:
        row = await conn.fetchrow(
            "DELETE FROM ip_allowlist WHERE id = $1 AND workspace_id = $2"
            " RETURNING id, cidr, description, created_at",
            eid,
            workspace_id,
        )
    if row is None:
        raise errors.not_found(f"no allowlist entry {entry_id} in this workspace")
    await _not_locked_out(conn, workspace_id, caller)
    before = render_entry(row)
    return Change(None, before["id"], before=before)


# -- the workspace ---------------------------------------------------------------


async def workspace_document(
    conn: asyncpg.Connection | asyncpg.Pool,
    workspace_id: str,
    plan: Plan,
    audit_reads_default: bool = True,
) -> dict[str, Any]:
    """The workspace's options; ``audit_reads`` never set follows the deployment's default."""
    row = await conn.fetchrow(
        "SELECT id, name, plan, schema_mode, audit_reads, created_at FROM workspaces WHERE id = $1",
        workspace_id,
    )
    audit_reads = row["audit_reads"]
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "plan": to_dict(plan),
        "schema_mode": row["schema_mode"],
        "audit_reads": audit_reads_default if audit_reads is None else audit_reads,
        "created_at": format_ts_or_none(row["created_at"]),
    }


async def update_workspace(
    conn: asyncpg.Connection,
    workspace_id: str,
    body: Any,
    plan: Plan,
    audit_reads_default: bool = True,
) -> Change:
    v = _object(body, ("name", "schema_mode", "audit_reads"), "the workspace's options")
    if isinstance(body, dict):
        if "name" in body and (
            not isinstance(body["name"], str)
            or not body["name"].strip()
            or len(body["name"]) > MAX_NAME
        ):
            v.append(
                bad("name", f"name must be a non-empty string of at most {MAX_NAME} characters")
            )
        if "schema_mode" in body and body["schema_mode"] not in SCHEMA_MODES:
            v.append(bad("schema_mode", "schema_mode must be strict or permissive"))
        if "audit_reads" in body and not isinstance(body["audit_reads"], bool):
            v.append(bad("audit_reads", "audit_reads must be true or false"))
    if v:
        raise errors.validation_failed(v)
    before = await workspace_document(conn, workspace_id, plan, audit_reads_default)
    if "name" in body:
        await conn.execute(
            "UPDATE workspaces SET name = $2 WHERE id = $1", workspace_id, body["name"].strip()
        )
    if "schema_mode" in body:
        await conn.execute(
            "UPDATE workspaces SET schema_mode = $2 WHERE id = $1",
            workspace_id,
            body["schema_mode"],
        )
    if "audit_reads" in body:
        await conn.execute(
            "UPDATE workspaces SET audit_reads = $2 WHERE id = $1",
            workspace_id,
            body["audit_reads"],
        )
    after = await workspace_document(conn, workspace_id, plan, audit_reads_default)
    return Change(after, workspace_id, before=before, after=after)


async def set_plan(
    conn: asyncpg.Connection, workspace_id: str, plan_id: str, plans: dict[str, Plan]
) -> Change:
    if plan_id not in plans:
        raise errors.validation_failed(
            [bad("plan", "plan must be one of: " + ", ".join(sorted(plans)))]
        )
    before = await conn.fetchval(
        "SELECT plan FROM workspaces WHERE id = $1 FOR UPDATE", workspace_id
    )
    if before is None:
        raise errors.not_found(f"no workspace {workspace_id}")
    await conn.execute("UPDATE workspaces SET plan = $2 WHERE id = $1", workspace_id, plan_id)
    return Change(
        {"plan": to_dict(plans[plan_id])},
        workspace_id,
        before={"plan": before},
        after={"plan": plan_id},
    )


# -- event schemas ---------------------------------------------------------------


SCHEMA_COLUMNS = "id, action_pattern, description, metadata_schema, created_at, updated_at"


def render_schema(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "action_pattern": r["action_pattern"],
        "description": r["description"],
        "metadata_schema": None
        if r["metadata_schema"] is None
        else orjson.loads(r["metadata_schema"]),
        "created_at": format_ts_or_none(r["created_at"]),
        "updated_at": format_ts_or_none(r["updated_at"]),
    }


async def list_schemas(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        f"SELECT {SCHEMA_COLUMNS} FROM event_schemas WHERE workspace_id = $1"
        " ORDER BY action_pattern",
        workspace_id,
    )
    return {"data": [render_schema(r) for r in rows]}


async def _schema_row(
    conn: asyncpg.Connection, workspace_id: str, schema_id: str
) -> asyncpg.Record:
    sid = parse_uuid(schema_id)
    row = None
    if sid is not None:
        row = await conn.fetchrow(
            f"SELECT {SCHEMA_COLUMNS} FROM event_schemas WHERE id = $1 AND workspace_id = $2",
            sid,
            workspace_id,
        )
    if row is None:
        raise errors.not_found(f"no event schema {schema_id} in this workspace")
    return row


async def get_schema(pool: asyncpg.Pool, workspace_id: str, schema_id: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return render_schema(await _schema_row(conn, workspace_id, schema_id))


def _schema_json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def create_schema(
    conn: asyncpg.Connection, workspace_id: str, body: Any, plans: dict[str, Plan]
) -> Change:
    values, v = validate_schema_definition(body, partial=False)
    if v:
        raise errors.validation_failed(v)
    await enforce(conn, workspace_id, "event_schemas", plans)
    row = await conn.fetchrow(
        "INSERT INTO event_schemas (id, workspace_id, action_pattern, description, metadata_schema)"
        f" VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING RETURNING {SCHEMA_COLUMNS}",
        uuid7(),
        workspace_id,
        values["action_pattern"],
        values.get("description", ""),
        _schema_json(values.get("metadata_schema")),
    )
    if row is None:
        raise errors.ApiError(
            409, "conflict", f"a schema for {values['action_pattern']!r} exists; change it instead"
        )
    after = render_schema(row)
    return Change(after, after["id"], after=after)


async def update_schema(
    conn: asyncpg.Connection, workspace_id: str, schema_id: str, body: Any
) -> Change:
    values, v = validate_schema_definition(body, partial=True)
    if v:
        raise errors.validation_failed(v)
    current = await _schema_row(conn, workspace_id, schema_id)
    before = render_schema(current)
    merged = {**before, **values}
    try:
        row = await conn.fetchrow(
            "UPDATE event_schemas SET action_pattern = $2, description = $3,"
            " metadata_schema = $4::jsonb, updated_at = now() WHERE id = $1"
            f" RETURNING {SCHEMA_COLUMNS}",
            current["id"],
            merged["action_pattern"],
            merged["description"],
            _schema_json(merged["metadata_schema"]),
        )
    except asyncpg.UniqueViolationError:
        raise errors.ApiError(
            409, "conflict", f"a schema for {merged['action_pattern']!r} exists"
        ) from None
    after = render_schema(row)
    return Change(after, after["id"], before=before, after=after)


async def delete_schema(conn: asyncpg.Connection, workspace_id: str, schema_id: str) -> Change:
    before = render_schema(await _schema_row(conn, workspace_id, schema_id))
    await conn.execute("DELETE FROM event_schemas WHERE id = $1", before["id"])
    return Change(None, before["id"], before=before)
