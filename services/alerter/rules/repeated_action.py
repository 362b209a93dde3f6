"""``repeated_action``: one actor repeats the same action many times quickly.

Fires when the same actor performed the same action AT LEAST ``threshold``
times within the last ``window_seconds`` (of ``received_at``, this event
included). The key is actor and action joined by the unit separator
(``\\x1f``), which neither may usefully contain. State per key: the latest
``threshold - 1`` times (see ``base.slide``).
"""

from __future__ import annotations

from typing import Any

from services.alerter.rules.base import (
    AlertEvent,
    Field,
    Verdict,
    check_fields,
    compile_pattern,
    epoch_ms,
    integer,
    pattern,
    slide,
)

FIELDS = {
    "threshold": Field(integer(2, 1_000_000)),
    "window_seconds": Field(integer(1, 604_800), default=300),
    "action_pattern": Field(pattern, default=None),
}


class RepeatedAction:
    name = "repeated_action"

    def validate(self, conditions: object) -> dict[str, Any]:
        return check_fields(conditions, FIELDS)

    def key(self, conditions: dict[str, Any], event: AlertEvent) -> str | None:
        wanted = conditions.get("action_pattern")
        if wanted is not None and not compile_pattern(wanted)(event.action):
            return None
        return f"{event.actor_id}\x1f{event.action}"

    def evaluate(
        self, conditions: dict[str, Any], state: dict[str, Any] | None, event: AlertEvent
    ) -> Verdict:
        threshold = int(conditions["threshold"])
        window = int(conditions["window_seconds"])
        seen = slide(state, epoch_ms(event.received_at), window * 1000, keep=threshold - 1)
        reason: str | None = None
        if seen.count >= threshold:
            reason = (
                f"actor {event.actor_id} performed {event.action} {seen.spelled} times"
                f" in {window} s (threshold {threshold})"
            )
        return Verdict(state=seen.state, reason=reason)
