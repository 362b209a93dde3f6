"""The Merkle tree of each workspace's log, and the checkpoints that sign it.

Runs in the exporter, after the events are stored. For each workspace
whose stored events run past its tree, it appends the next leaves in seq
order (leaf ``seq - 1`` = SHA-256(0x00 ‖ event hash), RFC 9162), writes
every node each leaf completes (``merkle_nodes``, never rewritten) and the
tree's new size and right edge (``merkle_state``), in one transaction that
holds the workspace's state row: two exporters never grow one tree at once.

A checkpoint (C2SP tlog-checkpoint, an Ed25519 signed note naming the
workspace's log, its size and root, and a ``timestamp`` extension line) is
signed when the tree has grown by ``CHAINLOG_CHECKPOINT_EVENTS`` or its last
checkpoint is ``CHAINLOG_CHECKPOINT_SECONDS`` old, and on a heartbeat
(``CHAINLOG_CHECKPOINT_HEARTBEAT_SECONDS``) even when nothing arrived, so an
idle log still proves its size at a time. The tree lives in PostgreSQL, so
a restarted signer signs the same size with the same root: it cannot fork.

Each new checkpoint is also queued, in the same transaction, for the
webhook endpoints that asked for checkpoints; log streams that include
checkpoints pick it up from the table. Both are copies outside the
operator's database: witnesses (docs/proofs.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.common import checkpoint as notes
from libs.common import logkey
from libs.common.db import DATABASE_UNAVAILABLE
from libs.common.logs import Logger
from libs.common.merkle import CompactRange, event_leaf_hash
from libs.common.secretbox import SecretBox
from libs.common.settings import Settings
from libs.common.timeutil import uuid7

#: Leaves appended per workspace per transaction: big trees catch up in steps.
STEP = 10_000
POLL_S = 1.0

BEHIND = (
    "SELECT w.id FROM workspaces w LEFT JOIN merkle_state m ON m.workspace_id = w.id"
    " WHERE EXISTS (SELECT 1 FROM events e WHERE e.workspace_id = w.id"
    " AND e.seq = coalesce(m.size, 0) + 1)"
    # newest first: a new workspace's first checkpoint does not wait behind
    # an old workspace's first million leaves
    " ORDER BY w.created_at DESC"
)
#: A pass over the trees that are behind stops after this long, to sign
#: what is due and look again for newer workspaces first.
PASS_BUDGET_S = 2.0
DUE = (
    "SELECT m.workspace_id, m.size, m.frontier FROM merkle_state m"
    " LEFT JOIN LATERAL (SELECT size, created_at FROM checkpoints c"
    "   WHERE c.workspace_id = m.workspace_id ORDER BY created_at DESC LIMIT 1) c ON true"
    " WHERE c.size IS NULL"
    " OR (m.size > c.size AND (m.size - c.size >= $1"
    "     OR c.created_at < now() - make_interval(secs => $2)))"
    " OR c.created_at < now() - make_interval(secs => $3)"
)

WITNESSES = (
    "SELECT id FROM webhook_endpoints"
    " WHERE workspace_id = $1 AND checkpoints AND deleted_at IS NULL"
)


class Transparency:
    def __init__(self, settings: Settings, log: Logger, pool: asyncpg.Pool, box: SecretBox) -> None:
        self.settings = settings
        self.log = log
        self.pool = pool
        self.box = box
        self.stopping = asyncio.Event()
        self.key: tuple[str, Ed25519PrivateKey] | None = None

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.key is None:
                    self.key = await logkey.load(self.pool, self.box, self.settings.log_name)
                busy = await self.step()
            except DATABASE_UNAVAILABLE as exc:
                self.log.warning("transparency.database_unavailable", error=repr(exc))
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await self.stopping.wait()

    async def step(self) -> bool:
        """Grow every tree that is behind by up to STEP leaves, then sign what is due."""
        grown = 0
        budget = time.monotonic() + PASS_BUDGET_S
        for r in await self.pool.fetch(BEHIND):
            grown += await self.grow(str(r["id"]))
            if time.monotonic() > budget:
                break
        await self.sign_due()
        return grown > 0 and time.monotonic() > budget

    async def grow(self, workspace_id: str) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO merkle_state (workspace_id, size, frontier) VALUES ($1, 0, $2)"
                " ON CONFLICT DO NOTHING",
                workspace_id,
                CompactRange().to_bytes(),
            )
            state = await conn.fetchrow(
                "SELECT size, frontier FROM merkle_state WHERE workspace_id = $1 FOR UPDATE",
                workspace_id,
            )
            tree = CompactRange.from_bytes(state["frontier"])
            rows = await conn.fetch(
                "SELECT seq, hash FROM events WHERE workspace_id = $1 AND seq > $2"
                " ORDER BY seq LIMIT $3",
                workspace_id,
                tree.size,
                STEP,
            )
            nodes: list[tuple[int, int, bytes]] = []
            for seq, digest in rows:
                if seq != tree.size + 1:
                    break  # not stored yet (or removed): the tree waits
                nodes.extend(tree.append(event_leaf_hash(digest)))
            if not nodes:
                return 0
            levels, indexes, hashes = zip(*nodes, strict=True)
            await conn.execute(
                "INSERT INTO merkle_nodes (workspace_id, level, idx, hash)"
                " SELECT $1, * FROM unnest($2::int2[], $3::int8[], $4::bytea[])"
                " ON CONFLICT DO NOTHING",
                workspace_id,
                list(levels),
                list(indexes),
                list(hashes),
            )
            await conn.execute(
                "UPDATE merkle_state SET size = $2, frontier = $3, updated_at = now()"
                " WHERE workspace_id = $1",
                workspace_id,
                tree.size,
                tree.to_bytes(),
            )
            return len(rows)

    async def sign_due(self) -> list[dict[str, Any]]:
        assert self.key is not None
        name, private = self.key
        s = self.settings
        signed = []
        for r in await self.pool.fetch(
            DUE,
            s.checkpoint_events,
            float(s.checkpoint_seconds),
            float(s.checkpoint_heartbeat_seconds),
        ):
            workspace_id = str(r["workspace_id"])
            tree = CompactRange.from_bytes(r["frontier"])
            cp = notes.Checkpoint(
                notes.workspace_origin(workspace_id, s.log_name),
                tree.size,
                tree.root(),
                (f"timestamp {int(time.time())}",),
            )
            note = notes.sign_checkpoint(cp, name, private)
            checkpoint_id = uuid7()
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO checkpoints (id, workspace_id, size, root, note)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    checkpoint_id,
                    workspace_id,
                    cp.size,
                    cp.root,
                    note,
                )
                # Witnesses: the webhook endpoints that asked for checkpoints
                # get it through the alerter's outbox, written with it.
                endpoints = await conn.fetch(WITNESSES, workspace_id)
                if endpoints:
                    await conn.executemany(
                        "INSERT INTO alert_deliveries"
                        " (id, checkpoint_id, workspace_id, channel, webhook_endpoint_id)"
                        " VALUES ($1, $2, $3, 'webhook', $4)",
                        [(uuid7(), checkpoint_id, workspace_id, e["id"]) for e in endpoints],
                    )
            signed.append({"workspace_id": workspace_id, "size": cp.size})
        return signed
