"""Legal holds without a database: a hold's filter, and the check of held islands."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.chain import StoredEvent, check_held
from libs.common.holds import FILTER_KEYS, parse_filter
from libs.common.tests.test_chain import WS, _chain, _reseal


def _fields(value: Any) -> list[str]:
    out, bad = parse_filter(value)
    assert bad, out
    return [b["field"] for b in bad]


def test_a_good_filter_is_normalised() -> None:
    out, bad = parse_filter(
        {
            "actor_id": "user_1",
            "tenant_id": "acme",
            "action": "document.*",
            "resource": "document",
            "resource_id": "doc_9",
            "from": "2026-01-31T13:00:00+01:00",
            "to": "2026-02-01T00:00:00Z",
        }
    )
    assert bad == []
    assert set(out) == set(FILTER_KEYS)
    assert (out["from"], out["to"]) == (
        "2026-01-31T12:00:00.000000Z",
        "2026-02-01T00:00:00.000000Z",
    )
    assert out["action"] == "document.*"


@pytest.mark.parametrize(
    ("value", "fields"),
    [
        (None, ["filter"]),
        ([], ["filter"]),
        ({}, ["filter"]),
        ({"session_id": "s1"}, ["filter.session_id"]),
        ({"search": "x", "actor_id": "u"}, ["filter.search"]),
        ({"actor_id": ""}, ["filter.actor_id"]),
        ({"actor_id": 7}, ["filter.actor_id"]),
        ({"tenant_id": "t" * 257}, ["filter.tenant_id"]),
        ({"action": "doc/delete"}, ["filter.action"]),
        ({"action": "%"}, ["filter.action"]),
        ({"from": "yesterday"}, ["filter.from"]),
        ({"to": "2026-01-01T00:00:00"}, ["filter.to"]),  # no offset
        ({"from": "0001-01-01T00:00:00+01:00"}, ["filter.from"]),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, ["filter.to"]),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, ["filter.to"]),
        ({"actor_id": None, "action": "*", "x": "y"}, ["filter.actor_id", "filter.x"]),
    ],
)
def test_each_bad_key_is_named(value: Any, fields: list[str]) -> None:
    assert _fields(value) == fields


def _raw(rows: list[StoredEvent]) -> list[tuple[int, bytes, bytes, bytes]]:
    return [(r.seq, bytes.fromhex(r.prev_hash), bytes.fromhex(r.hash), r.body) for r in rows]


def test_islands_are_checked_on_their_own() -> None:
    rows = _chain(8)
    islands = [rows[1], rows[2], rows[5]]  # seqs 2, 3, 6: their neighbours were removed
    held = check_held(WS, _raw(islands))
    assert (held.count, held.seqs, held.breaks) == (3, [2, 3, 6], [])
    assert held.as_dict() == {"count": 3, "seqs": [2, 3, 6], "seqs_truncated": False}
    assert check_held(WS, _raw(islands), max_listed=2).as_dict()["seqs_truncated"] is True


def test_a_tampered_island_is_a_break() -> None:
    rows = _chain(8)
    edited = rows[5].body.replace(b'"user_6"', b'"user_X"')
    r = rows[5]
    tampered = StoredEvent(r.seq, r.event_id, r.prev_hash, r.hash, edited)
    # seq 3 hashed again over another prev_hash: it no longer links to island 2.
    relinked = _reseal(rows[2], prev_hash="ab" * 32)
    held = check_held(WS, _raw([rows[1], relinked, tampered]))
    assert [(b.seq, b.type) for b in held.breaks] == [(3, "chain_break"), (6, "hash_mismatch")]
    # Of another workspace: what is served would not be what was hashed.
    assert [b.type for b in check_held("another", _raw([rows[1]])).breaks] == ["hash_mismatch"]
