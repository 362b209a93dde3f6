"""Derived fields carried beside a chained record, never inside it.

The enricher republishes each chained record to the enriched topic with
its value untouched (the exact hashed lines) and one header,
``chainlog-geo``: a JSON array with one entry per line, ``[country, city]``
or ``null`` when the line's address is absent, private or unknown. The
fields are derived, so they stay outside the hash (docs/hash-chain.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

HEADER = "chainlog-geo"

Geo = tuple[str | None, str | None]
NO_GEO: Geo = (None, None)


def encode(geo: Sequence[Geo]) -> bytes:
    return orjson.dumps([list(g) if g != NO_GEO else None for g in geo])


def decode(headers: Sequence[tuple[str, bytes]] | None, lines: int) -> list[Geo]:
    """The geolocation of each of ``lines`` lines; unknown for a missing or bad header."""
    for name, value in headers or ():
        if name == HEADER:
            try:
                entries: Any = orjson.loads(value)
            except orjson.JSONDecodeError:
                break
            if not isinstance(entries, list) or len(entries) != lines:
                break
            return [_entry(e) for e in entries]
    return [NO_GEO] * lines


def _entry(e: Any) -> Geo:
    if isinstance(e, list) and len(e) == 2:
        country, city = e
        return (
            country if isinstance(country, str) else None,
            city if isinstance(city, str) else None,
        )
    return NO_GEO
