"""Timestamps and identifiers as Chainlog writes them.

Every timestamp inside a hashed event is UTC with exactly six fractional
digits and a ``Z`` suffix (``2026-11-27T20:40:14.123456Z``): one spelling per
instant, so the canonical bytes never depend on how a producer wrote it, and
the strings sort in time order.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta, timezone

# ASCII digits only (``\d`` would match any Unicode digit) and ``\Z``, not
# ``$`` (which also matches before a trailing newline).
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z",
    re.ASCII,
)


def format_ts(dt: datetime) -> str:
    """The one spelling of an instant: UTC, microseconds, ``Z``."""
    # Not strftime("%Y"): glibc does not zero-pad years before 1000 ("5-01-01").
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_ts_or_none(dt: datetime | None) -> str | None:
    """``format_ts``, or None for a timestamp not set (a nullable column)."""
    return None if dt is None else format_ts(dt)


def format_epoch_us(epoch_us: int) -> str:
    secs, micros = divmod(epoch_us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{micros:06d}Z"


def now_ts() -> str:
    return format_epoch_us(time.time_ns() // 1000)


def parse_stored_ts(text: str) -> datetime:
    """A timestamp of a hashed event: always written by :func:`format_ts` (UTC,
    microseconds, ``Z``), a form ``fromisoformat`` reads in C."""
    return datetime.fromisoformat(text)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time (offset required); raises ValueError.

    Fractions beyond microseconds are truncated, not rounded, so that a
    value never moves into the next second.
    """
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T12:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = m.group(7)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    off = m.group(8)
    if off in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if off[0] == "+" else -1
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59:
            raise ValueError("has an invalid UTC offset")
        tz = timezone(sign * timedelta(hours=oh, minutes=om))
    if second == 60:  # a leap second is valid RFC 3339; Python cannot hold it
        second = 59
        micro = 999_999
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def _is_normal(text: str) -> bool:
    """Already in the one spelling (``YYYY-MM-DDTHH:MM:SS.ffffffZ``)?"""
    return (
        len(text) == 27
        and text[26] == "Z"
        and text[19] == "."
        and text[10] == "T"
        and _RFC3339.match(text) is not None
        and text[17:19] != "60"
    )


def normalize_rfc3339(text: str) -> str:
    if _is_normal(text):
        # The hot path: most producers already send UTC microseconds. The
        # calendar is still checked (fromisoformat refuses 2026-02-30).
        datetime.fromisoformat(text)
        return text
    return format_ts(parse_rfc3339(text))


def uuid7_batch(n: int, epoch_ms: int | None = None) -> list[str]:
    """``n`` UUIDv7 strings (RFC 9562), time-ordered to the millisecond.

    Within one call the ids are strictly increasing: the 12-bit ``rand_a``
    field carries a counter, the 62 bits of ``rand_b`` are random. Built as
    text directly: this runs for every accepted event.
    """
    ms = time.time_ns() // 1_000_000 if epoch_ms is None else epoch_ms
    head = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
    head = f"{head[:8]}-{head[8:]}-7"
    rnd = os.urandom(8 * n)
    out = []
    for i in range(n):
        rand_b = int.from_bytes(rnd[8 * i : 8 * i + 8], "big") & 0x3FFF_FFFF_FFFF_FFFF
        b = f"{rand_b | 0x8000_0000_0000_0000:016x}"
        out.append(f"{head}{i & 0xFFF:03x}-{b[:4]}-{b[4:]}")
    return out


def uuid7() -> str:
    return uuid7_batch(1)[0]
