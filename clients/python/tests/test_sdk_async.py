"""The async client: the same behaviour as the sync one, with an asyncio task as worker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from chainlog_sdk import (
    AsyncClient,
    Backoff,
    BatchOptions,
    ChainlogError,
    ClientClosed,
    QueueFull,
    Unavailable,
    ValidationError,
)
from sdk_fakes import API, KEY, AsyncSleeps, FakeApi, answer, error

Reports = list[tuple[ChainlogError, list[dict[str, Any]]]]


class Gate:
    """Holds every request until opened; says when the first one arrived."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.open = asyncio.Event()
        self.entered = asyncio.Event()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.entered.set()
        await self.open.wait()
        return self.api.handle(request)


def make(
    api: FakeApi,
    reports: Reports | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleeps: AsyncSleeps | None = None,
    **options: Any,
) -> AsyncClient:
    batching = None
    if reports is not None:
        options.setdefault("flush_interval", 60.0)
        batching = BatchOptions(on_error=lambda e, events: reports.append((e, events)), **options)
    return AsyncClient(
        API,
        KEY,
        max_retries=3,
        backoff=Backoff(rng=lambda: 0.0),
        batching=batching,
        transport=transport or api.transport(),
        sleep=(sleeps or AsyncSleeps()).asleep,
    )


async def test_track_sends_now_without_batching() -> None:
    api, sleeps = FakeApi(), AsyncSleeps()
    api.script.extend(
        [error(503, "unavailable"), error(429, "rate_limited", headers={"Retry-After": "4"})]
    )
    async with make(api, sleeps=sleeps) as c:
        event_id = await c.track("user.login", "u1")
        with pytest.raises(ValidationError):
            await c.track("bad", "u1")
    first, second, third, _ = api.bodies("/api/v1/events")
    assert first == second == third
    assert event_id == api.keys[first["idempotency_key"]]
    assert sleeps.calls == [0.25, 4.0]


async def test_batches_by_size_and_flush() -> None:
    api, reports = FakeApi(), Reports()
    async with make(api, reports, max_batch=2) as c:
        keys = [await c.track("user.login", f"u{i}") for i in range(3)]
        bad = await c.track("bad", "u3")
        assert await c.flush(timeout=5)
        assert c.stats.pending == 0
    assert [len(b) for b in api.batches()] == [2, 2]
    assert api.recorded() == set(keys)
    ((err, events),) = reports
    assert isinstance(err, ValidationError) and events[0]["idempotency_key"] == bad
    assert (c.stats.sent, c.stats.rejected, c.stats.queued) == (3, 1, 4)


async def test_flush_times_out_while_the_answer_is_held() -> None:
    api = FakeApi()
    gate = Gate(api)
    c = make(api, Reports(), transport=httpx.MockTransport(gate.handle))
    await c.track("user.login", "u1")
    assert not await c.flush(timeout=0.02)
    gate.open.set()
    assert await c.flush(timeout=5)
    await c.close()


async def test_queue_policies() -> None:
    for policy in ("drop", "raise", "block"):
        api = FakeApi()
        gate = Gate(api)
        c = make(
            api,
            Reports(),
            transport=httpx.MockTransport(gate.handle),
            max_batch=1,
            max_queue=1,
            on_full=policy,
        )
        await c.track("user.login", "in-flight")
        await gate.entered.wait()
        await c.track("user.login", "queued")
        if policy == "drop":
            assert await c.track("user.login", "dropped") is None
            assert c.stats.dropped == 1
        elif policy == "raise":
            with pytest.raises(QueueFull):
                await c.track("user.login", "refused")
        else:
            waiting = asyncio.create_task(c.track("user.login", "waits"))
            done, _ = await asyncio.wait({waiting}, timeout=0.02)
            assert not done
            gate.open.set()
            assert await waiting
        gate.open.set()
        await c.close(timeout=5)
        assert c.stats.sent == (3 if policy == "block" else 2), policy


async def test_close_drains_then_refuses() -> None:
    api = FakeApi()
    c = make(api, Reports())
    keys = [await c.track("user.login", f"u{i}") for i in range(5)]
    await c.close()
    assert api.recorded() == set(keys)
    with pytest.raises(ClientClosed):
        await c.track("user.login", "late")


async def test_close_gives_up_when_its_time_runs_out() -> None:
    api, reports = FakeApi(), Reports()
    api.routes[("POST", "/api/v1/events/batch")] = lambda r: error(503, "unavailable")
    c = AsyncClient(
        API,
        KEY,
        backoff=Backoff(base=10, cap=10),
        batching=BatchOptions(
            max_batch=2,
            max_retries=None,
            flush_interval=60,
            on_error=lambda e, events: reports.append((e, events)),
        ),
        transport=api.transport(),
    )
    for i in range(5):
        await c.track("user.login", f"u{i}")
    await c.close(timeout=0.05)
    assert (c.stats.failed, c.stats.pending) == (5, 0)
    ((err, events),) = reports
    assert err.code == "shutdown" and len(events) == 5


async def test_retries_run_out_and_the_batch_fails() -> None:
    api, reports, sleeps = FakeApi(), Reports(), AsyncSleeps()
    api.script.extend([error(503, "unavailable")] * 2)
    async with make(api, reports, sleeps=sleeps, max_retries=1) as c:
        await c.track("user.login", "u1")
        await c.flush(timeout=5)
    ((err, _),) = reports
    assert isinstance(err, Unavailable) and c.stats.failed == 1 and sleeps.calls == [0.25]


async def test_events_and_alerts_page_through() -> None:
    api = FakeApi()

    def page(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        if cursor is None:
            return answer(200, {"data": [{"n": 1}], "pagination": {"next_cursor": "c"}})
        return answer(200, {"data": [{"n": 2}], "pagination": {"next_cursor": None}})

    api.routes[("GET", "/api/v1/events")] = page
    api.routes[("GET", "/api/v1/alerts")] = page
    async with make(api) as c:
        assert [e["n"] async for e in c.events(actor_id="u1")] == [1, 2]
        assert [a["n"] async for a in c.alerts(rule_type="off_hours")] == [1, 2]
    assert api.requests[1].url.params["actor_id"] == "u1"
    assert api.requests[3].url.params["rule_type"] == "off_hours"
