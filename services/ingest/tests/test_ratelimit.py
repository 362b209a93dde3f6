"""Rate limits: decisions with a fake clock; sharing through the real PostgreSQL."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import orjson
import pytest

from libs.common.logs import Logger
from libs.common.settings import Settings
from services.ingest.ratelimit import Limits, RateLimiter

#: A window start (a multiple of 60): the tests place the clock from here.
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def local_limiter(clock: Clock) -> RateLimiter:
    # check() never touches the database, so these tests need no pool.
    return RateLimiter(None, instance="test-local", clock=clock)


def ws() -> str:
    return str(uuid.uuid4())


# -- decisions --------------------------------------------------------------


def test_the_limit_refuses_with_headers_until_the_window_resets() -> None:
    clock = Clock(T0 + 43)
    limiter, w = local_limiter(clock), ws()
    limits = Limits(requests_per_minute=60, events_per_second=None)
    remaining = [limiter.check(w, limits, 1) for _ in range(60)]
    assert all(d.allowed for d in remaining)
    assert [d.remaining for d in remaining] == list(range(59, -1, -1))
    assert remaining[0].headers() == {
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "59",
        "X-RateLimit-Reset": "17",
    }

    refused = limiter.check(w, limits, 1)
    assert not refused.allowed
    assert refused.reason == "this workspace may make 60 requests a minute; retry in 17 s"
    assert refused.headers() == {
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "17",
        "Retry-After": "17",
    }

    clock.now = T0 + 59.5
    assert limiter.check(w, limits, 1).headers()["Retry-After"] == "1"  # never 0
    clock.now = T0 + 60
    fresh = limiter.check(w, limits, 1)
    assert (fresh.allowed, fresh.remaining, fresh.reset_s) == (True, 59, 60)


def test_workspaces_are_counted_apart() -> None:
    limiter, limits = local_limiter(Clock(T0)), Limits(2, None)
    a, b = ws(), ws()
    assert [limiter.check(a, limits, 1).allowed for _ in range(3)] == [True, True, False]
    assert limiter.check(b, limits, 1).allowed


def test_a_batch_is_one_request_and_its_events_fill_the_bucket() -> None:
    clock = Clock(T0 + 10)
    limiter, w = local_limiter(clock), ws()
    limits = Limits(requests_per_minute=60, events_per_second=100)
    first = limiter.check(w, limits, 100)
    assert (first.allowed, first.remaining, first.policy) == (True, 59, "requests")

    refused = limiter.check(w, limits, 1)
    assert not refused.allowed
    assert refused.reason == "this workspace may send 100 events a second; retry in 1 s"
    assert refused.headers() == {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1",
        "Retry-After": "1",
    }

    clock.now += 0.5  # half a second refills half the bucket
    assert not limiter.check(w, limits, 51).allowed
    after = limiter.check(w, limits, 50)
    assert (after.allowed, after.remaining) == (True, 58)  # the refusals were not counted


def test_a_batch_above_the_ceiling_is_refused_with_a_way_out() -> None:
    limiter, w = local_limiter(Clock(T0)), ws()
    refused = limiter.check(w, Limits(None, 100), 250)
    assert not refused.allowed
    assert refused.reason == (
        "this workspace may send 100 events a second; this batch of 250 events"
        " exceeds it: split it into batches of at most 100 events"
    )
    assert refused.headers()["X-RateLimit-Limit"] == "100"
    assert limiter.check(w, Limits(None, 100), 100).allowed  # nothing was taken


def test_the_events_ceiling_is_shared_by_the_live_instances() -> None:
    clock = Clock(T0)
    limiter, w = local_limiter(clock), ws()
    limiter.live_instances = 2  # what a sync would set: 50 events a second here
    limits = Limits(None, 100)
    assert limiter.check(w, limits, 50).allowed
    assert not limiter.check(w, limits, 1).allowed

    # Above this instance's share but within the ceiling: admitted on a full
    # bucket; the debt (80 - 50) holds back the next second.
    clock.now += 1
    assert limiter.check(w, limits, 80).allowed
    clock.now += 1
    refused = limiter.check(w, limits, 30)  # 20 tokens after refilling 50
    assert (refused.allowed, refused.retry_after_s) == (False, 1)
    assert limiter.check(w, limits, 20).allowed


def test_unlimited_is_never_refused_and_sends_no_headers() -> None:
    limiter, w = local_limiter(Clock(T0)), ws()
    decisions = [limiter.check(w, Limits(None, None), 1000) for _ in range(10_000)]
    assert all(d.allowed for d in decisions)
    assert decisions[-1].headers() == {}


def test_a_request_without_events_skips_the_bucket() -> None:
    limiter, w = local_limiter(Clock(T0)), ws()
    limits = Limits(None, 1)
    assert limiter.check(w, limits, 1).allowed
    assert limiter.check(w, limits, 0).allowed
    with pytest.raises(ValueError, match="events"):
        limiter.check(w, limits, -1)


# -- sharing through PostgreSQL -----------------------------------------------

Make = Callable[..., RateLimiter]


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    db = await asyncpg.create_pool(
        Settings.from_env().database_url, min_size=1, max_size=4, command_timeout=30
    )
    try:
        has_table = await db.fetchval("SELECT to_regclass('rate_usage') IS NOT NULL")
        assert has_table, "the database lacks rate_usage: run `.venv/bin/chainlog migrate`"
        yield db
    finally:
        await db.close()


@pytest.fixture
async def make(pool: asyncpg.Pool) -> AsyncIterator[Make]:
    """Limiters with unique instance names; their rows are deleted afterwards."""
    instances: list[str] = []

    def make_limiter(clock: Clock, **kw: Any) -> RateLimiter:
        instance = f"test-{uuid.uuid4()}"
        instances.append(instance)
        return RateLimiter(kw.pop("pool", pool), instance=instance, clock=clock, **kw)

    yield make_limiter
    await pool.execute("DELETE FROM rate_usage WHERE instance = ANY($1::text[])", instances)
    await pool.execute("DELETE FROM gateway_instances WHERE instance = ANY($1::text[])", instances)


async def published(pool: asyncpg.Pool, workspace: str) -> dict[tuple[int, str], int]:
    rows = await pool.fetch(
        "SELECT window_start, instance, requests FROM rate_usage WHERE workspace_id = $1", workspace
    )
    return {(r["window_start"], r["instance"]): r["requests"] for r in rows}


@pytest.mark.integration
async def test_two_instances_stay_within_the_limit_and_the_margin(
    pool: asyncpg.Pool, make: Make
) -> None:
    clock = Clock(T0 + 1)
    a, b = make(clock), make(clock)
    w, limit, per_sync = ws(), 50, 5
    limits = Limits(limit, None)
    admitted = {a.instance: 0, b.instance: 0}
    for _ in range(12):
        for limiter in (a, b):
            for _ in range(per_sync):
                admitted[limiter.instance] += limiter.check(w, limits, 1).allowed
        assert await a.sync_once()
        assert await b.sync_once()
        clock.now += 1  # one sync interval

    total = sum(admitted.values())
    # The documented margin for two instances: what the other one admits in
    # two sync intervals. Without sharing, each would admit the whole 50.
    assert limit <= total <= limit + 2 * per_sync
    assert not a.check(w, limits, 1).allowed
    assert not b.check(w, limits, 1).allowed
    assert await published(pool, w) == {
        (int(T0), a.instance): admitted[a.instance],
        (int(T0), b.instance): admitted[b.instance],
    }
    assert a.live_instances >= 2 and b.live_instances >= 2


@pytest.mark.integration
async def test_an_instance_new_to_a_workspace_refuses_once_it_has_read_the_others(
    make: Make,
) -> None:
    clock = Clock(T0 + 5)
    a, b = make(clock), make(clock)
    w, limits = ws(), Limits(10, None)
    assert all(a.check(w, limits, 1).allowed for _ in range(10))
    assert await a.sync_once()
    # b has not read the workspace yet: the documented exception to the margin.
    assert b.check(w, limits, 1).allowed
    assert await b.sync_once()
    refused = b.check(w, limits, 1)
    assert (refused.allowed, refused.remaining) == (False, 0)


@pytest.mark.integration
async def test_counts_of_old_windows_are_forgotten(pool: asyncpg.Pool, make: Make) -> None:
    clock = Clock(T0 + 5)
    a, w, limits = make(clock), ws(), Limits(10, None)
    for _ in range(3):
        a.check(w, limits, 1)
    a.check("not-a-uuid", limits, 1)  # must not break the sync of the others
    assert await a.sync_once()
    assert await published(pool, w) == {(int(T0), a.instance): 3}

    clock.now += 120
    assert a.check(w, limits, 1).remaining == 9
    assert await a.sync_once()
    assert await published(pool, w) == {(int(T0) + 120, a.instance): 1}


@pytest.mark.integration
async def test_start_heartbeats_and_stop_leaves_the_counts(pool: asyncpg.Pool, make: Make) -> None:
    clock = Clock(T0 + 5)
    a, w = make(clock, sync_interval_s=60.0), ws()  # the task never ticks during the test
    await a.start()
    try:
        seen = "SELECT count(*) FROM gateway_instances WHERE instance = $1"
        assert await pool.fetchval(seen, a.instance) == 1
        a.check(w, Limits(10, None), 1)
    finally:
        await a.stop()
    assert await pool.fetchval(seen, a.instance) == 0
    assert await published(pool, w) == {(int(T0), a.instance): 1}  # published on stop


@pytest.mark.integration
async def test_when_the_database_goes_away_an_instance_keeps_what_it_read(make: Make) -> None:
    clock = Clock(T0 + 5)
    own = await asyncpg.create_pool(Settings.from_env().database_url, min_size=1, max_size=1)
    stream = io.StringIO()
    a, b = make(clock), make(clock, pool=own, log=Logger("ingest", stream))
    w, limits = ws(), Limits(5, None)
    assert a.check(w, limits, 1).allowed and a.check(w, limits, 1).allowed
    assert b.check(w, limits, 1).allowed
    assert await a.sync_once()
    assert await b.sync_once()  # reads a's 2

    await own.close()
    assert await b.sync_once() is False
    assert await b.sync_once() is False
    assert [b.check(w, limits, 1).allowed for _ in range(3)] == [True, True, False]
    events = [orjson.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["ratelimit.sync_failed"]  # once per outage, not once per tick

    clock.now = T0 + 60  # a new window: local counts only
    assert all(b.check(w, limits, 1).allowed for _ in range(5))
    assert not b.check(w, limits, 1).allowed


@pytest.mark.integration
async def test_an_unreachable_database_leaves_decisions_local(make: Make) -> None:
    # Port 9 (discard) has no listener here; min_size=0 defers connecting.
    unreachable = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:9/none", min_size=0)
    a = make(Clock(T0 + 5), pool=unreachable, log=Logger("ingest", io.StringIO()))
    w, limits = ws(), Limits(3, None)
    assert [a.check(w, limits, 1).allowed for _ in range(4)] == [True, True, True, False]
    assert await a.sync_once() is False
    assert a.live_instances == 1
    await unreachable.close()
