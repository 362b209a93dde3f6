"""From a chained segment to rows of the events table: pure, no SQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from libs.common import enrichment
from libs.common.chain import iter_segment
from libs.common.timeutil import parse_stored_ts

#: Columns written, in order (see migrations/001_spine.sql).
COLUMNS = (
    "workspace_id",
    "seq",
    "id",
    "hash",
    "prev_hash",
    "body",
    "received_at",
    "occurred_at",
    "action",
    "actor_id",
    "resource",
    "resource_id",
    "tenant_id",
    "session_id",
    "targets",
    "search_text",
    "ip_country",
    "ip_city",
    "action_category",
    "schema_violation",
)
SEARCHED = ("actor_id", "actor_name", "action", "resource", "resource_id", "resource_name")

Row = tuple[Any, ...]


class BadSegment(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def segment_rows(
    value: bytes | None, headers: Sequence[tuple[str, bytes]] | None = None
) -> Iterator[Row]:
    """Rows of one enriched record; raises BadSegment if any line is unusable.

    The geolocation comes from the enricher's header, one entry per line.
    """
    if not value:
        raise BadSegment("empty record")
    lines = list(iter_segment(value))
    geo = enrichment.decode(headers, len(lines))
    for (digest, body), (country, city) in zip(lines, geo, strict=True):
        try:
            ev = orjson.loads(body)
            received = parse_stored_ts(ev["received_at"])
            occurred = parse_stored_ts(ev["occurred_at"]) if "occurred_at" in ev else received
            targets = ev.get("targets")
            search = "\n".join(ev[k] for k in SEARCHED if k in ev).lower()
            row: Row = (
                ev["workspace_id"],
                ev["seq"],
                ev["id"],
                bytes.fromhex(digest),
                bytes.fromhex(ev["prev_hash"]),
                body,
                received,
                occurred,
                ev["action"],
                ev["actor_id"],
                ev.get("resource"),
                ev.get("resource_id"),
                ev.get("tenant_id"),
                ev.get("session_id"),
                orjson.dumps(targets).decode() if targets else None,
                search,
                country,
                city,
                ev.get("action_category"),
                "schema_violation" in ev,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BadSegment(f"unusable chained line: {exc!r}") from None
        yield row
