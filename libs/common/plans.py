"""Plans and their limits: read from configuration, checked where things are created.

The numbers live in ``plans.toml`` next to this file (or the operator's own
file); an Enterprise workspace's custom numbers in ``workspaces.limits_override``
replace its plan's. Going over a count limit is a 403 ``plan_limit_reached``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import asyncpg

from libs.common.errors import ApiError

BUNDLED = Path(__file__).with_name("plans.toml")

LIMIT_KEYS: tuple[str, ...] = (
    "requests_per_minute",
    "events_per_second",
    "retention_days",
    "alert_rules",
    "log_streams",
    "event_schemas",
    "api_keys",
    "ip_allowlist_entries",
    "exports_per_month",
)

#: The limits that count things a workspace has, in people's words (plural).
LABELS: Mapping[str, str] = MappingProxyType(
    {
        "alert_rules": "alert rules",
        "api_keys": "API keys",
        "ip_allowlist_entries": "IP allowlist entries",
        "event_schemas": "event schemas",
        "log_streams": "log streams",
        "exports_per_month": "exports a month",
    }
)
_ONE = {
    "alert_rules": "alert rule",
    "api_keys": "API key",
    "ip_allowlist_entries": "IP allowlist entry",
    "event_schemas": "event schema",
    "log_streams": "log stream",
    "exports_per_month": "export a month",
}
_REMEDY = {"exports_per_month": "wait for next month or upgrade"}

#: How many of a thing a workspace has now; ``$1`` is the workspace id.
#: A feature whose table exists adds its query here.
USAGE_SQL: dict[str, str] = {
    # The chain_integrity rule every workspace gets does not take a slot.
    "alert_rules": "SELECT count(*) FROM alert_rules WHERE workspace_id = $1"
    " AND deleted_at IS NULL AND rule_type <> 'chain_integrity'",
    "api_keys": "SELECT count(*) FROM api_keys WHERE workspace_id = $1 AND revoked_at IS NULL",
    "ip_allowlist_entries": "SELECT count(*) FROM ip_allowlist WHERE workspace_id = $1",
    "event_schemas": "SELECT count(*) FROM event_schemas WHERE workspace_id = $1",
    "log_streams": "SELECT count(*) FROM log_streams WHERE workspace_id = $1 AND deleted_at IS NULL",
    # Started in this calendar month (UTC), whatever became of them.
    "exports_per_month": "SELECT count(*) FROM exports WHERE workspace_id = $1"
    " AND created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
}

UNLIMITED = "unlimited"
REQUIRED_PLANS = ("free", "enterprise")


class PlanError(ValueError):
    """The plans file or a workspace's override is wrong; the message says where."""


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    #: Every key of LIMIT_KEYS; None: unlimited.
    limits: Mapping[str, int | None]

    def limit(self, key: str) -> int | None:
        if key not in LIMIT_KEYS:
            raise KeyError(f"unknown limit {key!r}; one of {', '.join(LIMIT_KEYS)}")
        return self.limits[key]


class PlanLimitReached(ApiError):
    """Creating one more would go over the plan: 403 ``plan_limit_reached``."""

    def __init__(self, plan_name: str, key: str, limit: int, used: int) -> None:
        label = _ONE[key] if limit == 1 else LABELS[key]
        remedy = _REMEDY.get(key, "delete one or upgrade")
        message = f"Your {plan_name} plan allows {limit} {label}; {remedy}."
        super().__init__(403, "plan_limit_reached", message, limit=limit, used=used)
        self.plan_name = plan_name
        self.key = key
        self.limit = limit
        self.used = used


def _limit_value(value: object, where: str) -> int | None:
    if value is None or value == UNLIMITED:
        return None
    # bool is an int to Python, never to a person writing a limit
    if not isinstance(value, int) or isinstance(value, bool):
        raise PlanError(f'{where}: must be a whole number or "{UNLIMITED}", got {value!r}')
    if value < 0:
        raise PlanError(f"{where}: must be at least 0, got {value}")
    return value


def _parse_plan(source: str, plan_id: str, table: object) -> Plan:
    here = f"{source}: plan {plan_id!r}"
    if not isinstance(table, dict):
        raise PlanError(f"{here}: must be a table of limits, got {table!r}")
    unknown = sorted(set(table) - {"name", *LIMIT_KEYS})
    if unknown:
        raise PlanError(
            f"{here}: unknown key {unknown[0]!r}; expected name, {', '.join(LIMIT_KEYS)}"
        )
    missing = [k for k in ("name", *LIMIT_KEYS) if k not in table]
    if missing:
        raise PlanError(f'{here}: key {missing[0]!r} is missing (write "{UNLIMITED}" for no limit)')
    name = table["name"]
    if not isinstance(name, str) or not name.strip():
        raise PlanError(f"{here}: key 'name': must be a non-empty string, got {name!r}")
    limits = {key: _limit_value(table[key], f"{here}: key {key!r}") for key in LIMIT_KEYS}
    return Plan(plan_id, name, MappingProxyType(limits))


