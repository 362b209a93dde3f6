"""The alerter's evaluator: enriched events through the workspace's rules.

Exactly-once in effect, with PostgreSQL as the only state. For each batch,
one database transaction writes the new rule state (windows, seen sets,
cooldowns), the alerts and their deliveries (the outbox the deliverer
drains), and each workspace's ``last_seq``. Kafka offsets are committed
afterwards and only as a hint: an event at or below ``last_seq`` is skipped,
so a replay after a crash (or a record the enricher republished) has no
effect. ``last_seq`` advances by compare-and-set, so a member that lost a
partition in a rebalance and still finishes a batch cannot commit over the
new owner: its transaction is refused and it reloads.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from libs.common import enrichment, kafka
from libs.common.chain import iter_segment
from libs.common.db import DATABASE_UNAVAILABLE
from libs.common.health import Health
from libs.common.logs import Logger
from libs.common.metrics import AlerterMetrics
from libs.common.settings import Settings
from libs.common.timeutil import parse_stored_ts, uuid7
from services.alerter import engine
from services.alerter.rules.base import AlertEvent

#: Key states kept in memory per partition before the oldest are dropped
#: (they are in PostgreSQL; a dropped one is read again when needed).
CACHE_LIMIT = 200_000


ALERTER_FETCH_WAIT_MS = 250


class Conflict(Exception):
    """Another member advanced a workspace first: this member lost the partition."""


@dataclass
class Line:
    """One event of the batch, decoded enough for the rules."""

    partition: int
    workspace_id: str
    event: AlertEvent
    digest: str
    body: dict[str, Any]
    geo: enrichment.Geo

    def payload(self) -> dict[str, Any]:
        """The event as the API serves it: stored fields, hash, geolocation."""
        return {
            **self.body,
            "hash": self.digest,
            "ip_country": self.geo[0],
            "ip_city": self.geo[1],
        }


@dataclass
class PartitionCache:
    progress: dict[str, int] = field(default_factory=dict)
    states: dict[engine.StateKey, engine.KeyState | None] = field(default_factory=dict)


def decode(tp: TopicPartition, value: bytes | None, headers: Any) -> list[Line]:
    """The events of one enriched record; lines that are not events are skipped.

    The exporter dead-letters an unusable record; the alerter only reads.
    """
    lines = list(iter_segment(value or b""))
    geo = enrichment.decode(headers, len(lines))
    out = []
    for (digest, raw), g in zip(lines, geo, strict=True):
        try:
            ev = orjson.loads(raw)
            received = parse_stored_ts(ev["received_at"])
            event = AlertEvent(
                event_id=ev["id"],
                seq=ev["seq"],
                action=ev["action"],
                actor_id=ev["actor_id"],
                occurred_at=parse_stored_ts(ev["occurred_at"]) if "occurred_at" in ev else received,
                received_at=received,
                ip_address=ev.get("ip_address"),
                ip_country=g[0],
                ip_city=g[1],
            )
            out.append(Line(tp.partition, ev["workspace_id"], event, digest, ev, g))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return out


RULES_SQL = """
SELECT id, workspace_id, name, rule_type, conditions, channels, email_recipients,
       webhook_endpoint_ids, cooldown_seconds, version, created_at
