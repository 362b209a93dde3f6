"""The exporter's materialiser: enriched records into the events table.

At-least-once from Kafka, made exactly-once by the table: rows are keyed by
``(workspace_id, seq)`` and inserted with ``ON CONFLICT DO NOTHING``, and
offsets are committed only after the database transaction has committed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from libs.common import deadletter, kafka
from libs.common.db import DATABASE_UNAVAILABLE, connect_pool
from libs.common.health import Health
from libs.common.logs import Logger
from libs.common.metrics import ExporterMetrics
from libs.common.settings import Settings
from services.exporter.rows import COLUMNS, BadSegment, Row, segment_rows

_TYPES = (
    "uuid",
    "int8",
    "uuid",
    "bytea",
    "bytea",
    "bytea",
    "timestamptz",
    "timestamptz",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "jsonb",
    "text",
    "text",
    "text",
    "text",
    "bool",
)
INSERT = (
    "WITH stored AS ("
    f"INSERT INTO events ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_TYPES))
    + f") AS u({', '.join(COLUMNS)}) WHERE NOT EXISTS (SELECT 1 FROM chain_anchors a"
    " WHERE a.workspace_id = u.workspace_id AND u.seq <= a.seq)"
    # a replay of the topic must not bring back events that retention archived
    " ON CONFLICT DO NOTHING"
    " RETURNING workspace_id, received_at, action, action_category, ip_country)"
    # the console's hourly counts: only the rows inserted now, so a replay counts nothing
    " INSERT INTO event_counts_hourly AS c (workspace_id, hour, category, country, count)"
    " SELECT workspace_id, date_trunc('hour', received_at, 'UTC'),"
    " coalesce(action_category, split_part(action, '.', 1)), coalesce(ip_country, ''), count(*)"
    " FROM stored GROUP BY 1, 2, 3, 4"
    " ON CONFLICT (workspace_id, hour, category, country)"
    " DO UPDATE SET count = c.count + excluded.count"
)


NOTIFY = "SELECT pg_notify('chainlog_events', w::text) FROM unnest($1::uuid[]) AS w"


class Materialiser:
    """Writes chained events into PostgreSQL.

    It MUST commit a record's offset only after its rows are committed in
    the database, and MUST move past a record it cannot use by sending it
    to the dead-letter topic first.
    """

    def __init__(
        self,
        settings: Settings,
        log: Logger,
        metrics: ExporterMetrics,
        source: str | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.names = settings.topics
        self.log = log
        self.source = source or self.names.enriched
        self.stopping = asyncio.Event()
        self.consumer = kafka.consumer(settings, self.source, group=self.names.group("exporter"))
        self.dlq = kafka.producer(settings)
        self.health = Health(needs=("kafka", "postgres"))
        self.pool: asyncpg.Pool | None = None

    async def run(self) -> None:
        self.pool = await connect_pool(self.settings.database_url, max_size=4)
        await self.dlq.start()
        await self.consumer.start()
        self.health.up("kafka")
        self.health.up("postgres")
        self.log.info("exporter.started", source=self.source)
        # One batch is written while the next is fetched and decoded, so
        # PostgreSQL and this process work at the same time. Offsets are
        # committed strictly in order, each after its own rows.
        inflight: asyncio.Task[None] | None = None
        try:
            while not self.stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=2_000)
                kafka.observe_lag(
                    self.consumer, batches, self.metrics.lag, self.metrics.batch_records
                )
                if not batches:
                    if inflight is not None:
                        await inflight
                        inflight = None
                    continue
                rows, offsets = await self._decode(batches)
                if inflight is not None:
                    await inflight
                inflight = asyncio.create_task(self._write(rows, offsets))
            if inflight is not None:
                await inflight
        finally:
            if inflight is not None and not inflight.done():
                inflight.cancel()
            await self.consumer.stop()
            await self.dlq.stop()
            await self.pool.close()
            self.log.info("exporter.stopped")

    def stop(self) -> None:
        self.stopping.set()

    async def _decode(
        self,
        batches: dict[TopicPartition, list],  # type: ignore[type-arg]
    ) -> tuple[list[Row], dict[TopicPartition, int]]:
        rows: list[Row] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batches.items():
            for r in records:
                try:
                    rows.extend(segment_rows(r.value, r.headers))
                except BadSegment as bad:
                    await self._dead_letter(tp, r, bad.reason)
            offsets[tp] = records[-1].offset + 1
        return rows, offsets

    async def _write(self, rows: list[Row], offsets: dict[TopicPartition, int]) -> None:
        if rows:
            columns = [list(c) for c in zip(*rows, strict=True)]
            with self.metrics.write_seconds.time():
                await self._insert(columns)
            self.metrics.rows.inc(len(rows))
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Partitions moved to another member: it re-reads from the last
            # commit, and ON CONFLICT makes the repeat harmless.
            self.log.warning("store.commit_skipped", error=repr(exc))
        self.log.info("store.written", rows=len(rows), partitions=len(offsets))

    async def _insert(self, columns: list[list[Any]]) -> None:
        """Insert, retrying while the database is away (restart, failover).

        Nothing is committed to Kafka meanwhile, so nothing can be lost; the
        consumer stalls, which is the back-pressure we want.
        """
        assert self.pool is not None
        delay = 0.2
        while True:
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(INSERT, *columns)
                    # Wakes the streamer's workers of these workspaces.
                    await conn.execute(NOTIFY, sorted(set(columns[0])))
                self.health.up("postgres")
                return
            except DATABASE_UNAVAILABLE as exc:
                self.log.warning("store.database_unavailable", error=repr(exc), retry_in_s=delay)
                self.health.down("postgres", repr(exc)[:200])
                self.metrics.database_retries.inc()
                await self.pool.expire_connections()  # never reuse a half-broken one
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _dead_letter(self, tp: TopicPartition, record: Any, reason: str) -> None:
        await deadletter.send(self.dlq, self.names.dead_letter, tp, record, reason, "exporter")
        self.metrics.dead_lettered.inc()
        await self.dlq.flush()
        self.log.warning(
            "store.dead_lettered", partition=tp.partition, offset=record.offset, reason=reason
        )
