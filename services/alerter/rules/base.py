"""What every alert rule type shares: the event it sees, its verdict, validation.

A rule type is pure: it reads plain data (conditions, the stored state of one
key, one event) and returns plain data (the new state and, if it fires, a
reason). No clock, no I/O. The engine replays events from stored state after
a restart, so the same inputs MUST always give the same verdict.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

# Re-exported: the rule types import them from here.
from libs.common.patterns import MAX_PATTERN_LEN as MAX_PATTERN_LEN
from libs.common.patterns import check_pattern
from libs.common.patterns import compile_pattern as compile_pattern
from libs.common.patterns import matches_any as matches_any

MAX_PATTERNS = 50

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """What rules see of one chained and enriched event."""

    event_id: str
    seq: int
    action: str
    actor_id: str
    occurred_at: datetime  # tz-aware UTC: the client's time of the action
    received_at: datetime  # tz-aware UTC: server time, monotonic enough per workspace
    ip_address: str | None
    ip_country: str | None  # ISO 3166 alpha-2
    ip_city: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one event for one key.

    ``state`` MUST be JSON-serialisable and bounded in size; None deletes the
    key's state. ``reason`` is a sentence for humans if the rule fires, else None.
    """

    state: dict[str, Any] | None
    reason: str | None


class ConditionsInvalid(ValueError):
    """User-supplied conditions that cannot be used; names every problem.

    ``errors`` holds (field path, message) pairs, e.g.
    ``("conditions.days[2]", "must be one of mon, tue, wed, thu, fri, sat, sun")``.
    """

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field} {message}" for field, message in errors))
        self.errors = errors


class RuleType(Protocol):
    """One kind of alert rule.

    Implementations MUST be pure and deterministic, MUST keep state
    JSON-serialisable (times as integer epoch milliseconds) and MUST prune it
    on every evaluate so that it never grows without bound. Cooldown is the
    engine's job: a rule reports every event for which its condition holds.
    """

    name: str

    def validate(self, conditions: object) -> dict[str, Any]:
        """Check a user's conditions object; return it normalised, defaults filled in.

        Raises ConditionsInvalid listing every problem.
        """
        ...

    def key(self, conditions: dict[str, Any], event: AlertEvent) -> str | None:
        """The state key this event updates, or None if the rule ignores the event."""
        ...

    def evaluate(
        self, conditions: dict[str, Any], state: dict[str, Any] | None, event: AlertEvent
    ) -> Verdict:
        """Fold one event into the state of its key; say whether the rule fires."""
        ...


# --- time and state helpers ------------------------------------------------


def epoch_ms(dt: datetime) -> int:
    """Integer milliseconds since the epoch (floored); ``dt`` must be tz-aware."""
    return (dt - _EPOCH) // _MS


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True, slots=True)
class Count:
    """Occurrences of one key in a sliding window, this event included."""

    count: int
    exact: bool  # False: ``count`` is a lower bound (older occurrences were dropped)
    state: dict[str, Any]

    @property
    def spelled(self) -> str:
        return str(self.count) if self.exact else f"at least {self.count}"


def slide(state: Mapping[str, Any] | None, now_ms: int, window_ms: int, keep: int) -> Count:
    """Add one occurrence at ``now_ms`` to a sliding window of ``window_ms``.

    An occurrence counts while it is less than ``window_ms`` old: one exactly
    ``window_ms`` older than this event has left the window. At most ``keep``
    (the largest) times are stored; an occurrence dropped for room while
    still inside the window is remembered only as ``evicted`` (the latest
    dropped time), which makes the count a lower bound until it expires.
    ``keep`` (at least 1) is chosen by the caller so that its threshold
    decision is exact.

    State: ``{"times": [epoch ms, ascending], "evicted": epoch ms (optional)}``.
    """
    prior = state or {}
    cutoff = now_ms - window_ms
    times = [t for t in prior.get("times", ()) if t > cutoff]
    evicted = prior.get("evicted")
    if evicted is not None and evicted <= cutoff:
        evicted = None
    exact = evicted is None
    bisect.insort(times, now_ms)
    count = len(times) + (0 if exact else 1)
    if len(times) > keep:
        dropped = times[-keep - 1]
        times = times[-keep:]
        evicted = dropped if evicted is None else max(dropped, evicted)
    new: dict[str, Any] = {"times": times}
    if evicted is not None:
        new["evicted"] = evicted
    return Count(count=count, exact=exact, state=new)


# --- validation ------------------------------------------------------------

Problems = list[tuple[str, str]]  # (sub-path such as "" or "[2]", message)


class Bad(Exception):
    """Raised by a check: what is wrong with one value (and its elements)."""

    def __init__(self, message: str | None = None, problems: Problems | None = None) -> None:
        super().__init__(message)
        self.problems: Problems = [("", message)] if message is not None else (problems or [])


Check = Callable[[object], Any]
REQUIRED: Any = object()


@dataclass(frozen=True, slots=True)
class Field:
    check: Check
    default: Any = REQUIRED  # None: optional, normalised to None when absent


def integer(lo: int, hi: int) -> Check:
    def check(value: object) -> int:
        # bool is an int to Python, never to a user.
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise Bad(f"must be an integer between {lo} and {hi}")
        return value

    return check


def number(above: float, at_most: float) -> Check:
    def check(value: object) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        # The comparison is also False for NaN.
        if not ok or not above < value <= at_most:  # type: ignore[operator]
            raise Bad(f"must be a number greater than {above:g} and at most {at_most:g}")
        return float(value)  # type: ignore[arg-type]

    return check


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise Bad("must be true or false")
    return value


def pattern(value: object) -> str:
    problem = check_pattern(value)
    if problem is not None:
        raise Bad(problem)
    return str(value)  # already a str: check_pattern refuses anything else


def patterns(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise Bad('must be a non-empty list of action patterns, e.g. ["*.delete"]')
    if len(value) > MAX_PATTERNS:
        raise Bad(f"must have at most {MAX_PATTERNS} patterns")
    out: list[str] = []
    problems: Problems = []
    for i, item in enumerate(value):
        try:
            out.append(pattern(item))
        except Bad as bad:
            problems += [(f"[{i}]{sub}", message) for sub, message in bad.problems]
    if problems:
        raise Bad(problems=problems)
    return out


def read_fields(conditions: object, fields: Mapping[str, Field]) -> tuple[dict[str, Any], Problems]:
    """Check every field of a conditions object; (normalised, problems with full paths).

    ``null`` means absent, as in producer events. Unknown keys are refused so
    that a typo never silently leaves a default in force.
    """
    if not isinstance(conditions, dict):
        return {}, [("conditions", "must be a JSON object")]
    out: dict[str, Any] = {}
    errors: Problems = []
    for name, field in fields.items():
        value = conditions.get(name)
        if value is None:
            if field.default is REQUIRED:
                errors.append((f"conditions.{name}", "is required"))
                continue
            if field.default is None:
                out[name] = None
                continue
            value = field.default
        try:
            out[name] = field.check(value)
        except Bad as bad:
            errors += [(f"conditions.{name}{sub}", message) for sub, message in bad.problems]
    known = ", ".join(fields)
    for name in conditions:
        if name not in fields:
            errors.append((f"conditions.{name}", f"is not a known condition ({known})"))
    return out, errors


def check_fields(conditions: object, fields: Mapping[str, Field]) -> dict[str, Any]:
    out, errors = read_fields(conditions, fields)
    if errors:
        raise ConditionsInvalid(errors)
    return out
