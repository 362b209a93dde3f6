"""Exports (request, wait, download with its checksum) and alert rules, sync and async."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from chainlog_sdk import (
    AsyncClient,
    ChecksumMismatch,
    Client,
    Conflict,
    ExportFailed,
    Gone,
    PlanLimitReached,
)
from sdk_fakes import API, KEY, Clock, FakeApi, answer, error

CSV = b"seq,id,action\n1,e1,user.login\n" * 1000
DIGEST = hashlib.sha256(CSV).hexdigest()
DOWNLOAD = ("GET", "/api/v1/exports/x1/download")


class Polls:
    """A sleep that moves the clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.now += seconds

    async def asleep(self, seconds: float) -> None:
        self(seconds)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def polls(clock: Clock) -> Polls:
    return Polls(clock)


@pytest.fixture
def client(api: FakeApi, clock: Clock, polls: Polls) -> Iterator[Client]:
    with Client(API, KEY, transport=api.transport(), sleep=polls, clock=clock) as c:
        yield c


def statuses(api: FakeApi, *docs: Mapping[str, object]) -> None:
    api.script.extend(answer(200, {"id": "x1", **doc}) for doc in docs)


def csv_route(digest: str | None = DIGEST) -> httpx.Response:
    headers = {"content-type": "text/csv"}
    if digest is not None:
        headers["x-chainlog-sha256"] = digest
    return httpx.Response(200, content=CSV, headers=headers)


def test_create_export_sends_format_and_filters(client: Client, api: FakeApi) -> None:
    api.script.append(answer(202, {"id": "x1", "status": "pending"}))
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert client.create_export("jsonl", from_=when, actor_id="u1", to=None)["id"] == "x1"
    assert json.loads(api.requests[0].content) == {
        "format": "jsonl",
        "from": "2026-01-01T00:00:00+00:00",
        "actor_id": "u1",
    }


def test_wait_export_polls_until_completed(client: Client, api: FakeApi, polls: Polls) -> None:
    statuses(api, {"status": "pending"}, {"status": "processing"}, {"status": "completed"})
    assert client.wait_export("x1", poll=2)["status"] == "completed"
    assert polls.calls == [2, 2]


def test_wait_export_raises_when_the_job_fails(client: Client, api: FakeApi) -> None:
    statuses(api, {"status": "failed", "error": "storage full"})
    with pytest.raises(ExportFailed, match="storage full") as raised:
        client.wait_export("x1")
    assert raised.value.export["status"] == "failed"


def test_wait_export_gives_up_at_its_deadline(client: Client, api: FakeApi, polls: Polls) -> None:
    statuses(api, *[{"status": "pending"}] * 4)
    with pytest.raises(TimeoutError, match="still pending"):
        client.wait_export("x1", timeout=5, poll=2)
    assert polls.calls == [2, 2, 1]


def test_download_to_a_path_checks_the_hash(client: Client, api: FakeApi, tmp_path: Path) -> None:
    api.routes[DOWNLOAD] = lambda r: csv_route()
    target = tmp_path / "export.csv"
    done = client.download_export("x1", target)
    assert target.read_bytes() == CSV
    assert (done.path, done.size, done.sha256) == (target, len(CSV), DIGEST)
    assert list(tmp_path.iterdir()) == [target]


def test_a_corrupt_download_leaves_nothing(client: Client, api: FakeApi, tmp_path: Path) -> None:
    api.routes[DOWNLOAD] = lambda r: csv_route("0" * 64)
    with pytest.raises(ChecksumMismatch) as raised:
        client.download_export("x1", tmp_path / "export.csv")
    assert raised.value.actual == DIGEST
    assert list(tmp_path.iterdir()) == []


def test_download_to_a_file_object(client: Client, api: FakeApi) -> None:
    api.routes[DOWNLOAD] = lambda r: csv_route()
    out = io.BytesIO()
    assert client.download_export("x1", out).path is None
    assert out.getvalue() == CSV


def test_without_the_header_the_jobs_hash_is_the_check(client: Client, api: FakeApi) -> None:
    api.routes[DOWNLOAD] = lambda r: csv_route(None)
    api.routes[("GET", "/api/v1/exports/x1")] = lambda r: answer(200, {"sha256": DIGEST})
    assert client.download_export("x1", io.BytesIO()).sha256 == DIGEST


def test_not_ready_and_expired(client: Client, api: FakeApi, tmp_path: Path) -> None:
    api.script.append(error(409, "export_not_ready", export_status="processing"))
    with pytest.raises(Conflict) as raised:
        client.download_export("x1", tmp_path / "a.csv")
    assert raised.value.body["export_status"] == "processing"
    api.script.append(error(410, "export_expired"))
    with pytest.raises(Gone):
        client.download_export("x1", tmp_path / "a.csv")
    assert list(tmp_path.iterdir()) == []


def test_alert_rules(client: Client, api: FakeApi) -> None:
    api.script.append(answer(201, {"id": "r1"}))
    api.script.append(answer(200, {"data": [{"id": "r1"}]}))
    rule = client.create_alert_rule(
        "mass deletion",
        "high_volume_destructive",
        {"threshold": 20, "window_seconds": 300},
        ["webhook"],
        cooldown_seconds=60,
    )
    assert rule == {"id": "r1"}
    assert json.loads(api.requests[0].content) == {
        "name": "mass deletion",
        "rule_type": "high_volume_destructive",
        "conditions": {"threshold": 20, "window_seconds": 300},
        "channels": ["webhook"],
        "cooldown_seconds": 60,
    }
    assert client.alert_rules() == [{"id": "r1"}]
    api.script.append(error(403, "plan_limit_reached", limit=3, used=3))
    with pytest.raises(PlanLimitReached) as raised:
        client.create_alert_rule("r", "off_hours", {}, ["email"])
    assert raised.value.limit == 3


async def test_the_async_client_waits_and_downloads(tmp_path: Path) -> None:
    api, clock = FakeApi(), Clock()
    polls = Polls(clock)
    statuses(api, {"status": "processing"}, {"status": "completed"})
    api.routes[DOWNLOAD] = lambda r: csv_route()
    async with AsyncClient(
        API, KEY, transport=api.transport(), sleep=polls.asleep, clock=clock
    ) as c:
        assert (await c.wait_export("x1", poll=3))["status"] == "completed"
        done = await c.download_export("x1", tmp_path / "e.csv")
        api.routes[DOWNLOAD] = lambda r: csv_route("f" * 64)
        with pytest.raises(ChecksumMismatch):
            await c.download_export("x1", tmp_path / "bad.csv")
    assert polls.calls == [3]
    assert done.size == len(CSV) and (tmp_path / "e.csv").read_bytes() == CSV
    assert not (tmp_path / "bad.csv").exists() and not (tmp_path / "bad.csv.part").exists()
