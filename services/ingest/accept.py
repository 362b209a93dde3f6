"""Accepting events: validate, reserve idempotency keys, publish, answer.

An event is answered ``queued`` only after Kafka acknowledged the record
carrying it (``acks=all``, idempotent producer): an acknowledged event is
never lost. One request of one workspace is one raw record, so the chainer
links a whole batch at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from libs.common import errors, subjects
from libs.common.event import ADMIN_CATEGORY, validate_event
from libs.common.sealing import Privacy, seal_event
from libs.common.secretbox import SecretBox
from libs.common.timeutil import format_epoch_us, uuid7_batch
from services.ingest.schemas import SchemaSet


@dataclass(slots=True)
class Outcome:
    """Per-item results of one request, in the order of the request."""

    results: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    #: The receive time stamped on every event of the request (for receipts).
    received_at: str | None = None


def _reserved(event: dict[str, Any], at: str) -> list[dict[str, str]]:
    if event.get("action_category") == ADMIN_CATEGORY:
        return [
            {
                "field": at + "action_category",
                "message": "action_category 'admin' is reserved for Chainlog's own management events",
            }
        ]
    if event["action"].startswith("admin."):
        return [
            {
                "field": at + "action",
                "message": "actions under 'admin.' are reserved for Chainlog's own management events",
            }
        ]
    return []


_RESERVE = """
INSERT INTO idempotency_keys (workspace_id, key, event_id)
SELECT $1, k, e FROM unnest($2::text[], $3::uuid[]) AS t(k, e)
ON CONFLICT (workspace_id, key) DO UPDATE
  SET event_id = EXCLUDED.event_id, acked = false, created_at = now()
  WHERE idempotency_keys.created_at < now() - interval '24 hours'
RETURNING key
"""
_EXISTING = """
SELECT key, event_id, acked FROM idempotency_keys WHERE workspace_id = $1 AND key = ANY($2::text[])
"""
_ACK = "UPDATE idempotency_keys SET acked = true WHERE workspace_id = $1 AND key = ANY($2::text[])"


class Acceptor:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        pool: asyncpg.Pool,
        raw_topic: str,
        box: SecretBox | None = None,
    ) -> None:
        self.raw_topic = raw_topic
        self.producer = producer
        self.pool = pool
        #: Opens subjects' keys; needed only for workspaces with privacy on.
        self.box = box

    async def accept(
        self,
        workspace_id: str,
        items: list[Any],
        prefix: str,
        *,
        schemas: SchemaSet | None = None,
        strict: bool = False,
        system: bool = False,
        privacy: Privacy | None = None,
    ) -> Outcome:
        """Validate, check against the workspace's schemas, seal, publish.

        ``system`` is for Chainlog's own admin events: only they may use the
        ``admin`` category and ``admin.`` actions, and schemas do not apply.
        With ``privacy``, each event's personal fields are sealed under its
        subject's key before the record is built: no plaintext of them ever
        reaches Kafka (docs/privacy.md).
        """
        out = Outcome()
        valid: list[tuple[int, dict[str, Any]]] = []
        for i, raw in enumerate(items):
            at = prefix.format(i=i)
            event, violations = validate_event(raw, at)
            if event is not None and not system:
                violations = _reserved(event, at)
                if not violations and schemas:
                    problem = schemas.check(event["action"], event.get("metadata"))
                    if problem is not None:
                        if strict:
                            field = "metadata" if problem.startswith("metadata") else "action"
                            violations = [{"field": at + field, "message": problem}]
                        else:
                            event["schema_violation"] = problem
                if violations:
                    event = None
            if event is None:
                out.results.append(
                    {
                        "index": i,
                        "status": "rejected",
                        "error": "validation_failed",
                        "violations": violations,
                    }
                )
                out.rejected += 1
            else:
                valid.append((i, event))
                out.results.append({"index": i})
        if not valid:
            return out
        ids = uuid7_batch(len(valid))
        received_at = format_epoch_us(time.time_ns() // 1000)
        out.received_at = received_at
        for (_, event), event_id in zip(valid, ids, strict=True):
            event["id"] = event_id
            event["received_at"] = received_at

        keyed = [(i, ev) for i, ev in valid if "idempotency_key" in ev]
        duplicates: set[int] = set()
        if keyed:
            duplicates = await self._reserve(workspace_id, keyed, out)
        to_send = [ev for i, ev in valid if i not in duplicates]
        if to_send and privacy is not None:
            await self._seal(workspace_id, privacy, to_send)
        if to_send:
            record = orjson.dumps({"workspace_id": workspace_id, "events": to_send})
            try:
                await self.producer.send_and_wait(self.raw_topic, record, key=workspace_id.encode())
            except KafkaError as exc:
                raise errors.Pushback(
                    f"the event log is unavailable ({type(exc).__name__}); retry"
                ) from None
            if keyed:
                sent_keys = [ev["idempotency_key"] for i, ev in keyed if i not in duplicates]
                if sent_keys:
                    await self.pool.execute(_ACK, workspace_id, sent_keys)
        for i, ev in valid:
            if i not in duplicates:
                out.results[i] = {"index": i, "id": ev["id"], "status": "queued"}
                out.accepted += 1
        return out

    async def _seal(
        self, workspace_id: str, privacy: Privacy, events: list[dict[str, Any]]
    ) -> None:
        if self.box is None:
            raise RuntimeError("privacy is on but the gateway has no master key")
        sealed = [ev for ev in events if privacy.personal_paths(ev)]
        if not sealed:
            return
        try:
            keys = await subjects.live_keys(
                self.pool, self.box, workspace_id, (privacy.subject_of(ev) for ev in sealed)
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise errors.Pushback(
                f"subjects' keys are unavailable ({type(exc).__name__}); retry"
            ) from None
        for ev in sealed:
            kid, key = keys[privacy.subject_of(ev)]
            seal_event(ev, privacy, workspace_id, kid, key)

    async def _reserve(
        self, workspace_id: str, keyed: list[tuple[int, dict[str, Any]]], out: Outcome
    ) -> set[int]:
        """Reserve keys; returns the indexes answered as duplicates.

        A key seen and acknowledged within 24 hours is a duplicate. A key
        reserved but never acknowledged (a concurrent request, or a gateway
        that crashed before Kafka answered) is published again under the
        *same* event id, and the chainer keeps exactly one.
        """
        first: dict[str, dict[str, Any]] = {}
        repeats: list[tuple[int, dict[str, Any]]] = []  # the same key twice in one request
        for i, ev in keyed:
            k = ev["idempotency_key"]
            if k in first:
                repeats.append((i, first[k]))
            else:
                first[k] = ev
        keys_ = list(first)
        async with self.pool.acquire() as conn:
            reserved = await conn.fetch(
                _RESERVE, workspace_id, keys_, [ev["id"] for ev in first.values()]
            )
            fresh = {r["key"] for r in reserved}
            taken = [k for k in keys_ if k not in fresh]
            existing = (
                {r["key"]: r for r in await conn.fetch(_EXISTING, workspace_id, taken)}
                if taken
                else {}
            )
        duplicates = {i for i, _ in repeats}
        for i, ev in keyed:
            row = existing.get(ev["idempotency_key"])
            if row is not None and i not in duplicates:
                ev["id"] = str(row["event_id"])
                if row["acked"]:
                    out.results[i] = {"index": i, "id": ev["id"], "status": "duplicate"}
                    duplicates.add(i)
        for i, original in repeats:
            out.results[i] = {"index": i, "id": original["id"], "status": "duplicate"}
        return duplicates
