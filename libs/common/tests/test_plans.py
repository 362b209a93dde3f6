"""Plans: the bundled numbers, strict loading, overrides, messages, and the
limit check against the real PostgreSQL (concurrent creations take turns)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from libs.common.plans import (
    LABELS,
    LIMIT_KEYS,
    Plan,
    PlanError,
    PlanLimitReached,
    check_count,
    effective,
    enforce,
    load_plans,
    to_dict,
)
from libs.common.settings import Settings

U = None  # unlimited

# The reference product's numbers (Free / Starter / Pro / Enterprise), with
# our own events_per_second and exports_per_month where it gives none.
REFERENCE: dict[str, tuple[int | None, int | None, int | None, int | None]] = {
    "requests_per_minute": (60, 300, 1000, U),
    "events_per_second": (100, 500, 2000, U),
    "retention_days": (30, 90, 365, U),
    "alert_rules": (2, 10, 50, U),
    "log_streams": (1, 3, 10, U),
    "event_schemas": (5, 15, 50, U),
    "api_keys": (2, 5, 20, U),
    "ip_allowlist_entries": (2, 10, 50, U),
    "exports_per_month": (5, 25, 100, U),
}
PLAN_IDS = ("free", "starter", "pro", "enterprise")


@pytest.fixture(scope="module")
def bundled() -> dict[str, Plan]:
    return load_plans()


def test_bundled_file_has_the_reference_numbers(bundled: dict[str, Plan]) -> None:
    assert list(bundled) == list(PLAN_IDS)
    assert [p.name for p in bundled.values()] == ["Free", "Starter", "Pro", "Enterprise"]
    assert set(REFERENCE) == set(LIMIT_KEYS)
    for key, numbers in REFERENCE.items():
        assert tuple(bundled[p].limit(key) for p in PLAN_IDS) == numbers, key


def test_plan_ids_match_the_tables(bundled: dict[str, Plan]) -> None:
    assert all(plan.id == plan_id for plan_id, plan in bundled.items())


def test_unlimited_is_none_and_null_in_the_api(bundled: dict[str, Plan]) -> None:
    enterprise = bundled["enterprise"]
    assert all(enterprise.limit(k) is None for k in LIMIT_KEYS)
    assert to_dict(enterprise) == {
        "id": "enterprise",
        "name": "Enterprise",
        "limits": dict.fromkeys(LIMIT_KEYS),
    }
    assert to_dict(bundled["pro"])["limits"]["alert_rules"] == 50
    assert list(to_dict(bundled["pro"])["limits"]) == list(LIMIT_KEYS)
    check_count(enterprise, "alert_rules", 10**9)  # never refused


def test_limits_cannot_be_changed_in_place(bundled: dict[str, Plan]) -> None:
    with pytest.raises(TypeError):
        bundled["pro"].limits["alert_rules"] = 1  # type: ignore[index]


def test_unknown_limit_is_an_error(bundled: dict[str, Plan]) -> None:
    with pytest.raises(KeyError, match="alert_rule"):
        bundled["pro"].limit("alert_rule")
    with pytest.raises(KeyError, match="not a count limit"):
        check_count(bundled["pro"], "requests_per_minute", 0)


# -- loading other files ------------------------------------------------------


def _toml(doc: dict[str, Any]) -> str:
    """Tables of scalars only; JSON spells these the way TOML does."""
    out: list[str] = []
    for plan_id, table in doc.items():
        if not isinstance(table, dict):
            out.insert(0, f"{plan_id} = {json.dumps(table)}")
            continue
        out.append(f"[{plan_id}]")
        out += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


def _reference_doc() -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for i, plan_id in enumerate(PLAN_IDS):
        doc[plan_id] = {"name": plan_id.title()}
        for key, numbers in REFERENCE.items():
            doc[plan_id][key] = "unlimited" if numbers[i] is None else numbers[i]
    return doc


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "plans.toml"
    path.write_text(_toml(doc))
    return path


def test_a_file_written_like_the_bundled_one_loads_the_same(
    tmp_path: Path, bundled: dict[str, Plan]
) -> None:
    loaded = load_plans(_write(tmp_path, _reference_doc()))
    assert {k: to_dict(p) for k, p in loaded.items()} == {k: to_dict(p) for k, p in bundled.items()}


def test_extra_plans_and_zero_limits_are_allowed(tmp_path: Path) -> None:
    doc = _reference_doc()
    doc["team"] = dict(doc["pro"], name="Team", alert_rules=0)
    team = load_plans(_write(tmp_path, doc))["team"]
    assert team.limit("alert_rules") == 0
    with pytest.raises(PlanLimitReached, match="allows 0 alert rules"):
        check_count(team, "alert_rules", 0)


@pytest.mark.parametrize(
    ("plan_id", "key", "value", "says"),
    [
        ("pro", "alert_rules", -1, "at least 0"),
        ("pro", "alert_rules", "fifty", "whole number"),
        ("pro", "alert_rules", 50.0, "whole number"),
        ("pro", "alert_rules", True, "whole number"),
        ("pro", "alert_rules", "Unlimited", "whole number"),
        ("starter", "alert_rule", 10, "unknown key"),
        ("free", "exports_per_month", None, "missing"),
        ("enterprise", "name", None, "missing"),
        ("enterprise", "name", 5, "non-empty string"),
        ("free", "name", " ", "non-empty string"),
    ],
)
def test_a_bad_value_names_file_plan_and_key(
    tmp_path: Path, plan_id: str, key: str, value: object, says: str
) -> None:
    doc = _reference_doc()
    if value is None:
        del doc[plan_id][key]
    else:
        doc[plan_id][key] = value
    path = _write(tmp_path, doc)
    with pytest.raises(PlanError) as err:
        load_plans(path)
    message = str(err.value)
    assert str(path) in message
    assert f"plan {plan_id!r}" in message
    assert repr(key) in message
    assert says in message


@pytest.mark.parametrize("missing", ["free", "enterprise"])
def test_free_and_enterprise_are_required(tmp_path: Path, missing: str) -> None:
    doc = _reference_doc()
    del doc[missing]
    path = _write(tmp_path, doc)
    with pytest.raises(PlanError, match=f"plan '{missing}' is missing") as err:
        load_plans(path)
    assert str(path) in str(err.value)


def test_a_plan_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    doc = _reference_doc()
    doc["gold"] = 5
    with pytest.raises(PlanError, match="plan 'gold': must be a table"):
        load_plans(_write(tmp_path, doc))


def test_unreadable_or_invalid_files_name_the_file(tmp_path: Path) -> None:
    absent = tmp_path / "absent.toml"
    with pytest.raises(PlanError, match="cannot read") as err:
        load_plans(absent)
    assert str(absent) in str(err.value)
    broken = tmp_path / "broken.toml"
    broken.write_text("[free\nname = 'Free'\n")
    with pytest.raises(PlanError, match="not valid TOML") as err:
        load_plans(broken)
    assert str(broken) in str(err.value)


# -- overrides ----------------------------------------------------------------


def test_an_override_replaces_only_its_keys(bundled: dict[str, Plan]) -> None:
    custom = effective(
        bundled["enterprise"], {"requests_per_minute": 20_000, "alert_rules": 200, "api_keys": None}
    )
    assert custom.id == "enterprise" and custom.name == "Enterprise"
    assert custom.limit("requests_per_minute") == 20_000
    assert custom.limit("alert_rules") == 200
    assert custom.limit("api_keys") is None
    assert custom.limit("log_streams") is None
    assert bundled["enterprise"].limit("alert_rules") is None  # the plan itself is unchanged


def test_an_override_may_lift_a_limit(bundled: dict[str, Plan]) -> None:
    lifted = effective(bundled["pro"], {"alert_rules": "unlimited"})
    assert lifted.limit("alert_rules") is None
    assert lifted.limit("api_keys") == 20


@pytest.mark.parametrize("override", [None, {}])
def test_no_override_is_the_plan(bundled: dict[str, Plan], override: Any) -> None:
    assert effective(bundled["pro"], override) is bundled["pro"]


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ({"alert_rules": -5}, "key 'alert_rules': must be at least 0"),
        ({"alert_rules": "many"}, "key 'alert_rules': must be a whole number"),
        ({"alert_rules": 2.5}, "key 'alert_rules': must be a whole number"),
        ({"alert_rules": False}, "key 'alert_rules': must be a whole number"),
        ({"name": "Gold"}, "unknown key 'name'"),
        ({"alerts": 5}, "unknown key 'alerts'"),
    ],
)
def test_a_bad_override_names_its_source_plan_and_key(
    bundled: dict[str, Plan], override: dict[str, object], says: str
) -> None:
    with pytest.raises(PlanError) as err:
        effective(bundled["enterprise"], override, source="workspace w1 limits_override")
    assert str(err.value).startswith("workspace w1 limits_override: plan 'enterprise': ")
    assert says in str(err.value)


# -- messages and boundaries ----------------------------------------------------


@pytest.mark.parametrize(
    ("plan_id", "key", "message"),
    [
        ("pro", "alert_rules", "Your Pro plan allows 50 alert rules; delete one or upgrade."),
        (
            "pro",
            "exports_per_month",
            "Your Pro plan allows 100 exports a month; wait for next month or upgrade.",
        ),
        ("pro", "api_keys", "Your Pro plan allows 20 API keys; delete one or upgrade."),
        (
            "starter",
            "ip_allowlist_entries",
            "Your Starter plan allows 10 IP allowlist entries; delete one or upgrade.",
        ),
        ("free", "event_schemas", "Your Free plan allows 5 event schemas; delete one or upgrade."),
        ("free", "log_streams", "Your Free plan allows 1 log stream; delete one or upgrade."),
    ],
)
def test_refusal_messages(bundled: dict[str, Plan], plan_id: str, key: str, message: str) -> None:
    limit = bundled[plan_id].limit(key)
    assert limit is not None
    with pytest.raises(PlanLimitReached) as err:
        check_count(bundled[plan_id], key, limit)
    refused = err.value
    assert refused.message == message == str(refused)
    assert (refused.key, refused.limit, refused.used) == (key, limit, limit)
    assert refused.plan_name == bundled[plan_id].name
    assert refused.status == 403
    assert refused.body() == {
        "error": "plan_limit_reached",
        "message": message,
        "limit": limit,
        "used": limit,
    }


def test_every_count_limit_has_a_label() -> None:
    assert set(LABELS) == {
        "alert_rules",
        "api_keys",
        "ip_allowlist_entries",
        "event_schemas",
        "log_streams",
        "exports_per_month",
    }
    assert LABELS["exports_per_month"] == "exports a month"
    assert LABELS["api_keys"] == "API keys"


def test_check_count_allows_up_to_the_last_slot(bundled: dict[str, Plan]) -> None:
    pro = bundled["pro"]
    check_count(pro, "alert_rules", 0)
    check_count(pro, "alert_rules", 49)  # the 50th may be created
    for used in (50, 51, 1000):  # already at (or, after a downgrade, over) the limit
        with pytest.raises(PlanLimitReached) as err:
            check_count(pro, "alert_rules", used)
        assert err.value.used == used and err.value.limit == 50


# -- enforce, against the real PostgreSQL ---------------------------------------


@pytest.fixture(scope="module")
async def db() -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(
        Settings.from_env().database_admin_url, min_size=1, max_size=4, command_timeout=30
    )
    try:
        has_plan = await pool.fetchval(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'workspaces' AND column_name = 'plan'"
        )
        assert has_plan, "the database lacks workspaces.plan: run `.venv/bin/chainlog migrate`"
        yield pool
    finally:
        await pool.close()


NewWorkspace = Callable[..., Awaitable[str]]


@pytest.fixture
async def new_workspace(db: asyncpg.Pool) -> AsyncIterator[NewWorkspace]:
    created: list[uuid.UUID] = []

    async def make(plan: str, override: dict[str, object] | None = None) -> str:
        ws = uuid.uuid4()
        created.append(ws)
        await db.execute(
            "INSERT INTO workspaces (id, name, plan, limits_override) VALUES ($1, $2, $3, $4::jsonb)",
            ws,
            f"test-plans-{ws.hex[:8]}",
            plan,
            None if override is None else json.dumps(override),
        )
        return str(ws)

    yield make
    async with db.acquire() as conn, conn.transaction():
        for child in ("alert_rules", "api_keys", "ip_allowlist", "event_schemas"):
            await conn.execute(f"DELETE FROM {child} WHERE workspace_id = ANY($1)", created)
        await conn.execute("DELETE FROM workspaces WHERE id = ANY($1)", created)


async def add_rule(conn: asyncpg.Connection, ws: str, *, deleted: bool = False) -> None:
    await conn.execute(
        "INSERT INTO alert_rules (id, workspace_id, name, rule_type, conditions, channels,"
        " cooldown_seconds, deleted_at)"
        " VALUES ($1, $2, 'test', 'high_volume_destructive', '{\"threshold\": 10}', '{email}', 60,"
        " CASE WHEN $3 THEN now() END)",
        uuid.uuid4(),
        ws,
        deleted,
    )


async def add_key(conn: asyncpg.Connection, ws: str, *, revoked: bool = False) -> None:
    await conn.execute(
        "INSERT INTO api_keys (id, workspace_id, name, prefix, key_hash, scopes, revoked_at)"
        " VALUES ($1, $2, 'test', $3, $4, '{events:write}', CASE WHEN $5 THEN now() END)",
        uuid.uuid4(),
        ws,
        f"test_{os.urandom(8).hex()}",
        os.urandom(32),
        revoked,
    )


async def create_rule(
    conn: asyncpg.Connection, ws: str, bundled: dict[str, Plan], **kw: Any
) -> None:
    """What an endpoint does: check and insert in one transaction."""
    async with conn.transaction():
        await enforce(conn, ws, "alert_rules", bundled, **kw)
        await add_rule(conn, ws)


async def rules(db: asyncpg.Pool, ws: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM alert_rules WHERE workspace_id = $1 AND deleted_at IS NULL", ws
        )
    )


@pytest.mark.integration
async def test_enforce_refuses_the_rule_over_the_limit(
    db: asyncpg.Pool, new_workspace: NewWorkspace, bundled: dict[str, Plan]
) -> None:
    ws = await new_workspace("free")
    async with db.acquire() as conn:
        await add_rule(conn, ws, deleted=True)  # deleted rules do not count
        await create_rule(conn, ws, bundled)
        await create_rule(conn, ws, bundled)
        with pytest.raises(PlanLimitReached) as err:
            await create_rule(conn, ws, bundled)
    assert err.value.message == "Your Free plan allows 2 alert rules; delete one or upgrade."
    assert (err.value.limit, err.value.used) == (2, 2)
    assert await rules(db, ws) == 2  # the refused insert never happened


@pytest.mark.integration
async def test_enforce_counts_each_kind(
    db: asyncpg.Pool, new_workspace: NewWorkspace, bundled: dict[str, Plan]
) -> None:
    ws = await new_workspace("free")  # 2 API keys, 2 allowlist entries, 5 schemas
    async with db.acquire() as conn:
        await add_key(conn, ws, revoked=True)  # revoked keys do not count
        await add_key(conn, ws)
        async with conn.transaction():
            await enforce(conn, ws, "api_keys", bundled)
        await add_key(conn, ws)
        for i in range(2):
            await conn.execute(
                "INSERT INTO ip_allowlist (id, workspace_id, cidr) VALUES ($1, $2, $3::cidr)",
                uuid.uuid4(),
                ws,
                f"10.0.{i}.0/24",
            )
        for i in range(5):
            await conn.execute(
                "INSERT INTO event_schemas (id, workspace_id, action_pattern) VALUES ($1, $2, $3)",
                uuid.uuid4(),
                ws,
                f"test.{i}.*",
            )
        for key, limit in (("api_keys", 2), ("ip_allowlist_entries", 2), ("event_schemas", 5)):
            async with conn.transaction():
                with pytest.raises(PlanLimitReached) as err:
                    await enforce(conn, ws, key, bundled)
            assert (err.value.key, err.value.limit, err.value.used) == (key, limit, limit)


@pytest.mark.integration
async def test_enforce_reads_the_workspace_override(
    db: asyncpg.Pool, new_workspace: NewWorkspace, bundled: dict[str, Plan]
) -> None:
    ws = await new_workspace("enterprise", {"alert_rules": 1})
    async with db.acquire() as conn:
        await create_rule(conn, ws, bundled)
        with pytest.raises(PlanLimitReached) as err:
            await create_rule(conn, ws, bundled)
    assert err.value.message == "Your Enterprise plan allows 1 alert rule; delete one or upgrade."


@pytest.mark.integration
async def test_unlimited_does_not_count(
    db: asyncpg.Pool, new_workspace: NewWorkspace, bundled: dict[str, Plan]
) -> None:
    ws = await new_workspace("enterprise")
    async with db.acquire() as conn, conn.transaction():
        # a query that would fail if it ran
        await enforce(conn, ws, "log_streams", bundled, count_sql="SELECT $1::uuid::text::int")


@pytest.mark.integration
async def test_count_sql_counts_what_usage_sql_does_not_know(
    db: asyncpg.Pool, new_workspace: NewWorkspace, bundled: dict[str, Plan]
) -> None:
    ws = await new_workspace("free")
    async with db.acquire() as conn:
        async with conn.transaction():
            with pytest.raises(KeyError, match="requests_per_minute"):
                await enforce(conn, ws, "requests_per_minute", bundled)
        async with conn.transaction():
            await enforce(conn, ws, "log_streams", bundled, count_sql="SELECT 0 * length($1::text)")
        async with conn.transaction():
            with pytest.raises(PlanLimitReached, match="allows 1 log stream;"):
                await enforce(
                    conn, ws, "log_streams", bundled, count_sql="SELECT 1 + 0 * length($1::text)"
                )


@pytest.mark.integration
async def test_enforce_refuses_to_run_where_it_cannot_protect(
    db: asyncpg.Pool, new_workspace: NewWorkspace, bundled: dict[str, Plan]
) -> None:
    ws = await new_workspace("gold")
    async with db.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await enforce(conn, ws, "alert_rules", bundled)
        async with conn.transaction(isolation="repeatable_read"):
            with pytest.raises(RuntimeError, match="READ COMMITTED"):
                await enforce(conn, ws, "alert_rules", bundled)
        async with conn.transaction():
            with pytest.raises(PlanError, match="plan 'gold' is not in the plans file"):
                await enforce(conn, ws, "alert_rules", bundled)
        async with conn.transaction():
            with pytest.raises(LookupError):
                await enforce(conn, str(uuid.uuid4()), "alert_rules", bundled)


@pytest.mark.integration
async def test_a_bad_stored_override_names_the_workspace(
    db: asyncpg.Pool, new_workspace: NewWorkspace, bundled: dict[str, Plan]
) -> None:
    ws = await new_workspace("enterprise", {"alert_rules": -1})
    async with db.acquire() as conn, conn.transaction():
        with pytest.raises(PlanError, match=f"workspace {ws} limits_override: plan 'enterprise'"):
            await enforce(conn, ws, "alert_rules", bundled)


async def wait_until_blocked(db: asyncpg.Pool, pid: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        waiting = await db.fetchval(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
        )
        if waiting == "Lock":
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for the workspace lock")


@pytest.mark.integration
async def test_two_creations_cannot_both_take_the_last_slot(
    db: asyncpg.Pool, new_workspace: NewWorkspace, bundled: dict[str, Plan]
) -> None:
    ws = await new_workspace("free")
    async with db.acquire() as conn:
        await create_rule(conn, ws, bundled)  # one of two: one slot left
    async with db.acquire() as a, db.acquire() as b:
        first = a.transaction()
        await first.start()
        committed = False
        second: asyncio.Task[None] | None = None
        try:
            await enforce(a, ws, "alert_rules", bundled)
            # The second starts while the first has checked but not yet
            # inserted: the moment two requests could both see one slot.
            second = asyncio.create_task(create_rule(b, ws, bundled))
            await wait_until_blocked(db, b.get_server_pid())
            await add_rule(a, ws)
            await first.commit()
            committed = True
        finally:
            if not committed:
                await first.rollback()
            if second is not None and not committed:
                second.cancel()
                await asyncio.gather(second, return_exceptions=True)
        assert second is not None
        with pytest.raises(PlanLimitReached) as err:
            await asyncio.wait_for(second, 10)
    assert (err.value.limit, err.value.used) == (2, 2)
    assert await rules(db, ws) == 2
