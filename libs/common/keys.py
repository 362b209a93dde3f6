"""API keys: high-entropy, a recognisable prefix, stored as SHA-256 only.

A key reads ``clk_<prefix>_<secret>``. The prefix (public, unique) finds the
row; the SHA-256 of the whole key proves it (matched in the same indexed lookup).
The secret part has 165 bits of entropy (32 characters of 36), so a plain
hash is enough: nothing can be guessed, and the stored hash cannot be
turned back into a key.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass

import asyncpg

SCOPES = ("ingest", "read", "admin", "auditor")
#: A read-only key for an outside auditor (docs/audited-reads.md): it passes
#: every check that asks for ``read`` except those that hand out access
#: (viewer tokens), and it is a key's only scope.
AUDITOR = "auditor"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class NewKey:
    id: str
    prefix: str
    key: str


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def grants(scopes: Collection[str], needed: str) -> bool:
    """A key with ``scopes`` may do what needs ``needed``: the scope itself, or
    ``read`` through ``auditor``."""
    return needed in scopes or (needed == "read" and AUDITOR in scopes)


def scope_conflict(scopes: Collection[str]) -> str | None:
    """Why these scopes cannot make one key, or None."""
    if AUDITOR in scopes and len(set(scopes)) > 1:
        return "auditor is a key's only scope: it cannot be combined with ingest, read or admin"
    return None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def split_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != "clk" or len(parts[1]) != 10 or len(parts[2]) != 32:
        return None
    return parts[1]


async def create_key(
    conn: asyncpg.Connection, workspace_id: str, name: str, scopes: list[str]
) -> NewKey:
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise ValueError(f"unknown scopes: {', '.join(bad)}")
    conflict = scope_conflict(scopes)
    if conflict:
        raise ValueError(conflict)
    prefix = _random(10)
    key = f"clk_{prefix}_{_random(32)}"
    key_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO api_keys (id, workspace_id, name, prefix, key_hash, scopes)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        key_id,
        workspace_id,
        name,
        prefix,
        hash_key(key),
        scopes,
    )
    return NewKey(key_id, prefix, key)


#: Every workspace starts with a chain_integrity alert rule (on by default:
#: the scheduled verification raises it; turning it off is an admin event).
DEFAULT_RULES = (
    "INSERT INTO alert_rules (id, workspace_id, name, rule_type, conditions, channels,"
    " cooldown_seconds) VALUES (gen_random_uuid(), $1, 'Chain integrity', 'chain_integrity',"
    " '{}'::jsonb, ARRAY['email', 'webhook'], 0)"
)


async def create_workspace(
    conn: asyncpg.Connection, name: str, plan: str = "free"
) -> tuple[str, NewKey]:
    """A workspace on ``plan`` and its first key, which has every scope but ``auditor``."""
    workspace_id = str(uuid.uuid4())
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO workspaces (id, name, plan) VALUES ($1, $2, $3)", workspace_id, name, plan
        )
        key = await create_key(conn, workspace_id, "default", [s for s in SCOPES if s != AUDITOR])
        await conn.execute(DEFAULT_RULES, workspace_id)
    return workspace_id, key
