"""off_hours: an action outside working hours in the workspace's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.alerter.rules import RULE_TYPES
from services.alerter.rules.off_hours import describe_days
from services.alerter.tests.test_rules import errors_of, event

RULE = RULE_TYPES["off_hours"]
BERLIN = {"start": "09:00", "end": "18:00", "timezone": "Europe/Berlin"}
NEW_YORK = {"start": "09:00", "end": "17:00", "timezone": "America/New_York"}
# Friday night shift: the part after midnight is still Friday's.
NIGHT = {"start": "22:00", "end": "06:00", "days": ["fri"]}


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def off_hours(conditions: dict[str, Any], at: datetime, action: str = "billing.export") -> bool:
    conds = RULE.validate(conditions)
    e = event(action=action, occurred_at=at)
    fires = RULE.evaluate(conds, None, e).reason is not None
    assert fires is (RULE.key(conds, e) is not None)
    return fires


def test_defaults_and_normalised_days() -> None:
    assert RULE.validate({"start": "09:00", "end": "18:00"}) == {
        "start": "09:00",
        "end": "18:00",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "timezone": "UTC",
        "action_pattern": None,
    }
    assert RULE.validate(NIGHT | {"days": ["sun", "mon"]})["days"] == ["mon", "sun"]


def test_every_bad_field_is_named() -> None:
    assert errors_of(
        "off_hours",
        {
            "start": "9:00",
            "end": "24:00",
            "days": ["mon", "xyz", "mon", 3],
            "timezone": "Mars/Olympus",
            "action_pattern": "",
        },
    ) == [
        ("conditions.start", 'must be a time "HH:MM" between 00:00 and 23:59'),
        ("conditions.end", 'must be a time "HH:MM" between 00:00 and 23:59'),
        ("conditions.days[1]", "must be one of mon, tue, wed, thu, fri, sat, sun"),
        ("conditions.days[2]", "repeats mon (days[0])"),
        ("conditions.days[3]", "must be one of mon, tue, wed, thu, fri, sat, sun"),
        ("conditions.timezone", "must be an IANA time zone name, e.g. Europe/Berlin or UTC"),
        ("conditions.action_pattern", "must be a non-empty string of at most 200 characters"),
    ]


def test_required_and_equal_times() -> None:
    assert errors_of("off_hours", {}) == [
        ("conditions.start", "is required"),
        ("conditions.end", "is required"),
    ]
    assert errors_of("off_hours", {"start": "08:00", "end": "08:00"}) == [
        ("conditions.end", "must differ from start")
    ]


@pytest.mark.parametrize("days", [[], "mon", {"mon": True}])
def test_days_must_be_a_non_empty_list(days: object) -> None:
    assert [f for f, _ in errors_of("off_hours", BERLIN | {"days": days})] == ["conditions.days"]


@pytest.mark.parametrize("zone", ["localtime", "europe/berlin", "../etc/passwd", "", 1, "UTC "])
def test_bad_timezones(zone: object) -> None:
    assert [f for f, _ in errors_of("off_hours", BERLIN | {"timezone": zone})] == [
        "conditions.timezone"
    ]


def test_the_documented_example() -> None:
    conds = RULE.validate(BERLIN)
    # Saturday 2026-03-28 23:14 in Berlin (CET, UTC+1).
    verdict = RULE.evaluate(
        conds, None, event(action="billing.export", occurred_at=utc(2026, 3, 28, 22, 14))
    )
    assert verdict.state is None
    assert verdict.reason == (
        "actor u_42 performed billing.export at 23:14 Sat in Europe/Berlin,"
        " outside working hours (mon–fri 09:00–18:00)"
    )


def test_working_hours_are_half_open() -> None:
    # Tuesday 2026-03-03 in Berlin (UTC+1).
    assert off_hours(BERLIN, utc(2026, 3, 3, 7, 59, 59)) is True  # 08:59:59
    assert off_hours(BERLIN, utc(2026, 3, 3, 8, 0)) is False  # 09:00
    assert off_hours(BERLIN, utc(2026, 3, 3, 16, 59, 59)) is False  # 17:59:59
    assert off_hours(BERLIN, utc(2026, 3, 3, 17, 0)) is True  # 18:00
    assert off_hours(BERLIN, utc(2026, 3, 1, 12, 0)) is True  # a Sunday at 13:00


def test_uses_occurred_at_not_received_at() -> None:
    conds = RULE.validate(BERLIN)
    # Received on a Tuesday noon, but done on Sunday.
    e = event(24 * 3600, occurred_at=utc(2026, 3, 1, 12, 0))
    assert e.received_at.weekday() == 1
    assert RULE.key(conds, e) == "u_42"


def test_window_across_midnight_belongs_to_the_day_it_started() -> None:
    assert off_hours(NIGHT, utc(2026, 3, 6, 21, 59)) is True  # Fri 21:59
    assert off_hours(NIGHT, utc(2026, 3, 6, 23, 0)) is False  # Fri 23:00
    assert off_hours(NIGHT, utc(2026, 3, 7, 3, 0)) is False  # Sat 03:00, Friday's shift
    assert off_hours(NIGHT, utc(2026, 3, 7, 6, 0)) is True  # Sat 06:00
    assert off_hours(NIGHT, utc(2026, 3, 6, 3, 0)) is True  # Fri 03:00, Thursday's shift
    assert off_hours(NIGHT, utc(2026, 3, 7, 22, 30)) is True  # Sat 22:30
    # Sunday's shift runs into Monday across the end of the week.
    sunday = NIGHT | {"days": ["sun"]}
    assert off_hours(sunday, utc(2026, 3, 9, 2, 0)) is False  # Mon 02:00


def test_end_at_midnight() -> None:
    evening = {"start": "12:00", "end": "00:00", "days": ["mon"]}
    assert off_hours(evening, utc(2026, 3, 2, 23, 59)) is False  # Mon 23:59
    assert off_hours(evening, utc(2026, 3, 3, 0, 0)) is True  # Tue 00:00


def test_europe_spring_forward() -> None:
    # Berlin moves from UTC+1 to UTC+2 on Sunday 2026-03-29: 07:30 UTC is
    # 08:30 local (off) on the Friday before and 09:30 (working) on the Monday after.
    assert off_hours(BERLIN, utc(2026, 3, 27, 7, 30)) is True
    assert off_hours(BERLIN, utc(2026, 3, 30, 7, 30)) is False
    assert off_hours(BERLIN, utc(2026, 3, 30, 16, 30)) is True  # 18:30 CEST


def test_us_spring_forward() -> None:
    # New York moves from UTC-5 to UTC-4 on Sunday 2026-03-08.
    assert off_hours(NEW_YORK, utc(2026, 3, 6, 13, 30)) is True  # Fri 08:30 EST
    assert off_hours(NEW_YORK, utc(2026, 3, 9, 13, 30)) is False  # Mon 09:30 EDT
    assert off_hours(NEW_YORK, utc(2026, 3, 6, 21, 30)) is False  # Fri 16:30 EST
    assert off_hours(NEW_YORK, utc(2026, 3, 9, 21, 30)) is True  # Mon 17:30 EDT


def test_us_fall_back() -> None:
    # New York moves from UTC-4 back to UTC-5 on Sunday 2026-11-01.
    assert off_hours(NEW_YORK, utc(2026, 10, 30, 13, 30)) is False  # Fri 09:30 EDT
    assert off_hours(NEW_YORK, utc(2026, 11, 2, 13, 30)) is True  # Mon 08:30 EST
    assert off_hours(NEW_YORK, utc(2026, 11, 2, 14, 30)) is False  # Mon 09:30 EST


def test_europe_fall_back_repeats_an_hour() -> None:
    # On Sunday 2026-10-25 Berlin's clocks go from 03:00 CEST back to 02:00 CET,
    # so 02:30 happens twice; both are inside Saturday's night shift.
    saturday_night = {
        "start": "22:00",
        "end": "03:00",
        "days": ["sat"],
        "timezone": "Europe/Berlin",
    }
    assert off_hours(saturday_night, utc(2026, 10, 25, 0, 30)) is False  # 02:30 CEST
    assert off_hours(saturday_night, utc(2026, 10, 25, 1, 30)) is False  # 02:30 CET
    assert off_hours(saturday_night, utc(2026, 10, 25, 2, 0)) is True  # 03:00 CET
    conds = RULE.validate(saturday_night)
    reason = RULE.evaluate(conds, None, event(occurred_at=utc(2026, 10, 25, 2, 0))).reason
    assert reason is not None and " at 03:00 Sun in Europe/Berlin," in reason


def test_action_pattern_limits_the_rule() -> None:
    conditions = BERLIN | {"action_pattern": "billing.*"}
    sunday = utc(2026, 3, 1, 12, 0)
    assert off_hours(conditions, sunday, action="billing.export") is True
    assert off_hours(conditions, sunday, action="document.read") is False


def test_every_off_hours_event_fires() -> None:
    conds = RULE.validate(BERLIN)
    events = [event(occurred_at=utc(2026, 3, 1, 12, minute)) for minute in range(5)]
    assert all(RULE.evaluate(conds, None, e).reason for e in events)


@pytest.mark.parametrize(
    ("days", "text"),
    [
        (["mon", "tue", "wed", "thu", "fri"], "mon–fri"),
        (["mon", "wed", "fri"], "mon, wed, fri"),
        (["sat", "sun"], "sat, sun"),
        (["mon", "tue", "wed", "sat"], "mon–wed, sat"),
        (["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "mon–sun"),
    ],
)
def test_describe_days(days: list[str], text: str) -> None:
    assert describe_days(days) == text