def load_plans(path: Path | None = None) -> dict[str, Plan]:
    """The plans of ``path`` (default: the bundled ``plans.toml``), by id, in file order.

    Raises PlanError, naming the file, plan and key, for anything but a
    complete, well-typed file with at least the ``free`` and ``enterprise`` plans.
    """
    path = BUNDLED if path is None else path
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plans file: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: not valid TOML: {exc}") from None
    plans = {plan_id: _parse_plan(str(path), plan_id, table) for plan_id, table in doc.items()}
    for required in REQUIRED_PLANS:
        if required not in plans:
            raise PlanError(f"{path}: plan {required!r} is missing; every file needs it")
    return plans


def effective(
    plan: Plan, override: Mapping[str, object] | None, *, source: str = "limits_override"
) -> Plan:
    """``plan`` with a workspace's custom numbers in place of the plan's.

    ``override`` holds some of LIMIT_KEYS, each a whole number >= 0,
    ``"unlimited"`` or None (unlimited). ``source`` names it in a PlanError.
    """
    if not override:
        return plan
    here = f"{source}: plan {plan.id!r}"
    if not isinstance(override, Mapping):
        raise PlanError(f"{here}: must be an object of limits, got {override!r}")
    limits = dict(plan.limits)
    for key, value in override.items():
        if key not in LIMIT_KEYS:
            raise PlanError(f"{here}: unknown key {key!r}; expected one of {', '.join(LIMIT_KEYS)}")
        limits[key] = _limit_value(value, f"{here}: key {key!r}")
    return Plan(plan.id, plan.name, MappingProxyType(limits))


def check_count(plan: Plan, key: str, used: int) -> None:
    """Raise PlanLimitReached if the workspace, having ``used``, may not create one more."""
    if key not in LABELS:
        raise KeyError(f"{key!r} is not a count limit; one of {', '.join(LABELS)}")
    limit = plan.limit(key)
    if limit is not None and used >= limit:
        raise PlanLimitReached(plan.name, key, limit, used)


async def enforce(
    conn: asyncpg.Connection,
    workspace_id: str,
    key: str,
    plans: Mapping[str, Plan],
    *,
    count_sql: str | None = None,
) -> None:
    """Refuse, with PlanLimitReached, to create one more ``key`` in the workspace.

    The caller MUST call this inside a READ COMMITTED transaction (PostgreSQL's
    default) and MUST insert the new row in that same transaction: the
    workspace row stays locked until it ends, so concurrent creations in one
    workspace take turns and two requests cannot both take the last slot.
    Under REPEATABLE READ the count would come from a snapshot taken before
    the wait and miss the other's row, so that is refused too.

    ``count_sql`` (``$1``: the workspace id) counts what USAGE_SQL does not know.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("enforce must run inside the transaction that inserts the new row")
    sql = count_sql or USAGE_SQL.get(key)
    if sql is None:
        raise KeyError(f"no usage query for {key!r}: add it to USAGE_SQL or pass count_sql")
    # FOR NO KEY UPDATE conflicts with itself, which is all the turn-taking
    # needs; unlike FOR UPDATE it does not block other transactions' inserts
    # of rows that reference the workspace (their foreign-key checks).
    row = await conn.fetchrow(
        "SELECT plan, limits_override, current_setting('transaction_isolation') AS isolation"
        " FROM workspaces WHERE id = $1 FOR NO KEY UPDATE",
        workspace_id,
    )
    if row is None:
        raise LookupError(f"workspace {workspace_id} does not exist")
    if row["isolation"] != "read committed":
        raise RuntimeError(f"enforce needs READ COMMITTED, not {row['isolation']}")
    plan = plans.get(row["plan"])
    if plan is None:
        raise PlanError(f"workspace {workspace_id}: plan {row['plan']!r} is not in the plans file")
    override: Any = row["limits_override"]
    if isinstance(override, str):  # asyncpg hands jsonb over as text unless given a codec
        override = json.loads(override)
    plan = effective(plan, override, source=f"workspace {workspace_id} limits_override")
    if plan.limit(key) is None:
        return
    used = await conn.fetchval(sql, workspace_id)
    check_count(plan, key, int(used))


def to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as an API answers it; an unlimited limit is null."""
    return {"id": plan.id, "name": plan.name, "limits": {k: plan.limits[k] for k in LIMIT_KEYS}}
