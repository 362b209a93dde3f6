"""The admin audit log: every management action is an event in the workspace's own chain.

An admin event goes through the same pipeline as any other (Kafka, the
chainer, the store) and verifies like any other. Its ``action`` is
``admin.<thing>.<verb>``, ``action_category`` is ``admin`` (reserved: a
producer cannot send it), the actor is the acting API key (or the
operator), and ``metadata`` holds the change as ``before`` and ``after``,
never a secret.

Ordering: the caller makes its change inside a database transaction and
records the event before committing. A change therefore never commits
without its admin event; if Kafka cannot take the event the change is
rolled back (503). The reverse, an event whose change then failed to
commit, needs the database to fail in the instant between the two and is
not excluded (docs/tenancy.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from libs.common.event import ADMIN_CATEGORY
from services.ingest.accept import Acceptor


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: an API key (``api_key:<prefix>``) or the operator (``operator:cli``)."""

    id: str
    type: str
    name: str | None = None
    ip: str | None = None
    user_agent: str | None = None


class AdminEventRefused(RuntimeError):
    """The pipeline refused the admin event itself (not back-pressure): a retry would not help."""


class AdminLog:
    def __init__(self, acceptor: Acceptor) -> None:
        self.acceptor = acceptor

    async def record(
        self,
        workspace_id: str,
        actor: Actor,
        action: str,
        resource: str,
        resource_id: str,
        *,
        before: Any = None,
        after: Any = None,
    ) -> str:
        """Publish ``admin.<action>``; returns its event id (raises Pushback if Kafka is away)."""
        event: dict[str, Any] = {
            "actor_id": actor.id,
            "actor_type": actor.type,
            "action": f"admin.{action}",
            "action_category": ADMIN_CATEGORY,
            "resource": resource,
            "resource_id": resource_id,
            "metadata": {"before": before, "after": after},
        }
        if actor.name:
            event["actor_name"] = actor.name[:256]
        if actor.ip and _is_ip(actor.ip):
            event["ip_address"] = actor.ip
        if actor.user_agent:
            event["user_agent"] = actor.user_agent[:1024]
        outcome = await self.acceptor.accept(workspace_id, [event], "", system=True)
        result = outcome.results[0]
        if result.get("status") != "queued":
            raise AdminEventRefused(f"admin event refused: {result}")
        return str(result["id"])


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
