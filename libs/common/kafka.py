"""Kafka clients configured the one way every service uses them.

Consumers read committed data only, commit by hand, start from the earliest
record of a new group and fetch large batches with a short wait; producers
wait for every replica and are idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Gauge, Histogram

from libs.common import topics
from libs.common.settings import Settings


def consumer(
    settings: Settings,
    *subscribe: str,
    group: str | None,
    fetch_max_wait_ms: int = topics.FETCH_MAX_WAIT_MS,
    **extra: Any,
) -> AIOKafkaConsumer:
    """A manual-commit, read_committed consumer of ``subscribe`` in ``group``.

    ``fetch_max_wait_ms`` trades latency for CPU: a consumer off the query
    path (the alerter) waits longer and takes bigger fetches.
    """
    return AIOKafkaConsumer(
        *subscribe,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=topics.MAX_MESSAGE_BYTES,
        fetch_max_bytes=4 * topics.MAX_MESSAGE_BYTES,
        fetch_max_wait_ms=fetch_max_wait_ms,
        **extra,
    )


def producer(settings: Settings, **extra: Any) -> AIOKafkaProducer:
    """An idempotent ``acks=all`` producer that takes our largest records."""
    options: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": topics.MAX_MESSAGE_BYTES + 1024 * 1024,
    }
    options.update(extra)
    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **options)


def observe_lag(
    consumer: AIOKafkaConsumer,
    batches: Mapping[TopicPartition, Sequence[Any]],
    gauge: Gauge,
    sizes: Histogram | None = None,
) -> None:
    """Set ``gauge`` (label ``partition``) to the records left after each batch.

    The high watermark comes with every fetch; on a transactional topic it
    counts the commit marker too, so a caught-up partition may show 1.
    """
    if sizes is not None and batches:
        sizes.observe(sum(len(r) for r in batches.values()))
    for tp, records in batches.items():
        high = consumer.highwater(tp)
        if high is not None and records:
            gauge.labels(str(tp.partition)).set(max(0, high - records[-1].offset - 1))


def backlog(
    tps: Sequence[TopicPartition],
    end: Mapping[TopicPartition, int],
    begin: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, Any],
    *,
    transactional: bool,
) -> int:
    """Records after a group's committed offsets (the beginning where none is).

    A transactionally written partition always ends with a commit marker,
    which takes an offset and is never returned to (nor committed by) a
    consumer: with ``transactional``, one behind is caught up. Markers inside
    the remaining range still count, so a large lag is a slight overestimate.
    """
    done = {tp: o.offset for tp, o in committed.items() if o.offset >= 0}
    lags = [end[tp] - done.get(tp, begin[tp]) for tp in tps]
    if transactional:
        lags = [max(0, n - 1) for n in lags]
    return int(sum(lags))


async def group_lag(
    settings: Settings, topic: str, group: str, *, transactional: bool = False
) -> int | None:
    """Records of ``topic`` not yet committed by ``group``; None if Kafka does not answer.

    A transactionally written partition ends with a commit marker that no
    consumer commits past: ``transactional`` counts one behind as caught up.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        await admin.start()
        await reader.start()
        (desc,) = await admin.describe_topics([topic])
        tps = [TopicPartition(topic, p["partition"]) for p in desc["partitions"]]
        end = await reader.end_offsets(tps)
        begin = await reader.beginning_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        return backlog(tps, end, begin, committed, transactional=transactional)
    except (KafkaError, OSError, TimeoutError, ValueError):
        return None
    finally:
        await reader.stop()
        await admin.close()
