"""The sync client's background queue: size, time, flush, queue policies, retries, shutdown."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chainlog_sdk import (
    Backoff,
    BatchOptions,
    ChainlogError,
    Client,
    QueueFull,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from chainlog_sdk.errors import ClientClosed
from sdk_fakes import API, KEY, FakeApi, Sleeps, error, wait_until

Reports = list[tuple[ChainlogError, list[dict[str, Any]]]]


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def reports() -> Reports:
    return []


def batching_client(
    api: FakeApi, reports: Reports, sleep: Sleeps | None = None, **options: Any
) -> Client:
    options.setdefault("flush_interval", 60.0)  # only size, flush() or close() send
    return Client(
        API,
        KEY,
        backoff=Backoff(rng=lambda: 0.0),
        batching=BatchOptions(on_error=lambda e, events: reports.append((e, events)), **options),
        transport=api.transport(),
        sleep=sleep or Sleeps(),
    )


@pytest.fixture
def client(api: FakeApi, reports: Reports) -> Iterator[Client]:
    c = batching_client(api, reports, max_batch=3)
    yield c
    c.close(timeout=5)


def test_track_queues_and_returns_the_key(client: Client, api: FakeApi) -> None:
    keys = [client.track("user.login", f"u{i}") for i in range(7)]
    assert client.flush(timeout=5)
    batches = api.batches()
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [e["idempotency_key"] for b in batches for e in b] == keys
    assert [e["actor_id"] for b in batches for e in b] == [f"u{i}" for i in range(7)]
    stats = client.stats
    assert (stats.queued, stats.sent, stats.pending) == (7, 7, 0)


def test_a_full_batch_goes_without_waiting_for_the_interval(client: Client, api: FakeApi) -> None:
    for i in range(3):
        client.track("user.login", f"u{i}")
    wait_until(lambda: client.stats.sent == 3)
    assert [len(b) for b in api.batches()] == [3]


def test_a_lone_event_goes_after_the_interval(api: FakeApi, reports: Reports) -> None:
    with batching_client(api, reports, flush_interval=0.02) as c:
        c.track("user.login", "u1")
        wait_until(lambda: c.stats.sent == 1)


def test_flush_waits_for_the_answer(client: Client, api: FakeApi) -> None:
    api.gate = threading.Event()
    client.track("user.login", "u1")
    assert not client.flush(timeout=0.05)
    assert client.stats.pending == 1
    api.gate.set()
    assert client.flush(timeout=5)
    assert client.stats.pending == 0 and client.stats.sent == 1


def fill_while_blocked(api: FakeApi, client: Client, queued: int) -> list[str | None]:
    """One event in flight (held by the gate) and ``queued`` more waiting."""
    api.gate = threading.Event()
    first = client.track("user.login", "in-flight")
    assert api.entered.wait(5)
    return [first] + [client.track("user.login", f"q{i}") for i in range(queued)]


def test_drop_counts_and_returns_none(api: FakeApi, reports: Reports) -> None:
    c = batching_client(api, reports, max_batch=1, max_queue=2, on_full="drop")
    keys = fill_while_blocked(api, c, 2)
    assert c.track("user.login", "dropped") is None
    assert c.stats.dropped == 1
    assert api.gate is not None
    api.gate.set()
    c.close(timeout=5)
    assert len(api.recorded()) == 3 and set(keys) == api.recorded()
    assert (c.stats.sent, c.stats.dropped) == (3, 1)


def test_raise_raises_queue_full(api: FakeApi, reports: Reports) -> None:
    c = batching_client(api, reports, max_batch=1, max_queue=2, on_full="raise")
    fill_while_blocked(api, c, 2)
    with pytest.raises(QueueFull):
        c.track("user.login", "refused")
    assert api.gate is not None
    api.gate.set()
    c.close(timeout=5)
    assert c.stats.sent == 3


def test_block_waits_for_room(api: FakeApi, reports: Reports) -> None:
    c = batching_client(api, reports, max_batch=1, max_queue=2, on_full="block")
    fill_while_blocked(api, c, 2)
    blocked = threading.Thread(target=c.track, args=("user.login", "waits"))
    blocked.start()
    blocked.join(0.05)
    assert blocked.is_alive()  # no room until the worker takes the next event
    assert api.gate is not None
    api.gate.set()
    blocked.join(5)
    assert not blocked.is_alive()
    c.close(timeout=5)
    assert c.stats.sent == 4 and c.stats.dropped == 0


def test_rejected_items_go_to_on_error(client: Client, api: FakeApi, reports: Reports) -> None:
    client.track("user.login", "u1")
    bad = client.track("bad", "u2")
    client.track("user.login", "u3")
    assert client.flush(timeout=5)
    ((err, events),) = reports
    assert isinstance(err, ValidationError)
    assert err.violations == [
        {"field": "events[1].action", "message": "action must be dotted words"}
    ]
    assert [e["idempotency_key"] for e in events] == [bad]
    assert (client.stats.sent, client.stats.rejected) == (2, 1)


def test_a_4xx_batch_is_rejected_without_retry(
    client: Client, api: FakeApi, reports: Reports
) -> None:
    api.script.append(error(401, "unauthenticated"))
    client.track("user.login", "u1")
    client.track("user.login", "u2")
    assert client.flush(timeout=5)
    ((err, events),) = reports
    assert isinstance(err, Unauthenticated) and len(events) == 2
    assert len(api.requests) == 1 and client.stats.rejected == 2


def test_5xx_and_network_errors_are_retried_with_the_same_body(
    api: FakeApi, reports: Reports
) -> None:
    sleeps = Sleeps()
    api.script.extend(
        [error(503, "unavailable", headers={"Retry-After": "3"}), httpx.ConnectError("no")]
    )
    with batching_client(api, reports, sleep=sleeps) as c:
        c.track("user.login", "u1")
        assert c.flush(timeout=5)
        assert c.stats.retries == 2 and c.stats.sent == 1
    first, second, third = (r.content for r in api.requests)
    assert first == second == third
    assert sleeps.calls == [3.0, 0.5]
    assert reports == []


def test_retries_run_out_and_the_batch_fails(api: FakeApi, reports: Reports) -> None:
    api.script.extend([error(500, "internal")] * 3)
    with batching_client(api, reports, max_retries=2) as c:
        c.track("user.login", "u1")
        assert c.flush(timeout=5)
        assert (c.stats.failed, c.stats.sent, c.stats.pending) == (1, 0, 0)
    ((err, events),) = reports
    assert err.status == 500 and events[0]["actor_id"] == "u1"


def test_close_sends_what_is_queued(api: FakeApi, reports: Reports) -> None:
    c = batching_client(api, reports)
    keys = [c.track("user.login", f"u{i}") for i in range(5)]
    c.close()
    assert api.recorded() == set(keys)
    with pytest.raises(ClientClosed):
        c.track("user.login", "late")


def test_close_gives_up_when_its_time_runs_out(api: FakeApi, reports: Reports) -> None:
    # A server that never recovers, and a worker told to retry forever.
    api.routes[("POST", "/api/v1/events/batch")] = lambda r: error(503, "unavailable")
    c = Client(
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
        c.track("user.login", f"u{i}")
    c.close(timeout=0.1)
    stats = c.stats
    assert (stats.failed, stats.pending, stats.sent) == (5, 0, 0)
    assert isinstance(reports[0][0], Unavailable)
    assert [e.code for e, _ in reports[1:]] == ["shutdown", "shutdown"]
    assert sum(len(events) for _, events in reports) == 5


def test_interpreter_exit_flushes(tmp_path: Path) -> None:
    out = tmp_path / "sent.jsonl"
    script = f"""
import httpx, json
from chainlog_sdk import BatchOptions, Client

def handler(request):
    with open({str(out)!r}, "a") as f:
        for event in json.loads(request.content)["events"]:
            f.write(json.dumps(event) + "\\n")
    results = [{{"index": 0, "id": "x", "status": "queued"}}] * 3
    return httpx.Response(202, json={{"accepted": 3, "rejected": 0, "results": results}})

client = Client("http://chainlog.test", "k", batching=BatchOptions(flush_interval=3600),
                transport=httpx.MockTransport(handler))
for i in range(3):
    client.track("user.login", f"u{{i}}")
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    sent = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["actor_id"] for e in sent] == ["u0", "u1", "u2"]
