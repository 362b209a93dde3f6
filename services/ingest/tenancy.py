"""What the gateway needs to know about a workspace on every request.

Its plan (limits), schema mode and schemas, and IP allowlist, read from
PostgreSQL and cached for ``CHAINLOG_KEY_CACHE_SECONDS`` like API keys: a
change made through one gateway takes effect there at once (the cache
entry is dropped) and on every other gateway within that time.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from starlette.requests import Request

from libs.common import errors
from libs.common.plans import Plan, effective
from libs.common.sealing import Privacy
from services.ingest.ratelimit import Limits
from services.ingest.schemas import SchemaSet

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Tenant:
    workspace_id: str
    name: str
    plan: Plan
    schema_mode: str
    schemas: SchemaSet
    allowlist: tuple[Network, ...]
    #: Personal fields sealed at ingest (docs/privacy.md); None: privacy off.
    privacy: Privacy | None = None
    #: Reads of the log recorded as admin.read.* events (docs/audited-reads.md);
    #: None: never set, the deployment's default applies.
    audit_reads: bool | None = None

    @property
    def limits(self) -> Limits:
        return Limits(
            requests_per_minute=self.plan.limit("requests_per_minute"),
            events_per_second=self.plan.limit("events_per_second"),
        )

    def allows(self, ip: str | None) -> bool:
        """True when the workspace has no allowlist, or ``ip`` is on it."""
        return not self.allowlist or within(ip, self.allowlist)


def parse_networks(text: str) -> tuple[Network, ...]:
    """``CHAINLOG_TRUSTED_PROXIES``: comma-separated addresses or CIDRs."""
    return tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip()
    )


def client_ip(request: Request, trusted_proxies: Sequence[Network]) -> str | None:
    """The caller's address: the peer's, or from ``X-Forwarded-For`` when the
    peer is a trusted proxy (then the right-most address that is not itself
    a trusted proxy, so a client cannot choose its address by sending the
    header itself)."""
    peer = request.client.host if request.client else None
    if peer is None or not trusted_proxies or not within(peer, trusted_proxies):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not within(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def within(ip: str | None, networks: Iterable[Network]) -> bool:
    """``ip`` (an IPv4-mapped IPv6 address as its IPv4 one) is in one of ``networks``."""
    try:
        addr = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


class TenantCache:
    def __init__(self, pool: asyncpg.Pool, plans: dict[str, Plan], ttl_s: float) -> None:
        self.pool = pool
        self.plans = plans
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Tenant]] = {}
        # Bumped by invalidate: a load that began before it is not kept.
        self._generation = 0

    def invalidate(self, workspace_id: str) -> None:
        self._generation += 1
        self._cache.pop(workspace_id, None)

    async def get(self, workspace_id: str) -> Tenant:
        now = time.monotonic()
        hit = self._cache.get(workspace_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        tenant = await self._load(workspace_id)
        if generation == self._generation:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[workspace_id] = (now + self.ttl_s, tenant)
        return tenant

    async def _load(self, workspace_id: str) -> Tenant:
        async with self.pool.acquire() as conn:
            ws = await conn.fetchrow(
                "SELECT name, plan, limits_override, schema_mode, privacy, audit_reads"
                " FROM workspaces WHERE id = $1",
                workspace_id,
            )
            if ws is None:
                raise errors.unauthenticated("the API key's workspace no longer exists")
            schemas = await conn.fetch(
                "SELECT action_pattern, metadata_schema FROM event_schemas"
                " WHERE workspace_id = $1 ORDER BY action_pattern",
                workspace_id,
            )
            allow = await conn.fetch(
                "SELECT cidr FROM ip_allowlist WHERE workspace_id = $1", workspace_id
            )
        return Tenant(
            workspace_id=workspace_id,
            name=ws["name"],
            plan=self.plan_of(ws["plan"], ws["limits_override"]),
            schema_mode=ws["schema_mode"],
            schemas=SchemaSet.from_rows(
                (r["action_pattern"], r["metadata_schema"]) for r in schemas
            ),
            allowlist=tuple(r["cidr"] for r in allow),
            privacy=None if ws["privacy"] is None else Privacy.from_doc(_json(ws["privacy"])),
            audit_reads=ws["audit_reads"],
        )

    def plan_of(self, plan_id: str, override: str | None) -> Plan:
        plan = self.plans.get(plan_id) or self.plans["free"]
        return effective(plan, _json(override)) if override else plan


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)
