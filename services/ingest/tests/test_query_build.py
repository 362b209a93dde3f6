"""Query parameters into SQL: filters, wildcards, cursors, errors."""

from __future__ import annotations

import pytest

from libs.common.errors import ApiError
from services.ingest.query import build_query, decode_cursor, encode_cursor

WS = "6f2b1c1e-0000-4000-8000-000000000001"


def test_wildcards_escape_like_metacharacters() -> None:
    sql, args, _ = build_query(WS, {"action": "doc_x.*"})
    assert "action LIKE $2" in sql
    assert args[1] == "doc\\_x.%"


def test_exact_action_is_equality() -> None:
    sql, args, _ = build_query(WS, {"action": "document.delete"})
    assert "action = $2" in sql and args[1] == "document.delete"


def test_cursor_round_trip_and_limit() -> None:
    sql, args, limit = build_query(WS, {"cursor": encode_cursor(42), "limit": "10"})
    assert "seq < $2" in sql and args[1] == 42 and limit == 10
    assert sql.endswith("LIMIT 11")
    assert decode_cursor(encode_cursor(7)) == 7


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"from": "yesterday"}, "from"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_parameters_name_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(ApiError) as info:
        build_query(WS, params)
    assert info.value.status == 422
    assert [v["field"] for v in info.value.body()["violations"]] == [field]


def test_occurred_order_pages_by_occurred_at_then_seq() -> None:
    sql, args, _ = build_query(WS, {"order": "occurred", "from": "2026-11-28T00:00:00Z"})
    assert sql.endswith("ORDER BY occurred_at DESC, seq DESC LIMIT 26")
    cursor = encode_cursor(42, 1_795_000_000_123_456)
    sql, args, _ = build_query(WS, {"order": "occurred", "cursor": cursor})
    assert "(occurred_at, seq) < ($3, $2)" in sql
    assert args[1] == 42
    assert args[2].isoformat() == "2026-11-18T11:06:40.123456+00:00"
    assert decode_cursor(cursor) == 42


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"order": "newest"}, "order"),
        ({"order": "occurred", "cursor": encode_cursor(42)}, "cursor"),
    ],
)
def test_a_bad_order_or_a_cursor_of_the_other_order_is_a_422(
    params: dict[str, str], field: str
) -> None:
    with pytest.raises(ApiError) as exc:
        build_query(WS, params)
    assert exc.value.status == 422
    assert [v["field"] for v in exc.value.body()["violations"]] == [field]
