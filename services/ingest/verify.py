"""``GET /api/v1/verify``: stream a workspace's chain and check every link.

A long chain is split at its middle ``seq`` and the two halves are checked
by two worker processes, each with its own database connection: hashing is
CPU-bound Python, so threads would share one core. The halves are joined
exactly as one walk would see them: the second half starts from the stored
hash of the row before it, and the first half reports a missing tail as a
gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import asyncpg

from libs.common import errors
from libs.common.chain import ZERO_HASH, Held, Verification, Verifier, check_held

MAX_SEQ = 2**63 - 1
VERIFY_CHUNK = 20_000

# Walk the primary key in order. Left alone, the planner prefers a parallel
# scan and an on-disk sort of the whole chain, several times slower and
# nothing streamed until the sort ends.
_WALK_SETTINGS = (
    "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off;"
    " SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0;"
    " SET LOCAL jit = off"
)
_ROWS = (
    "SELECT seq, prev_hash, hash, body FROM events"
    " WHERE workspace_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
)


def seq_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
        if not 1 <= value <= MAX_SEQ:
            raise ValueError
        return value
    except ValueError:
        raise errors.validation_failed(
            [{"field": name, "message": f"{name} must be an integer from 1 to {MAX_SEQ}"}]
        ) from None


async def _hash_at(conn: asyncpg.Connection, workspace_id: str, seq: int) -> str | None:
    if seq < 1:
        return ZERO_HASH
    h = await conn.fetchval(
        "SELECT hash FROM events WHERE workspace_id = $1 AND seq = $2", workspace_id, seq
    )
    return h.hex() if h is not None else None


async def _held(conn: asyncpg.Connection, workspace_id: str, anchor_seq: int) -> Held:
    """The held islands: rows a legal hold kept at or below the anchor (docs/legal-holds.md)."""
    rows = await conn.fetch(
        "SELECT seq, prev_hash, hash, body FROM events"
        " WHERE workspace_id = $1 AND seq <= $2 ORDER BY seq",
        workspace_id,
        anchor_seq,
    )
    return check_held(workspace_id, [(r[0], r[1], r[2], r[3]) for r in rows])


def _with_held(held: Held | None, result: Verification) -> dict[str, Any]:
    """The walk's result, after the islands' breaks (which come first in seq order)."""
    if held is None:
        return result.as_dict()
    joined = Verification(result.workspace_id, max_breaks=result.max_breaks)
    for brk in held.breaks:
        joined.add(brk)
    joined.extend(result)
    return joined.as_dict() | {"held": held.as_dict()}


async def _walk(
    conn: asyncpg.Connection,
    verifier: Verifier,
    workspace_id: str,
    start: int,
    end: int,
    *,
    offload: bool,
) -> None:
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        await conn.execute(_WALK_SETTINGS)
        cursor = await conn.cursor(_ROWS, workspace_id, start, end)
        # PostgreSQL reads the next chunk while this one is hashed.
        pending = asyncio.ensure_future(cursor.fetch(VERIFY_CHUNK))
        while rows := await pending:
            pending = asyncio.ensure_future(cursor.fetch(VERIFY_CHUNK))
            if offload:
                await asyncio.to_thread(verifier.feed_raw, rows)
            else:
                verifier.feed_raw(rows)


@dataclass(frozen=True, slots=True)
class Span:
    """One half of a split verify: its seq range and where it starts from."""

    start: int
    end: int
    prev_hash: str | None
    must_reach_end: bool


async def _span(dsn: str, workspace_id: str, span: Span, max_breaks: int) -> Verification:
    conn = await asyncpg.connect(dsn)
    try:
        verifier = Verifier(
            workspace_id,
            expected_first_seq=span.start,
            expected_prev_hash=span.prev_hash,
            max_breaks=max_breaks,
        )
        await _walk(conn, verifier, workspace_id, span.start, span.end, offload=False)
        if span.must_reach_end:
            verifier.close(span.end)
        return verifier.result
    finally:
        await conn.close()


def verify_span_in_process(
    dsn: str, workspace_id: str, span: Span, max_breaks: int
) -> Verification:
    """Entry point of a worker process: one span, its own connection."""
    return asyncio.run(_span(dsn, workspace_id, span, max_breaks))


async def verify(
    pool: asyncpg.Pool,
    workspace_id: str,
    params: Mapping[str, str],
    *,
    max_breaks: int,
    workers: ProcessPoolExecutor | None,
    dsn: str,
    parallel_min: int,
    start: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """Check the chain from ``from_seq`` (or where the stored chain starts) to ``to_seq``.

    Events that retention archived are gone from the table: the chain then
    starts after the workspace's anchor (the last archived seq and hash),
    and a ``from_seq`` at or below it starts there too; the answer says so
    under ``anchor``. ``start`` (seq, hash), when given, is trusted instead
    of the stored row before ``from_seq``: a scheduled run resumes from
    the hash it verified last time.

    Rows a legal hold kept at or below the anchor are checked on their own
    and reported under ``held`` when the walk starts from the anchor.
    """
    to_seq = seq_param(params, "to_seq") or MAX_SEQ
    async with pool.acquire() as conn:
        anchor = await conn.fetchrow(
            "SELECT seq, hash FROM chain_anchors WHERE workspace_id = $1", workspace_id
        )
        from_seq = seq_param(params, "from_seq") or 1
        prev: str | None
        held: Held | None = None
        if start is not None and (anchor is None or start[0] >= anchor["seq"]):
            from_seq, prev = start[0] + 1, start[1]
        elif anchor is not None and (start is not None or from_seq <= anchor["seq"] + 1):
            from_seq, prev = anchor["seq"] + 1, anchor["hash"].hex()
            held = await _held(conn, workspace_id, anchor["seq"])
        else:
            prev = await _hash_at(conn, workspace_id, from_seq - 1)
        top = await conn.fetchval(
            "SELECT max(seq) FROM events WHERE workspace_id = $1", workspace_id
        )
        last = min(to_seq, top or 0)
        anchored = (
            {"anchor": {"seq": anchor["seq"], "hash": anchor["hash"].hex()}}
            if anchor is not None
            else {}
        )
        if workers is None or last - from_seq + 1 < parallel_min:
            verifier = Verifier(
                workspace_id,
                expected_first_seq=from_seq,
                expected_prev_hash=prev,
                max_breaks=max_breaks,
            )
            if last >= from_seq:
                await _walk(conn, verifier, workspace_id, from_seq, last, offload=True)
            return _with_held(held, verifier.result) | anchored
        mid = from_seq + (last - from_seq + 1) // 2
        prev_mid = await _hash_at(conn, workspace_id, mid - 1)
    loop = asyncio.get_running_loop()
    spans = (Span(from_seq, mid - 1, prev, True), Span(mid, last, prev_mid, False))
    first, second = await asyncio.gather(
        *(
            loop.run_in_executor(
                workers, verify_span_in_process, dsn, workspace_id, span, max_breaks
            )
            for span in spans
        )
    )
    first.extend(second)
    return _with_held(held, first) | anchored
