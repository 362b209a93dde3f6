"""A stage's events/s: stop it, queue a backlog through ingest, time the drain.

Stages: the chainer (reads the raw topic), the enricher (reads the chained
topic), the alerter (reads the enriched topic). Progress is read from
Kafka: each stage commits its input offsets after its output is durable,
so the consumer group's lag (end offset - committed offset, summed over
partitions) is the number of records, one per request of ``batch``
events, it has not yet handled. The other services keep running: the
stage shares the two cores with them, as in production. A later stage
waits until every earlier stage has drained, so its whole backlog is
there when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.e2e import VisibilityProbe
from bench.load import run_load
from bench.services import Services, new_workspace
from libs.common import kafka
from libs.common.settings import REPO_ROOT, Settings

LAG_POLL_S = 0.05


@dataclass(frozen=True)
class Stage:
    name: str
    topic: str
    group: str
    #: the topic is written in Kafka transactions (see GroupLag)
    transactional: bool = False


def stages(settings: Settings) -> dict[str, Stage]:
    """The drainable stages, in pipeline order."""
    t = settings.topics
    return {
        "chainer": Stage("chainer", t.raw, t.group("chainer")),
        "enricher": Stage("enricher", t.chained, t.group("enricher"), transactional=True),
        "alerter": Stage("alerter", t.enriched, t.group("alerter")),
    }


class GroupLag:
    """Records of a topic not yet consumed by a consumer group."""

    def __init__(
        self, settings: Settings, topic: str, group: str, transactional: bool = False
    ) -> None:
        self.topic = topic
        self.group = group
        self.transactional = transactional
        self.admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
        )
        self.tps: list[TopicPartition] = []
        self.begin: dict[TopicPartition, int] = {}
        self.coordinator = 0

    async def __aenter__(self) -> GroupLag:
        await self.admin.start()
        await self.consumer.start()
        (desc,) = await self.admin.describe_topics([self.topic])
        parts = sorted(p["partition"] for p in desc["partitions"])
        if not parts:
            raise RuntimeError(f"topic {self.topic} has no partitions")
        self.tps = [TopicPartition(self.topic, p) for p in parts]
        self.begin = await self.consumer.beginning_offsets(self.tps)
        self.coordinator = await self.admin.find_coordinator(self.group)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def __call__(self) -> int:
        end = await self.consumer.end_offsets(self.tps)
        committed = await self.admin.list_consumer_group_offsets(
            self.group, self.coordinator, self.tps
        )
        return kafka.backlog(self.tps, end, self.begin, committed, transactional=self.transactional)


async def measure_drain(
    settings: Settings,
    services: Services,
    pool: asyncpg.Pool,
    base_url: str,
    bodies: Sequence[bytes],
    *,
    stage: str,
    batch: int,
    events: int,
    clients: int,
    timeout_s: float,
    prepare: Callable[[str, str], Awaitable[None]] | None = None,
    instances: int = 1,
) -> dict[str, Any]:
    """Drain ``events`` queued in front of ``stage``; ``prepare(workspace_id, key)`` runs first."""
    requests = max(1, events // batch)
    workspace_id, key = await new_workspace(pool, f"bench-{stage}")
    if prepare is not None:
        await prepare(workspace_id, key)
    order = stages(settings)
    names = list(order)
    upstream = [order[n] for n in names[: names.index(stage)]]
    async with contextlib.AsyncExitStack() as stack:
        lag = await stack.enter_async_context(
            GroupLag(settings, order[stage].topic, order[stage].group, order[stage].transactional)
        )
        before_lags = [
            await stack.enter_async_context(GroupLag(settings, s.topic, s.group, s.transactional))
            for s in upstream
        ]
        before = await lag()
        if before:
            raise RuntimeError(f"the {stage} has a backlog of {before} records; try later")
        services.stop(stage)
        try:
            load = await run_load(
                base_url,
                {"authorization": f"Bearer {key}"},
                bodies,
                clients=clients,
                max_requests=requests,
            )
            for earlier_lag in before_lags:
                await _drained(earlier_lag, timeout_s)
            queued = await lag()
        finally:
            t_start = time.perf_counter()
            extra = [_extra_instance(stage, n) for n in range(1, instances)]
            services.start(stage)
        try:
            samples = [(t_start, queued)]
            deadline = t_start + timeout_s
            while samples[-1][1] > 0 and time.perf_counter() < deadline:
                await asyncio.sleep(LAG_POLL_S)
                samples.append((time.perf_counter(), await lag()))
        finally:
            for proc in extra:
                proc.terminate()
                proc.wait(timeout=60)
    async with VisibilityProbe(pool, "events", workspace_id) as probe:
        visible_at = await probe.wait_for(load.events_acked, timeout_s)
    result = _drain_result(load.as_dict(), samples, batch, queued, visible_at, t_start, timeout_s)
    return {**result, "instances": instances}


def _extra_instance(stage: str, n: int) -> subprocess.Popen[bytes]:
    """Another process of ``stage`` in the same consumer group (scale-out runs)."""
    env = {**os.environ, "CHAINLOG_METRICS_PORT": str(9190 + n)}
    log = open(REPO_ROOT / ".chainlog" / "logs" / f"bench-{stage}-{n}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{stage}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


async def _drained(lag: GroupLag, timeout_s: float) -> None:
    """Wait (up to ``timeout_s``) until a stage has consumed its whole input."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if await lag() == 0:
            return
        await asyncio.sleep(LAG_POLL_S)


def _drain_result(
    load: dict[str, Any],
    samples: list[tuple[float, int]],
    batch: int,
    queued: int,
    visible_at: float | None,
    t_start: float,
    timeout_s: float,
) -> dict[str, Any]:
    """Drain rate from the first observed progress to lag 0 (restart time reported apart)."""
    done = samples[-1][1] == 0
    first = next((i for i, (_, n) in enumerate(samples) if n < queued), None)
    rate = None
    if done and first is not None:
        t_first, left = samples[first]
        rate = left * batch / max(samples[-1][0] - t_first, 1e-9)
    return {
        "queued_records": queued,
        "queued_events": queued * batch,
        "ingest_only": load,  # the ingest rate while nothing downstream competes
        "drained": done,
        "restart_to_first_progress_s": samples[first][0] - t_start if first is not None else None,
        "restart_to_lag_zero_s": samples[-1][0] - t_start if done else None,
        "events_per_s": rate,
        "events_per_s_incl_restart": queued * batch / (samples[-1][0] - t_start) if done else None,
        "restart_to_all_queryable_s": visible_at - t_start if visible_at is not None else None,
        "timeout_s": timeout_s,
        "lag_samples": [(round(t - t_start, 3), n) for t, n in samples],
    }
