"""Chained segments into table rows."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from libs.common.chain import Head, encode_segment, link
from services.exporter.rows import COLUMNS, BadSegment, segment_rows

WS = "6f2b1c1e-0000-4000-8000-000000000001"


def segment(*events: dict[str, object]) -> bytes:
    head = Head()
    lines = []
    for i, e in enumerate(events):
        ev = {
            "id": f"01900000-0000-7000-8000-00000000000{i}",
            "received_at": "2026-11-27T10:00:00.000000Z",
            "actor_id": "a",
            "action": "x.y",
        } | e
        body, digest = link(head, WS, ev)
        lines.append((digest, body))
    return encode_segment(lines)


def test_row_columns() -> None:
    value = segment(
        {
            "occurred_at": "2026-01-01T00:00:00.000000Z",
            "tenant_id": "t",
            "actor_name": "Ada",
            "targets": [{"type": "doc", "id": "1"}],
        },
        {},
    )
    first, second = (dict(zip(COLUMNS, r, strict=True)) for r in segment_rows(value))
    assert first["seq"] == 1 and second["seq"] == 2
    assert first["occurred_at"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert second["occurred_at"] == second["received_at"]  # absent: indexed by arrival
    assert first["tenant_id"] == "t" and second["tenant_id"] is None
    assert orjson.loads(first["targets"]) == [{"type": "doc", "id": "1"}]
    assert first["search_text"] == "a\nada\nx.y"
    assert second["prev_hash"] == first["hash"]
    assert orjson.loads(first["body"])["seq"] == 1


@pytest.mark.parametrize("value", [b"", None, b"0" * 64 + b" not json", b"0" * 64 + b" {}"])
def test_unusable_segments(value: bytes | None) -> None:
    with pytest.raises(BadSegment):
        list(segment_rows(value))
