"""Rules applied to a workspace's events, in order: pure, no I/O.

The engine owns what the rule types leave out: which rules apply to an
event, the per-rule and per-key state, and the cooldown that stops alert
storms. It never changes what it was given: new key states are *staged*, and
the caller makes them current only after it has committed them (with the
alerts they raised and the workspace's progress) to PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.alerter.rules import RULE_TYPES
from services.alerter.rules.base import AlertEvent

StateKey = tuple[str, str]  # (rule id, key)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    workspace_id: str
    name: str
    rule_type: str
    conditions: dict[str, Any]
    channels: tuple[str, ...]
    email_recipients: tuple[str, ...]
    webhook_endpoint_ids: tuple[str, ...] | None
    cooldown_seconds: int
    version: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyState:
    """What the alerter keeps per rule and key; ``cooldown_until`` in epoch ms."""

    workspace_id: str
    rule_version: int
    state: dict[str, Any] | None
    cooldown_until: int | None


@dataclass(frozen=True, slots=True)
class Fired:
    rule: Rule
    event: AlertEvent
    reason: str
    #: where the event is in the batch, to build its payload only when it fires
    ref: Any


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def applicable(rules: Iterable[Rule], event: AlertEvent) -> list[tuple[Rule, str]]:
    """The rules that see this event, each with the state key it touches.

    A rule applies only to events received after it was created: creating a
    rule while the alerter is catching up does not page anyone about the
    backlog.
    """
    out = []
    for rule in rules:
        if event.received_at < rule.created_at:
            continue
        key = RULE_TYPES[rule.rule_type].key(rule.conditions, event)
        if key is not None:
            out.append((rule, key))
    return out


@dataclass
class Outcome:
    staged: dict[StateKey, KeyState] = field(default_factory=dict)
    fired: list[Fired] = field(default_factory=list)


def evaluate(
    applies: Iterable[tuple[Rule, str]],
    event: AlertEvent,
    ref: Any,
    current: Callable[[StateKey], KeyState | None],
    out: Outcome,
) -> None:
    """Apply the rules of :func:`applicable` to one event, staging state and alerts in ``out``.

    ``current`` gives a key's committed state; staged changes of earlier
    events of the same batch take precedence.
    """
    now = epoch_ms(event.received_at)
    for rule, key in applies:
        sk = (rule.id, key)
        before = out.staged.get(sk) or current(sk)
        if before is not None and before.rule_version != rule.version:
            before = None  # the rule changed: its windows start afresh
        verdict = RULE_TYPES[rule.rule_type].evaluate(
            rule.conditions, before.state if before else None, event
        )
        cooldown = before.cooldown_until if before else None
        if verdict.reason is not None and (cooldown is None or now >= cooldown):
            cooldown = now + rule.cooldown_seconds * 1000
            out.fired.append(Fired(rule, event, verdict.reason, ref))
        out.staged[sk] = KeyState(rule.workspace_id, rule.version, verdict.state, cooldown)
