"""The chainer's Kafka side: consume raw, produce chained, transactionally.

Ownership of a chain follows ownership of a raw partition. For each owned
partition ``p`` the chainer keeps one transactional producer whose
``transactional_id`` names ``p``: a new owner's ``init_transactions`` fences
any previous owner (a zombie can never extend a chain) and aborts what it
left open. Chain heads and idempotency keys of ``p`` live in compacted
topics, partition ``p``, written in the same transaction as the chained
records and the consumed offsets, so after any crash memory is rebuilt from
exactly what was committed: no gap, no duplicate, no fork.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from libs.common import deadletter, kafka
from libs.common.health import Health
from libs.common.logs import Logger
from libs.common.metrics import ChainerMetrics
from libs.common.settings import Settings
from services.chainer.logic import (
    IdemEntry,
    InvalidRecord,
    PartitionState,
    Staged,
    chain_record,
    decode_head,
    encode_head,
)

STATE_READ_TIMEOUT_S = 120.0


@dataclass(slots=True)
class Owned:
    partition: int
    producer: AIOKafkaProducer
    state: PartitionState = field(default_factory=PartitionState)
    next_offset: int = 0


class Chainer:
    """The single writer of the chains of the raw partitions it owns.

    It MUST NOT apply a batch's new heads in memory before the transaction
    that carries the batch's chained records, heads and consumed offsets
    has committed; on any failure it MUST rebuild the partition's state
    from Kafka and resume from the committed offset.
    """

    def __init__(self, settings: Settings, log: Logger, metrics: ChainerMetrics) -> None:
        self.settings = settings
        self.log = log
        self.metrics = metrics
        self.names = settings.topics
        self.group_id = self.names.group("chainer")
        self.owned: dict[int, Owned] = {}
        self.lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.consumer = kafka.consumer(settings, group=self.group_id)
        self.health = Health(needs=("kafka",))
        # Reads the compacted state topics; read_committed, so it sees
        # exactly what committed transactions wrote.
        self.state_reader = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )

    # -- lifecycle -----------------------------------------------------------

    async def run(self) -> None:
        await self.state_reader.start()
        await self.consumer.start()
        self.consumer.subscribe([self.names.raw], listener=_Listener(self))
        self.health.up("kafka")
        self.log.info("chainer.started", bootstrap=self.settings.kafka_bootstrap)
        try:
            while not self.stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=20_000)
                kafka.observe_lag(
                    self.consumer, batches, self.metrics.lag, self.metrics.batch_records
                )
                if batches:
                    async with self.lock:
                        await asyncio.gather(
                            *(self._process(tp, recs) for tp, recs in batches.items())
                        )
        finally:
            async with self.lock:
                for p in list(self.owned):
                    await self._release(p)
            await self.consumer.stop()
            await self.state_reader.stop()
            self.log.info("chainer.stopped")

    def stop(self) -> None:
        self.stopping.set()

    # -- ownership -----------------------------------------------------------

    async def _acquire(self, partitions: list[int]) -> None:
        """Take ownership: fence previous owners, rebuild state, seek.

        Done for all newly assigned partitions at once: a rebalance
        callback that takes long gets this member thrown out of the group.
        """
        producers = [self._producer(p) for p in partitions]
        # init_transactions fences the previous owner and aborts what it left open
        await asyncio.gather(*(producer.start() for producer in producers))
        states = await self._read_states(partitions)
        for p, producer in zip(partitions, producers, strict=True):
            owned = Owned(p, producer, states[p])
            self.owned[p] = owned
            raw_tp = TopicPartition(self.names.raw, p)
            committed = await self.consumer.committed(raw_tp)
            if committed is None:
                await self.consumer.seek_to_beginning(raw_tp)
                owned.next_offset = 0
            else:
                self.consumer.seek(raw_tp, committed)
                owned.next_offset = committed
            self.log.info(
                "chainer.partition_loaded",
                partition=p,
                workspaces=len(owned.state.heads),
                idempotency_keys=len(owned.state.idem),
                offset=owned.next_offset,
            )

    def _producer(self, partition: int) -> AIOKafkaProducer:
        return kafka.producer(
            self.settings,
            # Namespaced like the group: transactional ids are broker-wide, and a
            # second installation (a test namespace) must not fence this one.
            transactional_id=f"{self.group_id}-p{partition}",
            linger_ms=5,
        )

    async def _release(self, partition: int) -> None:
        owned = self.owned.pop(partition, None)
        if owned is not None:
            await owned.producer.stop()

    async def _read_states(self, partitions: list[int]) -> dict[int, PartitionState]:
        """Heads and idempotency keys of ``partitions``, as committed in Kafka."""
        states = {p: PartitionState() for p in partitions}
        tps = [
            TopicPartition(t, p)
            for p in partitions
            for t in (self.names.heads, self.names.idempotency)
        ]
        reader = self.state_reader
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        end = await reader.end_offsets(tps)
        deadline = time.monotonic() + STATE_READ_TIMEOUT_S
        pending = [tp for tp in tps if end[tp] > 0]
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading chain state of partitions {partitions} timed out")
            for tp, recs in (await reader.getmany(*pending, timeout_ms=200)).items():
                state = states[tp.partition]
                for r in recs:
                    if r.value is None or r.key is None:
                        continue
                    if tp.topic == self.names.heads:
                        state.heads[r.key.decode()] = decode_head(r.value)
                    else:
                        state.idem[r.key.decode()] = IdemEntry.decode(r.value)
            pending = [tp for tp in pending if await reader.position(tp) < end[tp]]
        reader.assign([])
        now = time.time()
        for state in states.values():
            state.prune(now)
        return states

    # -- processing ----------------------------------------------------------

    async def _process(self, tp: TopicPartition, records: list) -> None:  # type: ignore[type-arg]
        owned = self.owned.get(tp.partition)
        if owned is None:
            return
        records = [r for r in records if r.offset >= owned.next_offset]
        if not records:
            return
        staged = Staged(owned.state)
        started = time.perf_counter()
        now = time.time()
        out: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        chained = 0
        dead = 0
        for r in records:
            try:
                ws, segment = chain_record(staged, r.value, now)
            except InvalidRecord as bad:
                dlq = deadletter.headers(tp, r.offset, bad.reason, "chainer")
                out.append((self.names.dead_letter, r.key, r.value or b"", dlq))
                dead += 1
                self.log.warning(
                    "chain.dead_lettered",
                    partition=tp.partition,
                    offset=r.offset,
                    reason=bad.reason,
                )
                continue
            if segment is not None:
                out.append((self.names.chained, ws.encode(), segment, []))
                chained += segment.count(b"\n") + 1
        for ws, head in staged.heads.items():
            out.append((self.names.heads, ws.encode(), encode_head(head), []))
        for k, entry in staged.idem.items():
            out.append((self.names.idempotency, k.encode(), entry.encode(), []))
        next_offset = records[-1].offset + 1
        producer = owned.producer
        try:
            await producer.begin_transaction()
            for topic, key, value, headers in out:
                await producer.send(topic, value, key=key, partition=tp.partition, headers=headers)
            await producer.send_offsets_to_transaction({tp: next_offset}, self.group_id)
            await producer.commit_transaction()
        except ProducerFenced:
            self.metrics.transactions.labels("fenced").inc()
            self.log.warning("chainer.fenced", partition=tp.partition)
            await self._release(tp.partition)
            return
        except KafkaError as exc:
            self.metrics.transactions.labels("failed").inc()
            self.log.error("chainer.transaction_failed", partition=tp.partition, error=repr(exc))
            await self._reset(owned)
            return
        staged.apply()
        owned.next_offset = next_offset
        self.metrics.transactions.labels("committed").inc()
        self.metrics.events.inc(chained)
        self.metrics.duplicates.inc(staged.duplicates)
        self.metrics.dead_lettered.inc(dead)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        if staged.heads:
            last_ws, last_head = next(reversed(staged.heads.items()))
            self.log.info(
                "chain.extended",
                partition=tp.partition,
                events=chained,
                duplicates=staged.duplicates,
                workspaces=len(staged.heads),
                workspace_id=last_ws,
                head_seq=last_head.seq,
            )

    async def _reset(self, owned: Owned) -> None:
        """After a failed transaction: new producer (aborts), state from Kafka."""
        p = owned.partition
        await self._release(p)
        if p in {tp.partition for tp in self.consumer.assignment()}:
            await self._acquire([p])


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, chainer: Chainer) -> None:
        self.chainer = chainer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.chainer.lock:
            for tp in revoked:
                await self.chainer._release(tp.partition)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.chainer.lock:
            new = sorted(tp.partition for tp in assigned if tp.partition not in self.chainer.owned)
            if new:
                await self.chainer._acquire(new)
            self.chainer.log.info(
                "chainer.assigned", partitions=sorted(self.chainer.owned), count=len(assigned)
            )
