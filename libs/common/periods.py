"""The periods of a schedule, in UTC: pure functions, no clock of their own.

A period is ``[start, end)``: a day from 00:00 to 00:00, an ISO week from
Monday 00:00 to the next Monday, a calendar month from its first day to the
next month's. A period is *complete* once ``GRACE`` has passed after its
end, so events in flight at midnight are stored before the period's file
is written. Each period has a label that names its object in the bucket:
``2026-11-27``, ``2026-W48`` (ISO year and week), ``2026-11``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

CADENCES = ("daily", "weekly", "monthly")
#: How long after a period's end its run waits for events still on their way.
GRACE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime
    label: str


def _floor(cadence: str, t: datetime) -> datetime:
    """The start of the period that holds ``t``."""
    day = t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if cadence == "daily":
        return day
    if cadence == "weekly":
        return day - timedelta(days=day.weekday())
    if cadence == "monthly":
        return day.replace(day=1)
    raise ValueError(f"not a cadence: {cadence!r}")


def _after(cadence: str, start: datetime) -> datetime:
    """The start of the period after the one starting at ``start``."""
    if cadence == "daily":
        return start + timedelta(days=1)
    if cadence == "weekly":
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def _label(cadence: str, start: datetime) -> str:
    if cadence == "daily":
        return start.date().isoformat()
    if cadence == "weekly":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start.year:04d}-{start.month:02d}"


def period_at(cadence: str, t: datetime) -> Period:
    """The period that holds ``t``."""
    start = _floor(cadence, t)
    return Period(start, _after(cadence, start), _label(cadence, start))


def last_complete(cadence: str, now: datetime) -> Period:
    """The latest period complete at ``now`` (its end at least ``GRACE`` ago)."""
    current = _floor(cadence, now - GRACE)
    previous = _floor(cadence, current - timedelta(days=1))
    return Period(previous, current, _label(cadence, previous))


def next_period(cadence: str, created_at: datetime, last_end: datetime | None) -> Period:
    """The period a schedule runs next: the one after its last, or for a schedule that has
    not run yet, the last one complete when it was created."""
    if last_end is None:
        return last_complete(cadence, created_at)
    return period_at(cadence, last_end)


def due_at(period: Period) -> datetime:
    """When ``period`` is complete."""
    return period.end + GRACE
