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
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from libs.common import enrichment, kafka, sealing, secretbox, subjects
from libs.common.chain import iter_segment
from libs.common.db import DATABASE_UNAVAILABLE, connect_pool
from libs.common.health import Health
from libs.common.logs import Logger
from libs.common.metrics import EnricherMetrics
from libs.common.secretbox import SecretBox
from libs.common.settings import Settings
from services.enricher.geo import Locator

#: A record holding a sealed address (docs/privacy.md): its key is read to geolocate it.
SEALED_IP = b'"ip_address":"' + sealing.MARK


def geolocate(
    locator: Locator, value: bytes | None, keys: Mapping[str, bytes | None] | None = None
) -> list[enrichment.Geo]:
    """The geolocation of each line of a chained record; never raises.

    A sealed address is opened with its subject's key from ``keys``; one
    whose key is erased (or unknown) is not geolocated.
    """
    geo: list[enrichment.Geo] = []
    for _, body in iter_segment(value or b""):
        try:
            doc = orjson.loads(body)
            ip = doc.get("ip_address")
            sealed = sealing.parse(ip)
            if sealed is not None:
                kid, blob = sealed
                key = (keys or {}).get(kid)
                ip = (
                    None
                    if key is None
                    else sealing.unseal(key, kid, str(doc["workspace_id"]), "ip_address", blob)
                )
        except (orjson.JSONDecodeError, AttributeError, KeyError, sealing.SealError):
            ip = None
        geo.append(locator.lookup(ip if isinstance(ip, str) else None))
    return geo


def sealed_ip_kids(value: bytes | None) -> dict[str, set[str]]:
    """The key ids of the sealed addresses in a chained record, by workspace."""
    wanted: dict[str, set[str]] = {}
    if value is None or SEALED_IP not in value:
        return wanted
    for _, body in iter_segment(value):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        sealed = sealing.parse(doc.get("ip_address")) if isinstance(doc, dict) else None
        if sealed is not None:
            wanted.setdefault(str(doc.get("workspace_id")), set()).add(sealed[0])
    return wanted


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
        self.settings = settings
        self.box: SecretBox | None = None
        self.pool: asyncpg.Pool | None = None

    def stop(self) -> None:
        self.stopping.set()

    async def _keys(self, batches: dict[TopicPartition, list[Any]]) -> dict[str, bytes | None]:
        """The subjects' keys for the batch's sealed addresses; waits out a database outage.

        Connects to PostgreSQL on first need: a deployment without privacy
        never does. The batch is not forwarded (nor committed) until the
        keys are read, so no address is left unlocated for an outage.
        """
        wanted: dict[str, set[str]] = {}
        for records in batches.values():
            for r in records:
                for ws, kids in sealed_ip_kids(r.value).items():
                    wanted.setdefault(ws, set()).update(kids)
        keys: dict[str, bytes | None] = {}
        delay = 0.5
        while wanted and not self.stopping.is_set():
            try:
                if self.box is None:
                    self.box = secretbox.for_settings(self.settings)
                if self.pool is None:
                    self.pool = await connect_pool(self.settings.database_url, max_size=2)
                for ws, kids in wanted.items():
                    keys.update(await subjects.keys_by_kid(self.pool, self.box, ws, kids))
                return keys
            except DATABASE_UNAVAILABLE as exc:
                self.log.warning("enricher.keys_unavailable", error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        return keys

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
            if self.pool is not None:
                await self.pool.close()
            self.log.info("enricher.stopped")

    async def _forward(self, batches: dict[TopicPartition, list[Any]]) -> None:
        with self.metrics.batch_seconds.time():
            sent = []
            events = 0
            keys = await self._keys(batches)
            for tp, records in batches.items():
                for r in records:
                    geo = geolocate(self.locator, r.value, keys)
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