FROM alert_rules
WHERE workspace_id = ANY($1::uuid[]) AND enabled AND deleted_at IS NULL
ORDER BY created_at, id
"""


def rule_from_row(r: asyncpg.Record) -> engine.Rule:
    ids = r["webhook_endpoint_ids"]
    return engine.Rule(
        id=str(r["id"]),
        workspace_id=str(r["workspace_id"]),
        name=r["name"],
        rule_type=r["rule_type"],
        conditions=orjson.loads(r["conditions"]),
        channels=tuple(r["channels"]),
        email_recipients=tuple(r["email_recipients"]),
        webhook_endpoint_ids=None if ids is None else tuple(str(i) for i in ids),
        cooldown_seconds=r["cooldown_seconds"],
        version=r["version"],
        created_at=r["created_at"],
    )


class Alerter:
    def __init__(
        self,
        settings: Settings,
        log: Logger,
        metrics: AlerterMetrics,
        on_alerts: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.names = settings.topics
        self.log = log
        self.metrics = metrics
        self.on_alerts = on_alerts
        self.stopping = asyncio.Event()
        self.lock = asyncio.Lock()
        self.caches: dict[int, PartitionCache] = defaultdict(PartitionCache)
        # Off the query path: fewer, bigger fetches (alerts come within a
        # fraction of a second anyway) leave the CPU to the pipeline.
        self.consumer = kafka.consumer(
            settings,
            group=self.names.group("alerter"),
            fetch_max_wait_ms=ALERTER_FETCH_WAIT_MS,
            fetch_min_bytes=256 * 1024,
        )
        self.pool: asyncpg.Pool | None = None
        self.health = Health(needs=("kafka", "postgres"))

    def stop(self) -> None:
        self.stopping.set()

    async def run(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        await self.consumer.start()
        self.consumer.subscribe([self.names.enriched], listener=_Listener(self))
        self.health.up("kafka")
        self.health.up("postgres")
        self.log.info("alerter.started")
        try:
            while not self.stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=2_000)
                kafka.observe_lag(
                    self.consumer, batches, self.metrics.lag, self.metrics.batch_records
                )
                if not batches:
                    continue
                async with self.lock:
                    await self._handle(batches)
        finally:
            await self.consumer.stop()
            self.log.info("alerter.stopped")

    async def _handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        records = [(tp, r) for tp, recs in batches.items() for r in recs]
        partitions = {tp.partition for tp in batches}
        delay = 0.2
        while True:
            try:
                with self.metrics.batch_seconds.time():
                    rules = await self._rules(records)
                    # A workspace without rules costs nothing more: its
                    # records are not even decoded. A rule applies only to
                    # events received after its creation, so nothing it
                    # should have seen is skipped.
                    lines = [
                        line
                        for tp, r in records
                        if r.key is None or r.key.decode() in rules
                        for line in decode(tp, r.value, r.headers)
                    ]
                    fired = await self._process(lines, rules)
                self.health.up("postgres")
                break
            except Conflict as exc:
                self.log.warning("alerter.conflict", error=str(exc))
                self.metrics.conflicts.inc()
                for p in partitions:
                    self.caches.pop(p, None)
            except DATABASE_UNAVAILABLE as exc:
                self.log.warning("alerter.database_unavailable", error=repr(exc), retry_in_s=delay)
                self.health.down("postgres", repr(exc)[:200])
                for p in partitions:
                    self.caches.pop(p, None)
                assert self.pool is not None
                await self.pool.expire_connections()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.metrics.events.inc(len(lines))
        if fired:
            self.metrics.alerts.inc(fired)
            self.on_alerts()
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            self.log.warning("alerter.commit_skipped", error=repr(exc))

    async def _rules(
        self, records: list[tuple[TopicPartition, Any]]
    ) -> dict[str, list[engine.Rule]]:
        """The enabled rules of the batch's workspaces (records are keyed by workspace)."""
        assert self.pool is not None
        workspaces = sorted({r.key.decode() for _, r in records if r.key is not None})
        rules_by_ws: dict[str, list[engine.Rule]] = defaultdict(list)
        for row in await self.pool.fetch(RULES_SQL, workspaces):
            rule = rule_from_row(row)
            rules_by_ws[rule.workspace_id].append(rule)
        return rules_by_ws

    async def _process(self, lines: list[Line], rules_by_ws: dict[str, list[engine.Rule]]) -> int:
        """Evaluate and commit one batch; returns the number of alerts raised."""
        assert self.pool is not None
        if not lines:
            return 0
        async with self.pool.acquire() as conn:
            await self._load_progress(conn, lines)
            # Events already committed (a replay, or a record the enricher
            # published twice) have no effect.
            todo: list[Line] = []
            seen: dict[str, int] = {}
            for line in lines:
                ws = line.workspace_id
                last = seen.get(ws, self.caches[line.partition].progress[ws])
                if line.event.seq > last:
                    todo.append(line)
                    seen[ws] = line.event.seq
            applies = [
                engine.applicable(rules_by_ws.get(line.workspace_id, ()), line.event)
                for line in todo
            ]
            await self._load_states(conn, todo, applies)

            out = engine.Outcome()
            advanced: dict[str, tuple[int, int, int]] = {}  # ws -> (partition, before, after)
            for line, pairs in zip(todo, applies, strict=True):
                cache = self.caches[line.partition]
                engine.evaluate(pairs, line.event, line, cache.states.get, out)
                ws = line.workspace_id
                before = advanced[ws][1] if ws in advanced else cache.progress[ws]
                advanced[ws] = (line.partition, before, line.event.seq)
            if not advanced:
                return 0
            async with conn.transaction():
                await self._advance(conn, advanced)
                await self._write_states(conn, out.staged)
                await self._write_alerts(conn, out.fired)
        # Committed: memory may now move on.
        for ws, (p, _, after) in advanced.items():
            self.caches[p].progress[ws] = after
        for sk, ks in out.staged.items():
            self.caches[advanced[ks.workspace_id][0]].states[sk] = ks
        for p in {line.partition for line in lines}:
            cache = self.caches[p]
            while len(cache.states) > CACHE_LIMIT:
                cache.states.pop(next(iter(cache.states)))
        return len(out.fired)

    async def _load_progress(self, conn: asyncpg.Connection, lines: list[Line]) -> None:
        missing = sorted(
            {
                line.workspace_id
                for line in lines
                if line.workspace_id not in self.caches[line.partition].progress
            }
        )
        if not missing:
            return
        rows = await conn.fetch(
            "SELECT workspace_id, last_seq FROM alerter_progress"
            " WHERE workspace_id = ANY($1::uuid[])",
            missing,
        )
        found = {str(r["workspace_id"]): r["last_seq"] for r in rows}
        for line in lines:
            progress = self.caches[line.partition].progress
            if line.workspace_id not in progress:
                progress[line.workspace_id] = found.get(line.workspace_id, 0)

    async def _load_states(
        self,
        conn: asyncpg.Connection,
        lines: list[Line],
        applies: list[list[tuple[engine.Rule, str]]],
    ) -> None:
        wanted: dict[engine.StateKey, int] = {}
        for line, pairs in zip(lines, applies, strict=True):
            states = self.caches[line.partition].states
            for rule, key in pairs:
                sk = (rule.id, key)
                if sk not in states:
                    wanted[sk] = line.partition
        if not wanted:
            return
        keys = list(wanted)
        rows = await conn.fetch(
            "SELECT s.rule_id, s.key, s.workspace_id, s.rule_version, s.state, s.cooldown_until"
            " FROM alerter_state s"
            " JOIN unnest($1::uuid[], $2::text[]) AS k(rule_id, key)"
            "   ON s.rule_id = k.rule_id AND s.key = k.key",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        for sk, p in wanted.items():
            self.caches[p].states[sk] = None
        for r in rows:
            sk = (str(r["rule_id"]), r["key"])
            self.caches[wanted[sk]].states[sk] = engine.KeyState(
                str(r["workspace_id"]),
                r["rule_version"],
                None if r["state"] is None else orjson.loads(r["state"]),
                r["cooldown_until"],
            )

    async def _advance(
        self, conn: asyncpg.Connection, advanced: dict[str, tuple[int, int, int]]
    ) -> None:
        workspaces = sorted(advanced)
        await conn.execute(
            "INSERT INTO alerter_progress (workspace_id, last_seq)"
            " SELECT unnest($1::uuid[]), 0 ON CONFLICT DO NOTHING",
            workspaces,
        )
        rows = await conn.fetch(
            "SELECT workspace_id, last_seq FROM alerter_progress"
            " WHERE workspace_id = ANY($1::uuid[]) ORDER BY workspace_id FOR UPDATE",
            workspaces,
        )
        for r in rows:
            ws = str(r["workspace_id"])
            if r["last_seq"] != advanced[ws][1]:
                raise Conflict(
                    f"workspace {ws} is at seq {r['last_seq']}, expected {advanced[ws][1]}"
                )
        await conn.execute(
            "UPDATE alerter_progress p SET last_seq = v.last_seq"
            " FROM unnest($1::uuid[], $2::int8[]) AS v(workspace_id, last_seq)"
            " WHERE p.workspace_id = v.workspace_id",
            workspaces,
            [advanced[ws][2] for ws in workspaces],
        )

    @staticmethod
    async def _write_states(
        conn: asyncpg.Connection, staged: dict[engine.StateKey, engine.KeyState]
    ) -> None:
        if not staged:
            return
        keys = list(staged)
        await conn.execute(
            "INSERT INTO alerter_state"
            " (rule_id, key, workspace_id, rule_version, state, cooldown_until)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::int4[],"
            "   $5::jsonb[], $6::int8[])"
            " ON CONFLICT (rule_id, key) DO UPDATE SET"
            "   rule_version = EXCLUDED.rule_version, state = EXCLUDED.state,"
            "   cooldown_until = EXCLUDED.cooldown_until",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [staged[k].workspace_id for k in keys],
            [staged[k].rule_version for k in keys],
            [
                None if staged[k].state is None else orjson.dumps(staged[k].state).decode()
                for k in keys
            ],
            [staged[k].cooldown_until for k in keys],
        )

    async def _write_alerts(self, conn: asyncpg.Connection, fired: list[engine.Fired]) -> None:
        if not fired:
            return
        await write_alerts(
            conn,
            [
                NewAlert(f.rule, f.event.event_id, f.event.seq, f.reason, f.ref.payload())
                for f in fired
            ],
        )
        for f in fired:
            self.log.info(
                "alert.raised",
                workspace_id=f.rule.workspace_id,
                rule_id=f.rule.id,
                rule_type=f.rule.rule_type,
                event_id=f.event.event_id,
            )


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An alert to raise: the rule, the event (id and seq) it is about, why, what it shows."""

    rule: engine.Rule
    event_id: str
    seq: int
    reason: str
    payload: dict[str, Any]


async def write_alerts(conn: asyncpg.Connection, new: list[NewAlert]) -> set[str]:
    """Insert alerts with their deliveries (the outbox), in the caller's transaction.

    One alert per rule and seq: an alert raised again (a replay, the next
    verification run) is not repeated. Returns the ids inserted.
    """
    if not new:
        return set()
    workspaces = sorted({a.rule.workspace_id for a in new})
    endpoints: dict[str, list[str]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT id, workspace_id FROM webhook_endpoints"
        " WHERE workspace_id = ANY($1::uuid[]) AND deleted_at IS NULL ORDER BY created_at",
        workspaces,
    ):
        endpoints[str(r["workspace_id"])].append(str(r["id"]))
    admins: dict[str, list[str]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT workspace_id, email FROM workspace_members"
        " WHERE workspace_id = ANY($1::uuid[]) AND role IN ('owner', 'admin')"
        " ORDER BY email",
        workspaces,
    ):
        admins[str(r["workspace_id"])].append(r["email"])
    now = datetime.now(UTC)
    alerts: list[tuple[Any, ...]] = []
    deliveries: list[tuple[Any, ...]] = []
    for a in new:
        alert_id = uuid7()
        alerts.append(
            (
                alert_id,
                a.rule.workspace_id,
                a.rule.id,
                a.rule.name,
                a.rule.rule_type,
                a.event_id,
                a.seq,
                a.reason,
                now,
                orjson.dumps(a.payload).decode(),
            )
        )
        ws = a.rule.workspace_id
        if "webhook" in a.rule.channels:
            targets = endpoints[ws]
            if a.rule.webhook_endpoint_ids is not None:
                targets = [e for e in targets if e in a.rule.webhook_endpoint_ids]
            for endpoint in targets:
                deliveries.append((uuid7(), alert_id, ws, "webhook", endpoint, None))
        if "email" in a.rule.channels:
            recipients = list(a.rule.email_recipients) or admins[ws]
            if recipients:
                deliveries.append((uuid7(), alert_id, ws, "email", None, recipients))
    inserted = await conn.fetch(
        "INSERT INTO alerts (id, workspace_id, rule_id, rule_name, rule_type, event_id,"
        "  event_seq, reason, triggered_at, event)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],"
        "   $6::uuid[], $7::int8[], $8::text[], $9::timestamptz[], $10::jsonb[])"
        " ON CONFLICT (rule_id, event_seq) DO NOTHING RETURNING id",
        *[list(c) for c in zip(*alerts, strict=True)],
    )
    kept = {str(r["id"]) for r in inserted}
    for d in deliveries:
        if d[1] in kept:
            await conn.execute(
                "INSERT INTO alert_deliveries"
                " (id, alert_id, workspace_id, channel, webhook_endpoint_id, recipients)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                *d,
            )
    return kept


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Waits for the batch in hand before partitions move, and forgets them."""

    def __init__(self, alerter: Alerter) -> None:
        self.alerter = alerter

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.alerter.lock:
            for tp in revoked:
                self.alerter.caches.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.alerter.lock:
            for tp in assigned:
                # State is read from PostgreSQL on first use, never trusted from before.
                self.alerter.caches.pop(tp.partition, None)
            self.alerter.log.info(
                "alerter.assigned", partitions=sorted(tp.partition for tp in assigned)
            )
