"""``python -m services.exporter``: settings, build, run until SIGTERM.

One process runs seven things on one event loop: the materialiser (Kafka
into the events table), export jobs, evidence packs, schedules (their runs
and deliveries), scheduled verification, retention, and the Merkle trees
with their signed checkpoints.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, Protocol

import uvloop
from prometheus_client import CollectorRegistry

from libs.common import kafka, metrics, secretbox, storage
from libs.common.db import connect_pool
from libs.common.logs import Logger
from libs.common.plans import load_plans
from libs.common.settings import Settings
from services.exporter.exports import ExportJobs
from services.exporter.packs import EvidencePacks
from services.exporter.pipeline import Materialiser
from services.exporter.retention import Retention
from services.exporter.schedules import Scheduler
from services.exporter.transparency import Transparency
from services.exporter.verification import ScheduledVerification
from services.ingest.accept import Acceptor
from services.ingest.adminlog import AdminLog


class Part(Protocol):
    def run(self) -> Coroutine[Any, Any, None]: ...

    def stop(self) -> None: ...


async def main() -> None:
    settings = Settings.from_env()
    registry = CollectorRegistry()
    log = Logger("exporter")
    materialiser = Materialiser(settings, log, metrics.ExporterMetrics(registry))
    metrics.serve(
        registry,
        settings.metrics_port or 9102,
        host=settings.metrics_host,
        health=materialiser.health,
    )
    pool = await connect_pool(settings.database_url, max_size=6)
    producer = kafka.producer(settings)
    await producer.start()
    store = storage.from_settings(settings)
    jobs = ExportJobs(settings, log, store, pool)
    verification = ScheduledVerification(settings, log, pool)
    retention = Retention(
        settings,
        log,
        store,
        pool,
        AdminLog(Acceptor(producer, pool, settings.topics.raw)),
        load_plans(settings.plans_file),
    )
    packs = EvidencePacks(settings, log, store, pool, secretbox.for_settings(settings))
    scheduler = Scheduler(
        settings,
        log,
        store,
        pool,
        AdminLog(Acceptor(producer, pool, settings.topics.raw)),
        secretbox.for_settings(settings),
        producer,
    )
    parts: tuple[Part, ...] = (materialiser, jobs, packs, scheduler, verification, retention)
    if settings.transparency:
        parts += (Transparency(settings, log, pool, secretbox.for_settings(settings)),)
    else:
        log.warning("transparency.off", reason="CHAINLOG_TRANSPARENCY=false: no checkpoints")
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for part in parts:
            part.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(part.run() for part in parts))
    finally:
        await producer.stop()
        await pool.close()


if __name__ == "__main__":
    uvloop.run(main())
