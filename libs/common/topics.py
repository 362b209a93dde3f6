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

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: How long a consumer's fetch may wait at the broker for data. Short, so
#: an event crosses each hop quickly when traffic is light.
FETCH_MAX_WAIT_MS = 20


@dataclass(frozen=True, slots=True)
class Names:
    """Topic and consumer-group names under a namespace (``CHAINLOG_NAMESPACE``).

    The default namespace is empty. A non-empty one (``test``) gives a whole
    second installation on the same broker, e.g. for the test suite next
    to a running ``make up``.
    """

    namespace: str = ""

    def _n(self, name: str) -> str:
        return f"{self.namespace}.{name}" if self.namespace else name

    @property
    def raw(self) -> str:
        return self._n("audit.events.raw")

    @property
    def chained(self) -> str:
        return self._n("audit.events.chained")

    @property
    def enriched(self) -> str:
        return self._n("audit.events.enriched")

    @property
    def heads(self) -> str:
        return self._n("audit.chain.heads")

    @property
    def idempotency(self) -> str:
        return self._n("audit.chain.idempotency")

    @property
    def dead_letter(self) -> str:
        return self._n("audit.events.dlq")

    @property
    def export_requests(self) -> str:
        return self._n("audit.exports.requests")

    def group(self, service: str) -> str:
        return self._n(f"chainlog-{service}")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)


_BIG = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}


def specs(names: Names) -> tuple[TopicSpec, ...]:
    return (
        TopicSpec(names.raw, {**_BIG, "retention.ms": str(7 * 86_400_000)}),
        TopicSpec(names.chained, {**_BIG, "retention.ms": str(30 * 86_400_000)}),
        TopicSpec(names.enriched, {**_BIG, "retention.ms": str(30 * 86_400_000)}),
        # Heads MUST never expire: a lost head would restart a chain at seq 1.
        TopicSpec(names.heads, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}),
        # Idempotency keys are kept for their 24-hour window and then some.
        TopicSpec(
            names.idempotency,
            {"cleanup.policy": "compact,delete", "retention.ms": str(26 * 3_600_000)},
        ),
        TopicSpec(names.dead_letter, {**_BIG, "retention.ms": str(30 * 86_400_000)}),
        # A request outlives any job: one not done in a week has long failed.
        TopicSpec(names.export_requests, {"retention.ms": str(7 * 86_400_000)}),
    )


async def ensure_topics(bootstrap: str, partitions: int, names: Names) -> list[str]:
    """Create missing topics; returns the names created. Safe to repeat."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                t.name, num_partitions=partitions, replication_factor=1, topic_configs=t.config
            )
            for t in specs(names)
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
