"""``new_country``: an actor acts from a country not seen for them recently.

State per actor: ``{"countries": {"DE": last seen, epoch ms, ...}}``, pruned to
the countries seen within ``lookback_days`` of the event (``received_at``).
An actor with no country left in the lookback is treated as new: their event
sets the baseline and alerts only if ``alert_on_first_seen``.
"""

from __future__ import annotations

from typing import Any

from services.alerter.rules.base import (
    AlertEvent,
    Field,
    Verdict,
    boolean,
    check_fields,
    epoch_ms,
    integer,
    plural,
)

DAY_MS = 86_400_000
#: ISO 3166 has under 250 codes; the cap only guards against a misbehaving enricher.
MAX_COUNTRIES = 300

FIELDS = {
    "lookback_days": Field(integer(1, 3650), default=90),
    "alert_on_first_seen": Field(boolean, default=False),
}


class NewCountry:
    name = "new_country"

    def validate(self, conditions: object) -> dict[str, Any]:
        return check_fields(conditions, FIELDS)

    def key(self, conditions: dict[str, Any], event: AlertEvent) -> str | None:
        return event.actor_id if event.ip_country is not None else None

    def evaluate(
        self, conditions: dict[str, Any], state: dict[str, Any] | None, event: AlertEvent
    ) -> Verdict:
        country = event.ip_country
        if country is None:
            return Verdict(state=state, reason=None)
        days = int(conditions["lookback_days"])
        now = epoch_ms(event.received_at)
        cutoff = now - days * DAY_MS
        prior: dict[str, int] = (state or {}).get("countries", {})
        seen = {c: t for c, t in prior.items() if t > cutoff}

        reason: str | None = None
        if country not in seen and (seen or conditions["alert_on_first_seen"]):
            where = f"{country} ({event.ip_city})" if event.ip_city else country
            history = (
                f"seen in the last {plural(days, 'day')}: {', '.join(sorted(seen))}"
                if seen
                else f"no country seen in the last {plural(days, 'day')}"
            )
            reason = f"actor {event.actor_id} performed {event.action} from {where}; {history}"

        seen[country] = max(now, seen.get(country, now))
        if len(seen) > MAX_COUNTRIES:
            recent = sorted(seen, key=lambda c: (seen[c], c))[-MAX_COUNTRIES:]
            seen = {c: seen[c] for c in recent}
        return Verdict(state={"countries": dict(sorted(seen.items()))}, reason=reason)
