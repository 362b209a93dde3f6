"""Realistic audit events, and request bodies serialised once up front."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from libs.common.timeutil import format_epoch_us

ACTIONS = (
    "user.login",
    "user.logout",
    "document.read",
    "document.update",
    "document.delete",
    "permission.grant",
    "invoice.create",
    "api_key.rotate",
)
RESOURCES = ("document", "invoice", "user", "project", "api_key")
USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "python-httpx/0.28.1",
    "acme-backend/2.14.0 (+https://acme.example)",
)


def public_address(actor: int) -> str:
    """A public IPv4 address per actor (5,000 addresses), so the enricher looks them up."""
    first = 11 + actor % 190  # 11..200: no 10/8, 127/8, 172.16/12 or 192.168/16
    if first == 127:
        first = 128
    return f"{first}.{(actor * 7) % 256}.{(actor * 13) % 256}.{actor % 250 + 1}"


def make_event(rng: random.Random, occurred_us: int) -> dict[str, Any]:
    """One producer event, already in the form ingest normalises to."""
    resource = rng.choice(RESOURCES)
    tenant = rng.randrange(50)
    actor = rng.randrange(5_000)
    return {
        "actor_id": f"user-{actor}",
        "action": rng.choice(ACTIONS),
        "resource": resource,
        "resource_id": f"{resource}-{rng.randrange(100_000)}",
        "tenant_id": f"tenant-{tenant}",
        "session_id": f"sess-{rng.getrandbits(48):012x}",
        "ip_address": public_address(actor),
        "user_agent": rng.choice(USER_AGENTS),
        "occurred_at": format_epoch_us(occurred_us),
        "metadata": {
            "request_id": f"req-{rng.getrandbits(64):016x}",
            "outcome": rng.choice(("success", "success", "success", "denied")),
            "duration_ms": rng.randrange(1, 900),
        },
    }


def make_bodies(count: int, batch: int, seed: int = 7) -> list[bytes]:
    """``count`` distinct batch request bodies of ``batch`` events each.

    Events carry no idempotency key: the same body sent twice is two
    batches of new events, so a few bodies in rotation are enough.
    """
    rng = random.Random(seed)
    now_us = time.time_ns() // 1000
    return [
        orjson.dumps(
            {"events": [make_event(rng, now_us - rng.randrange(10**6)) for _ in range(batch)]}
        )
        for _ in range(count)
    ]
