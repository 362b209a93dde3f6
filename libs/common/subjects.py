"""Data subjects' keys in PostgreSQL: created at ingest, opened by readers, destroyed by erasure.

A key is 32 random bytes, stored sealed under the master key
(``SecretBox``, context ``subject-key:<kid>``) in ``subject_keys``. Nothing
caches a key across requests: each ingest request, page of a query, export
or enricher batch reads the keys it needs, so an erasure takes effect for
every process the moment it commits (docs/privacy.md).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
import orjson

from libs.common.sealing import KEY_BYTES, Privacy, kids
from libs.common.secretbox import SecretBox
from libs.common.timeutil import uuid7

_LIVE = (
    "SELECT subject, kid, wrapped FROM subject_keys"
    " WHERE workspace_id = $1 AND subject = ANY($2::text[]) AND erased_at IS NULL"
)
_CREATE = (
    "INSERT INTO subject_keys (kid, workspace_id, subject, wrapped)"
    " SELECT k, $1, s, w FROM unnest($2::uuid[], $3::text[], $4::bytea[]) AS t(k, s, w)"
    " ON CONFLICT (workspace_id, subject) WHERE erased_at IS NULL DO NOTHING"
)
_BY_KID = "SELECT kid, wrapped FROM subject_keys WHERE workspace_id = $1 AND kid = ANY($2::uuid[])"


def _context(kid: str) -> str:
    return f"subject-key:{kid}"


def _open(box: SecretBox, kid: str, wrapped: bytes | None) -> bytes | None:
    if wrapped is None:
        return None
    return base64.b64decode(box.decrypt(wrapped, context=_context(kid)))


async def live_keys(
    conn: asyncpg.Connection | asyncpg.Pool,
    box: SecretBox,
    workspace_id: str,
    subjects: Iterable[str],
) -> dict[str, tuple[str, bytes]]:
    """Each subject's live (kid, key), created for the subjects that have none.

    Two gateways creating the same subject's key at once both read back the
    one that won (the partial unique index), so a subject has one live key.
    """
    wanted = sorted(set(subjects))
    found = {
        r["subject"]: (str(r["kid"]), r["wrapped"])
        for r in await conn.fetch(_LIVE, workspace_id, wanted)
    }
    missing = [s for s in wanted if s not in found]
    if missing:
        new_kids = [str(uuid7()) for _ in missing]
        wrapped = [
            box.encrypt(base64.b64encode(os.urandom(KEY_BYTES)).decode(), context=_context(k))
            for k in new_kids
        ]
        await conn.execute(_CREATE, workspace_id, new_kids, missing, wrapped)
        found.update(
            {
                r["subject"]: (str(r["kid"]), r["wrapped"])
                for r in await conn.fetch(_LIVE, workspace_id, missing)
            }
        )
    out: dict[str, tuple[str, bytes]] = {}
    for subject, (kid, blob) in found.items():
        key = _open(box, kid, blob)
        assert key is not None
        out[subject] = (kid, key)
    return out


async def keys_by_kid(
    conn: asyncpg.Connection | asyncpg.Pool, box: SecretBox, workspace_id: str, wanted: set[str]
) -> dict[str, bytes | None]:
    """The key of each kid this workspace knows; None for an erased one."""
    if not wanted:
        return {}
    rows = await conn.fetch(_BY_KID, workspace_id, sorted(wanted))
    return {str(r["kid"]): _open(box, str(r["kid"]), r["wrapped"]) for r in rows}


async def keys_for_events(
    conn: asyncpg.Connection | asyncpg.Pool,
    box: SecretBox,
    workspace_id: str,
    events: Iterable[Mapping[str, Any]],
) -> dict[str, bytes | None]:
    """The keys that open the sealed fields of ``events`` (one query)."""
    wanted: set[str] = set()
    for event in events:
        wanted |= kids(event)
    return await keys_by_kid(conn, box, workspace_id, wanted)


async def privacy_of(conn: asyncpg.Connection | asyncpg.Pool, workspace_id: str) -> Privacy | None:
    doc = await conn.fetchval("SELECT privacy FROM workspaces WHERE id = $1", workspace_id)
    return None if doc is None else Privacy.from_doc(orjson.loads(doc))
