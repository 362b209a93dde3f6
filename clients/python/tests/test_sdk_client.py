"""The sync client's direct calls against a fake API: retries, errors, paging."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from chainlog_sdk import (
    Backoff,
    Client,
    NetworkError,
    RateLimited,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from chainlog_sdk.errors import ClientClosed
from sdk_fakes import API, KEY, FakeApi, Sleeps, answer, error


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(api: FakeApi, sleeps: Sleeps) -> Iterator[Client]:
    with Client(
        API,
        KEY,
        max_retries=3,
        backoff=Backoff(rng=lambda: 0.0),
        transport=api.transport(),
        sleep=sleeps,
    ) as c:
        yield c


def test_track_sends_one_event_with_a_key_and_returns_its_id(client: Client, api: FakeApi) -> None:
    event_id = client.track("document.delete", "user_42", resource="document", metadata={"n": 1})
    (request,) = api.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("chainlog-sdk-python/")
    sent = json.loads(request.content)
    assert sent["action"] == "document.delete" and sent["actor_id"] == "user_42"
    assert sent["resource"] == "document" and sent["metadata"] == {"n": 1}
    assert sent["idempotency_key"] and sent["occurred_at"].endswith("+00:00")
    assert event_id == api.keys[sent["idempotency_key"]]
    assert client.stats.sent == 1


def test_a_retry_sends_the_same_key_so_the_api_keeps_one_event(
    client: Client, api: FakeApi, sleeps: Sleeps
) -> None:
    api.script.extend([error(503, "unavailable"), httpx.ReadTimeout("slow")])
    client.track("user.login", "u1")
    first, second, third = api.bodies("/api/v1/events")
    assert first == second == third
    assert len(api.recorded()) == 1
    assert sleeps.calls == [0.25, 0.5]
    assert client.stats.retries == 2


def test_429_waits_at_least_retry_after(client: Client, api: FakeApi, sleeps: Sleeps) -> None:
    api.script.append(error(429, "rate_limited", headers={"Retry-After": "7"}))
    client.track("user.login", "u1")
    assert sleeps.calls == [7.0]


def test_a_4xx_is_raised_at_once(client: Client, api: FakeApi, sleeps: Sleeps) -> None:
    with pytest.raises(ValidationError) as raised:
        client.track("bad", "u1")
    assert raised.value.violations == [
        {"field": "action", "message": "action must be dotted words"}
    ]
    api.script.append(error(401, "unauthenticated"))
    with pytest.raises(Unauthenticated):
        client.track("user.login", "u1")
    assert len(api.requests) == 2 and sleeps.calls == []
    assert client.stats.rejected == 1


def test_retries_run_out(client: Client, api: FakeApi, sleeps: Sleeps) -> None:
    api.script.extend([error(503, "unavailable", headers={"Retry-After": "1"})] * 4)
    with pytest.raises(Unavailable) as raised:
        client.track("user.login", "u1")
    assert raised.value.retry_after == 1.0
    assert len(api.requests) == 4 and sleeps.calls == [1.0, 1.0, 1.0]


def test_a_request_that_may_have_arrived_is_not_sent_twice_unless_idempotent(
    client: Client, api: FakeApi, sleeps: Sleeps
) -> None:
    created = {"id": "x1", "status": "pending"}
    # Creating an export twice would run it twice: a timeout after sending is raised...
    api.script.append(httpx.ReadTimeout("slow"))
    with pytest.raises(NetworkError) as raised:
        client.create_export()
    assert raised.value.sent
    # ...but a refused connection, a 429 (refused before any work) are retried.
    api.script.extend([httpx.ConnectError("refused"), error(429, "too_many_exports")])
    api.script.append(answer(202, created))
    assert client.create_export() == created
    # ...and a 503 is not: the export may exist.
    api.script.append(error(503, "unavailable"))
    with pytest.raises(Unavailable):
        client.create_export()
    assert len(api.requests) == 5 and len(sleeps.calls) == 2


def test_settings_come_from_the_environment_and_fail_by_name() -> None:
    env = {"CHAINLOG_API_URL": "http://h:8080/", "CHAINLOG_API_KEY": "k"}
    with Client(env=env) as c:
        assert str(c._http.base_url) == "http://h:8080"
    with pytest.raises(ValueError, match="CHAINLOG_API_KEY"):
        Client(env={"CHAINLOG_API_URL": "http://h"})
    with pytest.raises(ValueError, match="CHAINLOG_API_URL"):
        Client(env={"CHAINLOG_API_KEY": "k"})


def test_events_follows_every_cursor(client: Client, api: FakeApi) -> None:
    pages = {
        None: ([{"seq": 3}, {"seq": 2}], "c2"),
        "c2": ([{"seq": 1}], "c3"),
        "c3": ([], None),
    }

    def page(request: httpx.Request) -> httpx.Response:
        data, cursor = pages[request.url.params.get("cursor")]
        return answer(
            200, {"data": data, "pagination": {"has_more": bool(cursor), "next_cursor": cursor}}
        )

    api.routes[("GET", "/api/v1/events")] = page
    seen = list(
        client.events(action="document.*", from_="2026-01-01T00:00:00Z", schema_violation=True)
    )
    assert [e["seq"] for e in seen] == [3, 2, 1]
    params = [dict(r.url.params) for r in api.requests]
    assert params[0] == {
        "action": "document.*",
        "from": "2026-01-01T00:00:00Z",
        "schema_violation": "true",
        "limit": "100",
    }
    assert params[2]["cursor"] == "c3" and params[2]["action"] == "document.*"


def test_get_event_and_verify(client: Client, api: FakeApi) -> None:
    api.routes[("GET", "/api/v1/events/e 1")] = lambda r: answer(200, {"id": "e 1"})
    api.routes[("GET", "/api/v1/verify")] = lambda r: answer(200, {"valid": True, **r.url.params})
    assert client.get_event("e 1") == {"id": "e 1"}
    assert api.requests[0].url.raw_path == b"/api/v1/events/e%201"
    assert client.verify(from_seq=5) == {"valid": True, "from_seq": "5"}
    assert client.verify() == {"valid": True}


def test_track_batch_splits_and_keeps_the_order(client: Client, api: FakeApi) -> None:
    events = [
        {"action": "bad" if i == 1500 else "user.login", "actor_id": f"u{i}"} for i in range(2500)
    ]
    result = client.track_batch(events)
    assert [len(b) for b in api.batches()] == [1000, 1000, 500]
    assert [b[0]["actor_id"] for b in api.batches()] == ["u0", "u1000", "u2000"]
    assert [r.index for r in result.items] == list(range(2500))
    assert result.accepted == 2499 and not result.ok
    (rejected,) = result.rejected
    assert rejected.index == 1500 and rejected.violations[0]["field"] == "events[500].action"
    assert client.stats.sent == 2499 and client.stats.rejected == 1


def test_track_batch_answers_per_item_when_every_event_is_invalid(
    client: Client, api: FakeApi
) -> None:
    result = client.track_batch([{"action": "bad", "actor_id": "u"}] * 2)
    assert [r.status for r in result.items] == ["rejected", "rejected"]
    api.script.append(
        error(422, "validation_failed", violations=[{"field": "events", "message": "too many"}])
    )
    with pytest.raises(ValidationError):
        client.track_batch([{"action": "a", "actor_id": "u"}])


def test_track_batch_splits_by_size(api: FakeApi) -> None:
    big = {"action": "a", "actor_id": "u", "metadata": {"blob": "x" * 3000}}
    with Client(API, KEY, max_body_bytes=10_000, transport=api.transport()) as c:
        c.track_batch([big] * 7)
    assert [len(b) for b in api.batches()] == [3, 3, 1]
    assert all(len(r.content) <= 10_000 for r in api.requests)


def test_a_duplicate_is_reported_as_such(client: Client, api: FakeApi) -> None:
    first = client.track("user.login", "u1", idempotency_key="req-7f3a")
    again = client.track("user.login", "u1", idempotency_key="req-7f3a")
    assert first == again
    assert (client.stats.sent, client.stats.duplicates) == (1, 1)
    result = client.track_batch([{"action": "a", "actor_id": "u", "idempotency_key": "req-7f3a"}])
    assert result.duplicates == 1 and result.items[0].id == first


def test_a_closed_client_refuses(api: FakeApi) -> None:
    c = Client(API, KEY, transport=api.transport())
    c.close()
    c.close()
    with pytest.raises(ClientClosed):
        c.track("a", "u")
    assert api.requests == []


def test_rate_limited_is_raised_when_retries_run_out(api: FakeApi, sleeps: Sleeps) -> None:
    api.script.extend([error(429, "rate_limited", headers={"Retry-After": "2"})] * 2)
    with (
        Client(API, KEY, max_retries=1, transport=api.transport(), sleep=sleeps) as c,
        pytest.raises(RateLimited),
    ):
        c.track("a", "u")
    assert sleeps.calls == [2.0]
