"""API-key authentication with a short-lived cache.

Every request needs ``Authorization: Bearer <key>``. A key is looked up by
its prefix and proved by its SHA-256; the answer is cached for
``CHAINLOG_KEY_CACHE_SECONDS`` (default 5), which bounds how long a revoked
key keeps working on any gateway instance. Unknown keys are cached too, so
a flood of bad keys does not become a flood of queries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from libs.common import errors, keys


@dataclass(frozen=True, slots=True)
class Principal:
    workspace_id: str
    key_id: str
    prefix: str
    scopes: frozenset[str]
    name: str = ""

    def require(self, scope: str) -> None:
        """403 unless the key has ``scope`` (``read`` is also met by ``auditor``)."""
        if not keys.grants(self.scopes, scope):
            raise errors.forbidden(f"this API key lacks the '{scope}' scope")

    def refuse_auditor(self, what: str) -> None:
        """403 for an auditor key on a read-scope route that changes something."""
        if keys.AUDITOR in self.scopes:
            raise errors.forbidden(f"an auditor key cannot {what}")


class KeyCache:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float, max_entries: int = 100_000) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.startswith("Bearer "):
            raise errors.unauthenticated()
        key = authorization[7:].strip()
        digest = keys.hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            principal = await self._lookup(key)
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[digest] = (now + self.ttl_s, principal)
        if principal is None:
            raise errors.unauthenticated("the API key is not valid or has been revoked")
        return principal

    async def _lookup(self, key: str) -> Principal | None:
        prefix = keys.split_prefix(key)
        if prefix is None:
            return None
        # Found and proved by prefix and hash; last_used_at moves at most
        # once per cache period per gateway.
        row = await self.pool.fetchrow(
            "UPDATE api_keys SET last_used_at = now()"
            " WHERE prefix = $1 AND key_hash = $2 AND revoked_at IS NULL"
            " RETURNING id, workspace_id, scopes, name",
            prefix,
            keys.hash_key(key),
        )
        if row is None:
            return None
        return Principal(
            str(row["workspace_id"]), str(row["id"]), prefix, frozenset(row["scopes"]), row["name"]
        )
