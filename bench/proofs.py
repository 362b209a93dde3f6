"""Checkpoints and proofs at 1M events (issue 7).

1. Tree build: with the exporter stopped, the 1M-event fixture's tree is
   dropped and grown again by the exporter's own code (``Transparency.grow``,
   in this process, in its ``STEP``-leaf transactions), timed; the root must
   come out as before.
2. Proofs: inclusion proofs for random events and consistency proofs for
   random size pairs, through the API one at a time (what a client waits),
   each checked with ``libs.common.merkle``; p50/p99.
3. Signing: one checkpoint (C2SP note, Ed25519), in process.
4. Overhead on ingest: the end-to-end load with the tree builder on, then
   with the exporter restarted with ``CHAINLOG_TRANSPARENCY=false``,
   alternated; and how long the tree took to catch up after a loaded run.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from bench.load import summary_ms
from libs.common import checkpoint as notes
from libs.common.logs import Logger
from libs.common.merkle import CompactRange, event_leaf_hash, verify_consistency, verify_inclusion
from libs.common.secretbox import for_settings
from libs.common.settings import Settings
from services.exporter.transparency import Transparency

INCLUSION_PROOFS = 1000
CONSISTENCY_PROOFS = 300
SIGNATURES = 2000


async def rebuild_tree(pool: asyncpg.Pool, settings: Settings, workspace_id: str) -> dict[str, Any]:
    before = await pool.fetchrow(
        "SELECT size, frontier FROM merkle_state WHERE workspace_id = $1", workspace_id
    )
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM merkle_nodes WHERE workspace_id = $1", workspace_id)
        await conn.execute(
            "UPDATE merkle_state SET size = 0, frontier = $2 WHERE workspace_id = $1",
            workspace_id,
            CompactRange().to_bytes(),
        )
    builder = Transparency(settings, Logger("bench"), pool, for_settings(settings))
    t0 = time.perf_counter()
    grown = 0
    while step := await builder.grow(workspace_id):
        grown += step
    seconds = time.perf_counter() - t0
    after = await pool.fetchrow(
        "SELECT size, frontier FROM merkle_state WHERE workspace_id = $1", workspace_id
    )
    nodes = await pool.fetchval(
        "SELECT count(*) FROM merkle_nodes WHERE workspace_id = $1", workspace_id
    )
    same = before is None or (
        CompactRange.from_bytes(before["frontier"]).root()
        == CompactRange.from_bytes(after["frontier"]).root()
    )
    return {
        "leaves": after["size"],
        "grown_here": grown,  # the exporter may have taken some steps itself
        "seconds": seconds,
        "leaves_per_s": after["size"] / seconds if seconds else None,
        "nodes_stored": nodes,
        "same_root_as_before": same,
    }


async def _timed_get(
    http: httpx.AsyncClient, path: str, params: dict[str, str]
) -> tuple[httpx.Response, float]:
    """GET, waiting out the plan's rate limit (429 + Retry-After), which is not timed."""
    while True:
        t0 = time.perf_counter()
        r = await http.get(path, params=params)
        took = time.perf_counter() - t0
        if r.status_code != 429:
            r.raise_for_status()
            return r, took
        await asyncio.sleep(float(r.headers.get("retry-after", "1")))


