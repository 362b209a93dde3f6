"""The alert rule types, by name; pure functions over plain data (see ``base``)."""

from __future__ import annotations

from typing import Any

from services.alerter.rules.base import AlertEvent, ConditionsInvalid, RuleType, Verdict
from services.alerter.rules.chain_integrity import ChainIntegrity
from services.alerter.rules.high_volume_destructive import HighVolumeDestructive
from services.alerter.rules.ingestion_spike import IngestionSpike
from services.alerter.rules.new_country import NewCountry
from services.alerter.rules.off_hours import OffHours
from services.alerter.rules.repeated_action import RepeatedAction

RULE_TYPES: dict[str, RuleType] = {
    rule.name: rule
    for rule in (
        NewCountry(),
        HighVolumeDestructive(),
        IngestionSpike(),
        RepeatedAction(),
        OffHours(),
        ChainIntegrity(),
    )
}

__all__ = [
    "RULE_TYPES",
    "AlertEvent",
    "ConditionsInvalid",
    "RuleType",
    "Verdict",
    "validate_conditions",
]


def validate_conditions(rule_type: str, conditions: object) -> dict[str, Any]:
    """The normalised conditions for a rule of ``rule_type``; raises ConditionsInvalid."""
    rule = RULE_TYPES.get(rule_type) if isinstance(rule_type, str) else None
    if rule is None:
        names = ", ".join(sorted(RULE_TYPES))
        raise ConditionsInvalid([("rule_type", f"must be one of {names}")])
    return rule.validate(conditions)
