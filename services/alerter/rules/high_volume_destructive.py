"""``high_volume_destructive``: one actor performs many destructive actions quickly.

Fires when an actor's actions matching ``action_patterns`` within the last
``window_seconds`` (of ``received_at``, this event included) number MORE
THAN ``threshold``. State per actor: the latest ``threshold`` times (see
``base.slide``), which is exactly what the next decision needs.
"""

from __future__ import annotations

from typing import Any

from services.alerter.rules.base import (
    AlertEvent,
    Field,
    Verdict,
    check_fields,
    epoch_ms,
    integer,
    matches_any,
    patterns,
    slide,
)

DEFAULT_PATTERNS = ["*.delete", "*.destroy", "*.remove", "*.purge", "*.revoke"]

FIELDS = {
    "threshold": Field(integer(1, 1_000_000)),
    "window_seconds": Field(integer(1, 604_800), default=300),
    "action_patterns": Field(patterns, default=DEFAULT_PATTERNS),
}


class HighVolumeDestructive:
    name = "high_volume_destructive"

    def validate(self, conditions: object) -> dict[str, Any]:
        return check_fields(conditions, FIELDS)

    def key(self, conditions: dict[str, Any], event: AlertEvent) -> str | None:
        return event.actor_id if matches_any(conditions["action_patterns"], event.action) else None

    def evaluate(
        self, conditions: dict[str, Any], state: dict[str, Any] | None, event: AlertEvent
    ) -> Verdict:
        threshold = int(conditions["threshold"])
        window = int(conditions["window_seconds"])
        seen = slide(state, epoch_ms(event.received_at), window * 1000, keep=threshold)
        reason: str | None = None
        if seen.count > threshold:
            reason = (
                f"actor {event.actor_id} performed {seen.spelled} destructive actions"
                f" in {window} s (threshold {threshold}); latest: {event.action}"
            )
        return Verdict(state=seen.state, reason=reason)
