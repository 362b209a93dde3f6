"""Topic names and their configuration, and idempotent creation.

Every topic between services is partitioned by ``workspace_id`` with the
same partition count, so partition ``p`` of one topic holds the same
workspaces as partition ``p`` of every other: the chainer relies on it to
keep a workspace's chain, head and dedup state on one partition index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

RAW = "audit.events.raw"
CHAINED = "audit.events.chained"
ENRICHED = "audit.events.enriched"
HEADS = "audit.chain.heads"
IDEMPOTENCY = "audit.chain.idempotency"
DEAD_LETTER = "audit.events.dlq"

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)


_BIG = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}

TOPICS = (
    TopicSpec(RAW, {**_BIG, "retention.ms": str(7 * 86_400_000)}),
    TopicSpec(CHAINED, {**_BIG, "retention.ms": str(30 * 86_400_000)}),
    # Heads MUST never expire: a lost head would restart a chain at seq 1.
    TopicSpec(HEADS, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}),
    # Idempotency keys are kept for their 24-hour window and then some.
    TopicSpec(
        IDEMPOTENCY, {"cleanup.policy": "compact,delete", "retention.ms": str(26 * 3_600_000)}
    ),
    TopicSpec(DEAD_LETTER, {**_BIG, "retention.ms": str(30 * 86_400_000)}),
)


async def ensure_topics(bootstrap: str, partitions: int) -> list[str]:
    """Create missing topics; returns the names created. Safe to repeat."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                t.name, num_partitions=partitions, replication_factor=1, topic_configs=t.config
            )
            for t in TOPICS
            if t.name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won; the topics exist
        return [t.name for t in new]
    finally:
        await admin.close()
