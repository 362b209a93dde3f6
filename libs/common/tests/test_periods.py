"""Schedule periods in UTC: day, ISO week and month boundaries, month lengths, year ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from libs.common.periods import GRACE, Period, due_at, last_complete, next_period, period_at


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cadence", "now", "start", "end", "label"),
    [
        ("daily", utc(2026, 11, 28, 10, 54), utc(2026, 11, 27), utc(2026, 11, 28), "2026-11-27"),
        ("daily", utc(2026, 1, 1, 12), utc(2025, 12, 31), utc(2026, 1, 1), "2025-12-31"),
        ("daily", utc(2024, 3, 1, 6), utc(2024, 2, 29), utc(2024, 3, 1), "2024-02-29"),
        # Saturday 28 November 2026: the last complete ISO week is 16-23 November.
        ("weekly", utc(2026, 11, 28, 10), utc(2026, 11, 16), utc(2026, 11, 23), "2026-W47"),
        # On a Monday the week that just ended is complete (after the grace).
        ("weekly", utc(2026, 11, 23, 1), utc(2026, 11, 16), utc(2026, 11, 23), "2026-W47"),
        # ISO weeks across a year end: 29 Dec 2025 - 4 Jan 2026 is 2026-W01 ...
        ("weekly", utc(2026, 1, 7), utc(2025, 12, 29), utc(2026, 1, 5), "2026-W01"),
        # ... and 28 Dec 2020 - 3 Jan 2021 is 2020-W53.
        ("weekly", utc(2021, 1, 5), utc(2020, 12, 28), utc(2021, 1, 4), "2020-W53"),
        ("monthly", utc(2026, 11, 28), utc(2026, 10, 1), utc(2026, 11, 1), "2026-10"),
        ("monthly", utc(2026, 1, 15), utc(2025, 12, 1), utc(2026, 1, 1), "2025-12"),
        ("monthly", utc(2024, 3, 2), utc(2024, 2, 1), utc(2024, 3, 1), "2024-02"),
        ("monthly", utc(2026, 5, 1, 3), utc(2026, 4, 1), utc(2026, 5, 1), "2026-04"),
    ],
)
def test_the_last_complete_period(
    cadence: str, now: datetime, start: datetime, end: datetime, label: str
) -> None:
    assert last_complete(cadence, now) == Period(start, end, label)


@pytest.mark.parametrize("cadence", ["daily", "weekly", "monthly"])
def test_a_period_is_complete_only_after_the_grace(cadence: str) -> None:
    boundary = period_at(cadence, utc(2026, 3, 1)).start
    just_before = last_complete(cadence, boundary + GRACE - timedelta(microseconds=1))
    at = last_complete(cadence, boundary + GRACE)
    assert just_before.end < boundary == at.end
    assert due_at(at) == boundary + GRACE


def test_times_in_other_offsets_are_read_in_utc() -> None:
    # 01:30 on 28 Nov at +02:00 is 23:30 UTC on 27 Nov.
    t = datetime(2026, 11, 28, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert period_at("daily", t).label == "2026-11-27"
    assert period_at("daily", t).start.tzinfo == UTC


@pytest.mark.parametrize(
    ("year", "lengths"),
    [(2026, [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]), (2024, [31, 29] + [0] * 10)],
)
def test_months_have_their_lengths(year: int, lengths: list[int]) -> None:
    p = period_at("monthly", utc(year, 1, 10))
    for month, days in enumerate(lengths, start=1):
        assert p.label == f"{year}-{month:02d}"
        if days:
            assert p.end - p.start == timedelta(days=days)
        p = next_period("monthly", p.start, p.end)
    if lengths[-1]:
        assert p.label == f"{year + 1}-01"


@pytest.mark.parametrize("cadence", ["daily", "weekly", "monthly"])
def test_runs_follow_each_other_without_gap_or_overlap(cadence: str) -> None:
    created = utc(2025, 12, 20, 9)
    p = next_period(cadence, created, None)
    assert p == last_complete(cadence, created)
    for _ in range(60):
        following = next_period(cadence, created, p.end)
        assert following.start == p.end and following.end > following.start
        assert following.label != p.label
        p = following


def test_weeks_are_seven_days_from_monday() -> None:
    p = period_at("weekly", utc(2026, 12, 31, 23, 59))
    assert p.start == utc(2026, 12, 28) and p.start.weekday() == 0
    assert p.end - p.start == timedelta(days=7) and p.label == "2026-W53"


def test_an_unknown_cadence_is_refused() -> None:
    with pytest.raises(ValueError, match="cadence"):
        period_at("hourly", utc(2026, 1, 1))
