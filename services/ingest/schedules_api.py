"""Schedules: an export or an evidence pack every day, week or month, put in the
workspace's own S3-compatible bucket (admin key). The whole story: docs/schedules.md.

``POST /api/v1/schedules``::

    {"kind": "export" | "evidence_pack", "cadence": "daily" | "weekly" | "monthly",
     "params": {...}, "destination": {"bucket", "region", "endpoint_url", "prefix",
                                      "access_key_id", "secret_access_key"}}

``params`` of an export: ``format`` and the filters of ``POST /api/v1/exports``
but ``from`` and ``to``, which are the period's; of an evidence pack:
``controls``. Each is checked by the code that checks a request by hand,
and the bucket by the S3 log stream's checks. The secret access key is
sealed with the secret box, bound to the schedule's id, and never returned:
``destination.secret_access_key_set`` says one is kept. ``DELETE`` disables
a schedule; its runs not yet delivered are cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import orjson

from libs.common import errors
from libs.common.periods import CADENCES
from libs.common.secretbox import SecretBox
from libs.common.ssrf import UnsafeDestination, check_endpoint
from libs.common.storage import S3Storage
from libs.common.timeutil import format_ts, format_ts_or_none, uuid7
from services.ingest import exports_api, packs_api
from services.ingest.manage import Change, bad, parse_uuid
from services.streamer.destinations.checks import Checker
from services.streamer.destinations.s3 import BUCKET_KEYS, check_bucket, check_prefix

FIELDS = ("kind", "cadence", "params", "destination")
KINDS = ("export", "evidence_pack")
#: Schedules a workspace may have enabled at once.
MAX_SCHEDULES = 20
#: Runs shown with a schedule, newest first.
RUNS_SHOWN = 20
SECRET = "secret_access_key"
COLUMNS = (
    "id, kind, cadence, params, destination, created_by, created_at, disabled_at,"
    " last_period_end, next_run_at"
)
RUN_COLUMNS = (
    "id, period_start, period_end, period_label, job_id, status, attempts, next_attempt_at,"
    " object_key, sha256, last_error, created_at, delivered_at"
)


def _export_params(workspace_id: str, params: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    v = [
        bad(f"params.{k}", f"{k} is the schedule's period; leave it out")
        for k in ("from", "to")
        if k in params
    ]
    rest = {k: val for k, val in params.items() if k not in ("from", "to")}
    try:
        fmt, filters = exports_api.parse_request(workspace_id, rest)
    except errors.ApiError as exc:
        for problem in exc.body().get("violations", []):
            v.append(bad(f"params.{problem['field']}", problem["message"]))
        return {}, v
    return {"format": fmt, "filters": filters}, v


def _pack_params(params: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    v = [
        bad(f"params.{k}", f"{k} is not a parameter of a scheduled evidence pack (controls)")
        for k in params
        if k != "controls"
    ]
    controls = packs_api.parse_controls(params.get("controls"))
    if controls is None:
        v.append(bad("params.controls", packs_api.CONTROLS_MESSAGE))
    return {"controls": controls}, v


def check_destination(value: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The bucket's settings, checked as an S3 log stream's are; fields named ``destination.*``."""
    c = Checker(value, (*BUCKET_KEYS, "prefix"))
    check_bucket(c)
    check_prefix(c)
    renamed = [
        {**p, "field": "destination" + p["field"].removeprefix("config")} for p in c.violations
    ]
    return c.out, renamed


def parse_request(workspace_id: str, body: Any) -> dict[str, Any]:
    """``kind``, ``cadence``, ``params`` and ``destination`` (with its secret); a 422 names
    every bad field."""
    if not isinstance(body, dict):
        raise errors.validation_failed([bad("body", "the body must be a JSON object")])
    v = [bad(k, f"{k} is not a field of a schedule") for k in body if k not in FIELDS]
    kind, cadence = body.get("kind"), body.get("cadence")
    if kind not in KINDS:
        v.append(bad("kind", "kind must be export or evidence_pack"))
    if cadence not in CADENCES:
        v.append(bad("cadence", "cadence must be daily, weekly or monthly"))
    params: dict[str, Any] = {}
    raw = body.get("params", {})
    if not isinstance(raw, dict):
        v.append(bad("params", "params must be a JSON object"))
    elif kind == "export":
        params, problems = _export_params(workspace_id, raw)
        v += problems
    elif kind == "evidence_pack":
        params, problems = _pack_params(raw)
        v += problems
    destination, problems = check_destination(body.get("destination"))
    v += problems
    if v:
        raise errors.validation_failed(v)
    return {"kind": kind, "cadence": cadence, "params": params, "destination": destination}


def endpoint(destination: dict[str, Any]) -> str:
    """Where the bucket is: ``endpoint_url``, or AWS's regional endpoint (path style)."""
    return str(
        destination.get("endpoint_url") or f"https://s3.{destination['region']}.amazonaws.com"
    )


def bucket(
    destination: dict[str, Any], secret: str, client: Callable[[float], httpx.AsyncClient]
) -> S3Storage:
    """The schedule's bucket as a store (``client``: a guarded one, libs/common/ssrf.py)."""
    return S3Storage(
        endpoint_url=endpoint(destination),
        bucket=str(destination["bucket"]),
        region=str(destination["region"]),
        access_key_id=str(destination["access_key_id"]),
        secret_access_key=secret,
        prefix=str(destination.get("prefix", "")),
        client=client,
    )


def secret_context(schedule_id: str) -> str:
    return f"schedule:{schedule_id}"


