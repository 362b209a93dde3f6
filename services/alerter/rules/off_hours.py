"""``off_hours``: an action outside the workspace's working hours.

Working hours are ``[start, end)`` local time on the listed working ``days``,
in ``timezone``. When ``end`` is earlier than ``start`` the window crosses
midnight and the part after midnight belongs to the day it started: with
``days: ["fri"]``, ``start: "22:00"``, ``end: "06:00"``, Saturday 03:00 is
working time and Friday 03:00 is not.

The time is the event's ``occurred_at`` (when the actor acted), converted
with zoneinfo so that daylight-saving changes move the window with the wall
clock. Stateless: the engine's cooldown limits the noise.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import datetime, time
from typing import Any

from services.alerter.rules.base import (
    AlertEvent,
    Bad,
    ConditionsInvalid,
    Field,
    Problems,
    Verdict,
    compile_pattern,
    pattern,
    read_fields,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SHOWN_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])\Z")
# Names that zoneinfo accepts but that mean the host's zone or nothing.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def _hhmm(value: object) -> str:
    if not isinstance(value, str) or _HHMM.match(value) is None:
        raise Bad('must be a time "HH:MM" between 00:00 and 23:59')
    return value


def _days(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise Bad(f"must be a non-empty list of working days ({', '.join(DAYS)})")
    problems: Problems = []
    first: dict[str, int] = {}
    for i, day in enumerate(value):
        if not isinstance(day, str) or day not in DAYS:
            problems.append((f"[{i}]", f"must be one of {', '.join(DAYS)}"))
        elif day in first:
            problems.append((f"[{i}]", f"repeats {day} (days[{first[day]}])"))
        else:
            first[day] = i
    if problems:
        raise Bad(problems=problems)
    return sorted(first, key=DAYS.index)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


def _timezone(value: object) -> str:
    if not isinstance(value, str) or value not in _zone_names():
        raise Bad("must be an IANA time zone name, e.g. Europe/Berlin or UTC")
    return value


FIELDS = {
    "start": Field(_hhmm),
    "end": Field(_hhmm),
    "days": Field(_days, default=["mon", "tue", "wed", "thu", "fri"]),
    "timezone": Field(_timezone, default="UTC"),
    "action_pattern": Field(pattern, default=None),
}


def _time(hhmm: str) -> time:
    return time(int(hhmm[:2]), int(hhmm[3:]))


def is_working_time(conditions: dict[str, Any], at: datetime) -> bool:
    local = at.astimezone(zoneinfo.ZoneInfo(conditions["timezone"]))
    start, end = _time(conditions["start"]), _time(conditions["end"])
    days = conditions["days"]
    now = local.time()
    today = DAYS[local.weekday()]
    if start < end:
        return today in days and start <= now < end
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return (today in days and now >= start) or (yesterday in days and now < end)


def describe_days(days: list[str]) -> str:
    """``mon–fri``, ``mon, wed, fri``, ``mon–wed, sat``: runs of three or more joined."""
    runs: list[list[int]] = []
    for i in sorted(DAYS.index(d) for d in days):
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{DAYS[run[0]]}–{DAYS[run[-1]]}")
        else:
            parts += [DAYS[i] for i in run]
    return ", ".join(parts)


class OffHours:
    name = "off_hours"

    def validate(self, conditions: object) -> dict[str, Any]:
        out, errors = read_fields(conditions, FIELDS)
        if "start" in out and "end" in out and out["start"] == out["end"]:
            errors.append(("conditions.end", "must differ from start"))
        if errors:
            raise ConditionsInvalid(errors)
        return out

    def key(self, conditions: dict[str, Any], event: AlertEvent) -> str | None:
        wanted = conditions.get("action_pattern")
        if wanted is not None and not compile_pattern(wanted)(event.action):
            return None
        return None if is_working_time(conditions, event.occurred_at) else event.actor_id

    def evaluate(
        self, conditions: dict[str, Any], state: dict[str, Any] | None, event: AlertEvent
    ) -> Verdict:
        if self.key(conditions, event) is None:
            return Verdict(state=None, reason=None)
        zone = conditions["timezone"]
        local = event.occurred_at.astimezone(zoneinfo.ZoneInfo(zone))
        hours = f"{describe_days(conditions['days'])} {conditions['start']}–{conditions['end']}"
        reason = (
            f"actor {event.actor_id} performed {event.action} at {local:%H:%M}"
            f" {_SHOWN_DAYS[local.weekday()]} in {zone}, outside working hours ({hours})"
        )
        return Verdict(state=None, reason=reason)