async def time_proofs(
    base_url: str, key: str, pool: asyncpg.Pool, workspace_id: str
) -> dict[str, Any]:
    rng = random.Random(7)
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        latest = (await http.get("/api/v1/checkpoints/latest")).json()
        size, root = latest["size"], base64.b64decode(latest["root_hash"])
        seqs = [rng.randint(1, size) for _ in range(INCLUSION_PROOFS)]
        rows = await pool.fetch(
            "SELECT seq, id::text, hash FROM events WHERE workspace_id = $1 AND seq = ANY($2)",
            workspace_id,
            seqs,
        )
        by_seq = {r["seq"]: r for r in rows}
        inclusion_s, inclusion_ok = [], 0
        for seq in seqs:
            event = by_seq[seq]
            r, took = await _timed_get(
                http,
                "/api/v1/proofs/inclusion",
                {"event_id": event["id"], "tree_size": str(size)},
            )
            inclusion_s.append(took)
            path = [base64.b64decode(h) for h in r.json()["audit_path"]]
            inclusion_ok += verify_inclusion(
                event_leaf_hash(bytes(event["hash"]).hex()), seq - 1, size, path, root
            )
        consistency_s, consistency_ok = [], 0
        for _ in range(CONSISTENCY_PROOFS):
            first = rng.randint(1, size - 1)
            r, took = await _timed_get(
                http, "/api/v1/proofs/consistency", {"first": str(first), "second": str(size)}
            )
            consistency_s.append(took)
            doc = r.json()
            consistency_ok += verify_consistency(
                first,
                size,
                base64.b64decode(doc["first_root"]),
                root,
                [base64.b64decode(h) for h in doc["proof"]],
            )
    return {
        "tree_size": size,
        "inclusion": {**summary_ms(inclusion_s), "verified": inclusion_ok, "of": len(seqs)},
        "consistency": {
            **summary_ms(consistency_s),
            "verified": consistency_ok,
            "of": CONSISTENCY_PROOFS,
        },
    }


def time_signing() -> dict[str, Any]:
    name, private = notes.parse_signer_key(notes.generate_key("bench.local")[0])
    cp = notes.Checkpoint("bench.local/ws", 1_000_000, os.urandom(32), ("timestamp 1",))
    t0 = time.perf_counter()
    for _ in range(SIGNATURES):
        notes.sign_checkpoint(cp, name, private)
    return {
        "signatures": SIGNATURES,
        "us_per_checkpoint": (time.perf_counter() - t0) / SIGNATURES * 1e6,
    }


async def poll_until(
    done: Callable[[], Awaitable[bool]], timeout_s: float, every_s: float = 0.1
) -> float | None:
    """Seconds until ``done()`` held, polling; None if it did not within ``timeout_s``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if await done():
            return time.perf_counter() - t0
        await asyncio.sleep(every_s)
    return None


async def tree_catch_up(
    pool: asyncpg.Pool, workspace_id: str, timeout_s: float = 120
) -> float | None:
    """Seconds from now until the workspace's tree holds every stored event."""
    target = await pool.fetchval(
        "SELECT coalesce(max(seq), 0) FROM events WHERE workspace_id = $1", workspace_id
    )

    async def caught_up() -> bool:
        size = await pool.fetchval(
            "SELECT size FROM merkle_state WHERE workspace_id = $1", workspace_id
        )
        return size is not None and size >= target

    return await poll_until(caught_up, timeout_s)


async def overhead(
    load: Callable[[str], Awaitable[dict[str, Any]]],
    restart_exporter: Callable[[bool], None],
    pool: asyncpg.Pool,
    rounds: int = 2,
) -> dict[str, Any]:
    """End-to-end events/s with the tree builder on and off, alternated ``rounds`` times."""
    on: list[float] = []
    off: list[float] = []
    catch_up: list[float | None] = []
    try:
        for i in range(rounds):
            restart_exporter(True)
            run = await load(f"bench-tree-on-{i}")
            on.append(run["e2e_events_per_s"])
            catch_up.append(await tree_catch_up(pool, run["workspace_id"]))
            restart_exporter(False)
            off.append((await load(f"bench-tree-off-{i}"))["e2e_events_per_s"])
    finally:
        restart_exporter(True)
    mean_on, mean_off = sum(on) / len(on), sum(off) / len(off)
    return {
        "tree_on_events_per_s": on,
        "tree_off_events_per_s": off,
        "tree_on_mean": mean_on,
        "tree_off_mean": mean_off,
        "overhead": 1 - mean_on / mean_off,
        "tree_catch_up_after_load_s": catch_up,
    }
