"""``chain_integrity``: the scheduled verification found a break in the workspace's chain.

Not an event rule: it never sees events (``key`` is always None). The
exporter's scheduled verification raises it (``services/exporter/verification.py``)
for every enabled ``chain_integrity`` rule of the workspace. Each
workspace gets one when it is created (and the migration adds one to
older workspaces), so it is on by default; disabling or deleting it is a
management change, recorded in the admin audit log like any other.
"""

from __future__ import annotations

from typing import Any

from services.alerter.rules.base import AlertEvent, Verdict, check_fields


class ChainIntegrity:
    name = "chain_integrity"

    def validate(self, conditions: object) -> dict[str, Any]:
        return check_fields(conditions, {})

    def key(self, conditions: dict[str, Any], event: AlertEvent) -> str | None:
        return None

    def evaluate(
        self, conditions: dict[str, Any], state: dict[str, Any] | None, event: AlertEvent
    ) -> Verdict:
        return Verdict(state=state, reason=None)
