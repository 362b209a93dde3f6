"""Kafka clients configured the one way every service uses them.

Consumers read committed data only, commit by hand, start from the earliest
record of a new group and fetch large batches with a short wait; producers
wait for every replica and are idempotent.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

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
