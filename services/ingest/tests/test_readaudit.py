"""The read-audit aggregator without Kafka: grouping, windows, shutdown, back-pressure, the cap."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from aiokafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from libs.common import errors
from libs.common.logs import Logger
from libs.common.metrics import IngestMetrics
from services.ingest.adminlog import Actor, AdminEventRefused
from services.ingest.readaudit import MAX_VALUE, ReadAudit

WS = "0190c0de-0000-7000-8000-000000000001"
ALICE = Actor("api_key:alice00000", "api_key", "alice", "203.0.113.5")
BOB = Actor("api_key:bob0000000", "api_key", "bob")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Stands in for AdminLog; ``pushback`` more calls are refused as Kafka would."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.pushback = 0
        self.refuse: set[str] = set()
        self.written = asyncio.Event()

    async def record(
        self,
        workspace_id: str,
        actor: Actor,
        action: str,
        resource: str,
        resource_id: str,
        *,
        before: Any = None,
        after: Any = None,
    ) -> str:
        if self.pushback:
            self.pushback -= 1
            raise errors.Pushback("the pipeline is busy")
        if action in self.refuse:
            raise AdminEventRefused("admin event refused")
        self.events.append(
            {"workspace_id": workspace_id, "actor": actor.id, "action": action, **after}
        )
        self.written.set()
        return f"event-{len(self.events)}"


def make(
    *, window_s: float = 60, max_groups: int = 100, default_on: bool = True
) -> tuple[ReadAudit, Recorder, Clock, CollectorRegistry, io.StringIO]:
    registry = CollectorRegistry()
    recorder, clock, out = Recorder(), Clock(), io.StringIO()
    ticks = iter(range(10_000))
    audit = ReadAudit(
        recorder,
        window_s=window_s,
        max_groups=max_groups,
        default_on=default_on,
        dropped=IngestMetrics(registry).read_audit_dropped,
        log=Logger("ingest", out),
        clock=clock,
        wall=lambda: f"2026-11-28T12:00:{next(ticks):02d}.000000Z",
    )
    return audit, recorder, clock, registry, out


def dropped(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value(
        "chainlog_ingest_read_audit_dropped_total", {"reason": reason}
    )
    return value or 0.0


async def test_paging_through_a_result_is_one_read() -> None:
    audit, recorder, clock, _, _ = make()
    read = audit.reader(WS, ALICE, None)
    read("events", {"action": "user.login", "limit": "100"}, 100)
    read("events", {"action": "user.login", "limit": "100", "cursor": "abc"}, 100)
    read("events", {"limit": "100", "cursor": "def", "action": "user.login"}, 42)
    read("activity", {"hours": "24"}, 24)
    clock.now += 60
    assert await audit.flush() == 2
    by_action = {e["action"]: e for e in recorder.events}
    assert by_action["read.events"] == {
        "workspace_id": WS,
        "actor": ALICE.id,
        "action": "read.events",
        "requests": 3,
        "rows": 242,
        "filters": {"action": "user.login"},
        "first_at": "2026-11-28T12:00:00.000000Z",
        "last_at": "2026-11-28T12:00:02.000000Z",
    }
    assert by_action["read.activity"]["requests"] == 1
    assert audit.pending == 0


async def test_reader_kind_and_filter_each_make_a_group() -> None:
    audit, recorder, clock, _, _ = make()
    audit.reader(WS, ALICE, True)("events", {"action": "a"}, 1)
    audit.reader(WS, ALICE, True)("events", {"action": "b"}, 1)
    audit.reader(WS, BOB, True)("events", {"action": "a"}, 1)
    audit.reader(WS, ALICE, True)("verify", {"action": "a"}, 1)
    clock.now += 60
    assert await audit.flush() == 4
    assert sorted((e["actor"], e["action"], e["filters"]["action"]) for e in recorder.events) == [
        (ALICE.id, "read.events", "a"),
        (ALICE.id, "read.events", "b"),
        (ALICE.id, "read.verify", "a"),
        (BOB.id, "read.events", "a"),
    ]


async def test_items_read_are_listed_once() -> None:
    audit, recorder, clock, _, _ = make()
    read = audit.reader(WS, ALICE, None)
    for event_id in ("e1", "e2", "e1"):
        read("event", {}, 1, item=event_id)
    clock.now += 60
    await audit.flush()
    assert recorder.events[0]["items"] == ["e1", "e2"]
    assert recorder.events[0]["requests"] == 3


async def test_a_group_waits_for_its_window() -> None:
    audit, recorder, clock, _, _ = make(window_s=60)
    read = audit.reader(WS, ALICE, None)
    read("events", {}, 5)
    clock.now += 30
    read("events", {}, 5)
    assert await audit.flush() == 0
    clock.now += 29.9
    assert await audit.flush() == 0
    clock.now += 0.1
    assert await audit.flush() == 1
    assert recorder.events[0]["requests"] == 2
    # a read after the flush starts a new window
    read("events", {}, 5)
    assert await audit.flush() == 0 and audit.pending == 1


async def test_a_workspace_that_does_not_audit_reads_notes_nothing() -> None:
    audit, _, _, _, _ = make(default_on=True)
    audit.reader(WS, ALICE, False)("events", {}, 5)
    assert audit.pending == 0
    off_by_default, _, _, _, _ = make(default_on=False)
    off_by_default.reader(WS, ALICE, None)("events", {}, 5)
    assert off_by_default.pending == 0
    off_by_default.reader(WS, ALICE, True)("events", {}, 5)
    assert off_by_default.pending == 1


async def test_shutdown_writes_every_group_at_once() -> None:
    audit, recorder, _, registry, _ = make(window_s=3600)
    audit.start()
    audit.reader(WS, ALICE, None)("events", {}, 5)
    audit.reader(WS, BOB, None)("verify", {}, 9)
    await audit.close()
    assert sorted(e["action"] for e in recorder.events) == ["read.events", "read.verify"]
    assert audit.pending == 0
    assert dropped(registry, "shutdown") == 0


async def test_the_loop_flushes_due_groups_by_itself() -> None:
    audit, recorder, clock, _, _ = make(window_s=1)
    audit.start()
    try:
        audit.reader(WS, ALICE, None)("events", {}, 5)
        clock.now += 1
        async with asyncio.timeout(5):
            await recorder.written.wait()
    finally:
        await audit.close()
    assert len(recorder.events) == 1


async def test_pushback_keeps_the_batch_for_the_next_window() -> None:
    audit, recorder, clock, registry, out = make()
    read = audit.reader(WS, ALICE, None)
    read("events", {"action": "a"}, 10)
    read("events", {"action": "b"}, 20)
    clock.now += 60
    recorder.pushback = 1
    assert await audit.flush() == 0
    assert audit.pending == 2
    assert "read_audit.deferred" in out.getvalue()
    # reads noted meanwhile join the kept group: still one event for it
    read("events", {"action": "a"}, 1)
    assert await audit.flush() == 2
    by_filter = {e["filters"]["action"]: e for e in recorder.events}
    assert by_filter["a"]["requests"] == 2 and by_filter["a"]["rows"] == 11
    assert by_filter["b"]["requests"] == 1
    assert dropped(registry, "full") == 0


async def test_a_kafka_error_is_back_pressure_not_a_refusal() -> None:
    audit, recorder, clock, registry, _ = make()

    async def broker_away(*args: Any, **kwargs: Any) -> str:
        raise KafkaTimeoutError()

    recorder.record = broker_away  # type: ignore[method-assign]
    audit.reader(WS, ALICE, None)("events", {}, 10)
    clock.now += 60
    assert await audit.flush() == 0
    assert audit.pending == 1
    assert dropped(registry, "refused") == 0


async def test_shutdown_with_kafka_away_counts_what_is_lost() -> None:
    audit, recorder, _, registry, out = make()
    audit.reader(WS, ALICE, None)("events", {}, 10)
    audit.reader(WS, ALICE, None)("events", {}, 10)
    recorder.pushback = 1
    await audit.close()
    assert recorder.events == []
    assert dropped(registry, "shutdown") == 2
    assert "read_audit.lost" in out.getvalue()


async def test_a_refused_event_is_dropped_not_retried() -> None:
    audit, recorder, clock, registry, _ = make()
    recorder.refuse = {"read.verify"}
    audit.reader(WS, ALICE, None)("verify", {}, 10)
    audit.reader(WS, ALICE, None)("events", {}, 10)
    clock.now += 60
    assert await audit.flush() == 1
    assert [e["action"] for e in recorder.events] == ["read.events"]
    assert audit.pending == 0
    assert dropped(registry, "refused") == 1


async def test_the_cap_bounds_memory_and_counts_what_it_drops() -> None:
    audit, recorder, clock, registry, out = make(max_groups=2)
    read = audit.reader(WS, ALICE, None)
    read("events", {"action": "a"}, 1)
    read("events", {"action": "b"}, 1)
    read("events", {"action": "c"}, 1)  # a third group: no room
    read("events", {"action": "a"}, 1)  # an existing group still counts
    assert audit.pending == 2
    assert dropped(registry, "full") == 1
    clock.now += 60
    await audit.flush()
    assert '"event":"read_audit.dropped","reason":"full","requests":1' in out.getvalue()
    assert sorted((e["filters"]["action"], e["requests"]) for e in recorder.events) == [
        ("a", 2),
        ("b", 1),
    ]


async def test_groups_being_written_count_against_the_cap() -> None:
    audit, _, clock, registry, _ = make(max_groups=1)
    read = audit.reader(WS, ALICE, None)
    gate = asyncio.Event()
    writing = asyncio.Event()
    original = audit.recorder.record

    async def slow(*args: Any, **kwargs: Any) -> str:
        writing.set()
        await gate.wait()
        return await original(*args, **kwargs)

    audit.recorder.record = slow  # type: ignore[method-assign]
    read("events", {"action": "a"}, 1)
    clock.now += 60
    flushing = asyncio.create_task(audit.flush())
    await writing.wait()  # the flush holds the group while it writes it
    read("events", {"action": "b"}, 1)
    assert dropped(registry, "full") == 1
    gate.set()
    assert await flushing == 1


async def test_filters_are_bounded() -> None:
    audit, recorder, clock, _, _ = make()
    audit.reader(WS, ALICE, None)("events", {"search": "x" * 5000}, 1)
    clock.now += 60
    await audit.flush()
    assert len(recorder.events[0]["filters"]["search"]) == MAX_VALUE
