"""The enricher: chained records to the enriched topic, with geolocation.

Each record is republished to the same partition of the enriched topic with
its value untouched and the derived ``ip_country``/``ip_city`` of each line
in a header (libs/common/enrichment.py). At-least-once: offsets are
committed only after every record of the batch is acknowledged, so a crash
may republish a record, and every consumer of the enriched topic ignores an
event whose ``(workspace_id, seq)`` it already holds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from libs.common import enrichment, kafka
from libs.common.chain import iter_segment
from libs.common.health import Health
from libs.common.logs import Logger
from libs.common.metrics import EnricherMetrics
from libs.common.settings import Settings
from services.enricher.geo import Locator


def geolocate(locator: Locator, value: bytes | None) -> list[enrichment.Geo]:
    """The geolocation of each line of a chained record; never raises."""
    geo: list[enrichment.Geo] = []
    for _, body in iter_segment(value or b""):
        try:
            ip = orjson.loads(body).get("ip_address")
        except (orjson.JSONDecodeError, AttributeError):
            ip = None
        geo.append(locator.lookup(ip if isinstance(ip, str) else None))
    return geo


class Enricher:
    def __init__(
        self, settings: Settings, log: Logger, metrics: EnricherMetrics, locator: Locator
    ) -> None:
        self.names = settings.topics
        self.log = log
        self.metrics = metrics
        self.locator = locator
        self.stopping = asyncio.Event()
        self.consumer = kafka.consumer(
            settings, self.names.chained, group=self.names.group("enricher")
        )
        self.producer = kafka.producer(settings, linger_ms=5)
        self.health = Health(needs=("kafka",))

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        self.health.up("kafka")
        self.log.info("enricher.started", database=self.locator.database_description())
        try:
            while not self.stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=2_000)
                kafka.observe_lag(
                    self.consumer, batches, self.metrics.lag, self.metrics.batch_records
                )
                if batches:
                    await self._forward(batches)
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            self.log.info("enricher.stopped")

    async def _forward(self, batches: dict[TopicPartition, list[Any]]) -> None:
        with self.metrics.batch_seconds.time():
            sent = []
            events = 0
            for tp, records in batches.items():
                for r in records:
                    geo = geolocate(self.locator, r.value)
                    events += len(geo)
                    sent.append(
                        await self.producer.send(
                            self.names.enriched,
                            r.value,
                            key=r.key,
                            partition=tp.partition,
                            headers=[(enrichment.HEADER, enrichment.encode(geo))],
                        )
                    )
            await asyncio.gather(*sent)
        self.metrics.events.inc(events)
        self.metrics.cache_hits.set(self.locator.hits)
        self.metrics.cache_misses.set(self.locator.misses)
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved: the new owner republishes from the last
            # commit, and the consumers downstream drop what they hold.
            self.log.warning("enricher.commit_skipped", error=repr(exc))
