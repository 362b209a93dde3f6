"""Checkpoints and Merkle proofs: the API side (read key). Tree layout: docs/proofs.md.

A proof needs O(log n) stored nodes. Which nodes depends only on the
indices, never on the hashes, so the proof is computed twice: once with a
recording stand-in to learn which nodes it reads, then, after one query
for all of them, with the stored hashes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from libs.common import checkpoint as notes
from libs.common import errors
from libs.common.merkle import consistency_proof, inclusion_proof, root_at
from libs.common.timeutil import parse_rfc3339
from services.ingest.manage import parse_uuid

_ZERO = bytes(32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _nodes(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: str, compute: Callable[..., Any]
) -> Any:
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return _ZERO

    compute(record)
    rows = await conn.fetch(
        "SELECT level, idx, hash FROM merkle_nodes n"
        " JOIN unnest($2::int2[], $3::int8[]) AS w(l, i) ON n.level = w.l AND n.idx = w.i"
        " WHERE n.workspace_id = $1",
        workspace_id,
        [lvl for lvl, _ in wanted],
        [i for _, i in wanted],
    )
    stored = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
    missing = wanted - stored.keys()
    if missing:
        raise errors.ApiError(
            503, "tree_incomplete", "The tree is still being built; try again shortly."
        )
    return compute(lambda level, index: stored[(level, index)])


def _size(params: Mapping[str, str], name: str, violations: list[dict[str, str]]) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        violations.append({"field": name, "message": f"{name} must be a whole number"})
        return None


async def _tree_size(pool: asyncpg.Pool, workspace_id: str) -> int:
    size = await pool.fetchval(
        "SELECT size FROM merkle_state WHERE workspace_id = $1", workspace_id
    )
    return int(size or 0)


async def log_key(pool: asyncpg.Pool, workspace_id: str, log_name: str) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT name, public_key FROM log_keys WHERE id = 1")
    if row is None:
        raise errors.ApiError(
            503, "no_log_key", "The log has no signing key yet; try again shortly."
        )
    public = bytes(row["public_key"])
    return {
        "origin": notes.workspace_origin(workspace_id, log_name),
        "name": row["name"],
        "algorithm": "Ed25519",
        "public_key": _b64(public),
        "verifier_key": notes.verifier_key(row["name"], public),
    }


def _render(r: asyncpg.Record) -> dict[str, Any]:
    return notes.served_row(r)


async def latest(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT size, root, note, created_at FROM checkpoints WHERE workspace_id = $1"
        " ORDER BY created_at DESC LIMIT 1",
        workspace_id,
    )
    if row is None:
        raise errors.not_found(
            "no checkpoint yet: the first is signed within seconds of the first event"
        )
    return _render(row)


async def list_checkpoints(
    pool: asyncpg.Pool, workspace_id: str, params: Mapping[str, str]
) -> dict[str, Any]:
    violations = [
        {"field": k, "message": f"{k} is not a known filter"}
        for k in params
        if k not in ("from", "to")
    ]
    bounds = {}
    for name in ("from", "to"):
        if params.get(name):
            try:
                bounds[name] = parse_rfc3339(params[name])
            except ValueError as exc:
                violations.append({"field": name, "message": f"{name} {exc}"})
    if violations:
        raise errors.validation_failed(violations)
    rows = await pool.fetch(
        "SELECT size, root, note, created_at FROM checkpoints WHERE workspace_id = $1"
        " AND ($2::timestamptz IS NULL OR created_at >= $2)"
        " AND ($3::timestamptz IS NULL OR created_at < $3)"
        " ORDER BY created_at DESC LIMIT 1000",
        workspace_id,
        bounds.get("from"),
        bounds.get("to"),
    )
    return {"data": [_render(r) for r in rows]}


async def inclusion(
    pool: asyncpg.Pool, workspace_id: str, params: Mapping[str, str]
) -> dict[str, Any]:
    violations: list[dict[str, str]] = []
    event_id = parse_uuid(params.get("event_id"))
    if event_id is None:
        violations.append({"field": "event_id", "message": "event_id must be an event's id"})
    size = _size(params, "tree_size", violations)
    if violations:
        raise errors.validation_failed(violations)
    row = await pool.fetchrow(
        "SELECT seq, hash FROM events WHERE id = $1::uuid AND workspace_id = $2",
        event_id,
        workspace_id,
    )
    if row is None:
        raise errors.not_found(f"no event {event_id} in this workspace")
    built = await _tree_size(pool, workspace_id)
    size = built if size is None else size
    seq = int(row["seq"])
    if not seq <= size <= built:
        raise errors.validation_failed(
            [
                {
                    "field": "tree_size",
                    "message": f"tree_size must be from the event's seq ({seq}) to the"
                    f" tree's size ({built})",
                }
            ]
        )
    path, root = await _nodes(
        pool,
        workspace_id,
        lambda get: (inclusion_proof(seq - 1, size, get), root_at(size, get)),
    )
    return {
        "event_id": event_id,
        "seq": seq,
        "leaf_index": seq - 1,
        "tree_size": size,
        "event_hash": bytes(row["hash"]).hex(),
        "audit_path": [_b64(h) for h in path],
        "root_hash": _b64(root),
    }


async def consistency(
    pool: asyncpg.Pool, workspace_id: str, params: Mapping[str, str]
) -> dict[str, Any]:
    violations: list[dict[str, str]] = []
    first = _size(params, "first", violations)
    second = _size(params, "second", violations)
    if not violations and (first is None or second is None):
        violations.append({"field": "first", "message": "first and second are required"})
    if violations:
        raise errors.validation_failed(violations)
    assert first is not None and second is not None
    built = await _tree_size(pool, workspace_id)
    if not 1 <= first <= second <= built:
        raise errors.validation_failed(
            [
                {
                    "field": "second",
                    "message": f"need 1 <= first <= second <= the tree's size ({built})",
                }
            ]
        )
    proof, first_root, second_root = await _nodes(
        pool,
        workspace_id,
        lambda get: (
            consistency_proof(first, second, get),
            root_at(first, get),
            root_at(second, get),
        ),
    )
    return {
        "first": first,
        "second": second,
        "proof": [_b64(h) for h in proof],
        "first_root": _b64(first_root),
        "second_root": _b64(second_root),
    }