def open_secret(box: SecretBox, row: asyncpg.Record) -> str:
    """The schedule's secret access key, for delivering (never for answers)."""
    sealed = box.decrypt(row["secrets_enc"], context=secret_context(str(row["id"])))
    return str(orjson.loads(sealed)[SECRET])


async def create(
    conn: asyncpg.Connection,
    box: SecretBox,
    workspace_id: str,
    body: Any,
    created_by: str,
    *,
    allow_private: bool,
) -> Change:
    values = parse_request(workspace_id, body)
    destination = values["destination"]
    try:
        await check_endpoint(endpoint(destination), allow_private=allow_private)
    except UnsafeDestination as exc:
        raise errors.validation_failed([bad("destination.endpoint_url", exc.reason)]) from None
    except ValueError as exc:
        raise errors.validation_failed(
            [bad("destination.endpoint_url", f"cannot resolve the bucket's endpoint: {exc}")]
        ) from None
    # Locks the workspace row: concurrent requests take turns for the last slot.
    await conn.execute("SELECT 1 FROM workspaces WHERE id = $1 FOR NO KEY UPDATE", workspace_id)
    enabled = await conn.fetchval(
        "SELECT count(*) FROM schedules WHERE workspace_id = $1 AND disabled_at IS NULL",
        workspace_id,
    )
    if enabled >= MAX_SCHEDULES:
        raise errors.ApiError(
            409,
            "too_many_schedules",
            f"A workspace may have {MAX_SCHEDULES} schedules; disable one first.",
            limit=MAX_SCHEDULES,
        )
    schedule_id = uuid7()
    secret = destination.pop(SECRET)
    sealed = box.encrypt(
        orjson.dumps({SECRET: secret}).decode(), context=secret_context(schedule_id)
    )
    row = await conn.fetchrow(
        "INSERT INTO schedules (id, workspace_id, kind, cadence, params, destination, secrets_enc,"
        f" created_by) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8) RETURNING {COLUMNS}",
        schedule_id,
        workspace_id,
        values["kind"],
        values["cadence"],
        orjson.dumps(values["params"]).decode(),
        orjson.dumps(destination).decode(),
        sealed,
        created_by,
    )
    shown = render(row)
    return Change(shown, schedule_id, after=shown)


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


def render(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "kind": r["kind"],
        "cadence": r["cadence"],
        "params": _json(r["params"]),
        # Every schedule keeps a secret; its value never leaves the database.
        "destination": {**_json(r["destination"]), f"{SECRET}_set": True},
        "enabled": r["disabled_at"] is None,
        "created_by": r["created_by"],
        "created_at": format_ts(r["created_at"]),
        "disabled_at": format_ts_or_none(r["disabled_at"]),
        "last_period_end": format_ts_or_none(r["last_period_end"]),
        "next_run_at": None if r["disabled_at"] else format_ts(r["next_run_at"]),
    }


def render_run(r: asyncpg.Record, kind: str) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "period": {
            "from": format_ts(r["period_start"]),
            "to": format_ts(r["period_end"]),
            "label": r["period_label"],
        },
        f"{kind}_id": str(r["job_id"]),
        "status": r["status"],
        "attempts": r["attempts"],
        "next_attempt_at": format_ts_or_none(r["next_attempt_at"])
        if r["status"] == "pending"
        else None,
        "object_key": r["object_key"],
        "sha256": r["sha256"],
        "last_error": r["last_error"],
        "created_at": format_ts(r["created_at"]),
        "delivered_at": format_ts_or_none(r["delivered_at"]),
    }


async def _row(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: str, schedule_id: str, lock: str = ""
) -> asyncpg.Record:
    sid = parse_uuid(schedule_id)
    row = None
    if sid is not None:
        row = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM schedules WHERE id = $1 AND workspace_id = $2{lock}",
            sid,
            workspace_id,
        )
    if row is None:
        raise errors.not_found(f"no schedule {schedule_id} in this workspace")
    return row


async def get(pool: asyncpg.Pool, workspace_id: str, schedule_id: str) -> dict[str, Any]:
    row = await _row(pool, workspace_id, schedule_id)
    runs = await pool.fetch(
        f"SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule_id = $1"
        " ORDER BY period_start DESC LIMIT $2",
        row["id"],
        RUNS_SHOWN,
    )
    return {**render(row), "runs": [render_run(r, row["kind"]) for r in runs]}


async def list_schedules(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        f"SELECT {COLUMNS} FROM schedules WHERE workspace_id = $1"
        " ORDER BY created_at DESC, id LIMIT 100",
        workspace_id,
    )
    return {"data": [render(r) for r in rows]}


async def disable(conn: asyncpg.Connection, workspace_id: str, schedule_id: str) -> Change:
    """No more runs; runs not yet delivered are cancelled (their jobs stay downloadable)."""
    row = await _row(conn, workspace_id, schedule_id, " FOR UPDATE")
    if row["disabled_at"] is not None:
        raise errors.not_found(f"schedule {schedule_id} is already disabled")
    after = await conn.fetchrow(
        f"UPDATE schedules SET disabled_at = now() WHERE id = $1 RETURNING {COLUMNS}", row["id"]
    )
    cancelled = await conn.fetch(
        "UPDATE schedule_runs SET status = 'cancelled', lease_until = NULL"
        " WHERE schedule_id = $1 AND status = 'pending' RETURNING id",
        row["id"],
    )
    shown = render(after)
    return Change(
        None,
        str(row["id"]),
        before=render(row),
        after={**shown, "runs_cancelled": [str(r["id"]) for r in cancelled]},
    )
