"""The chainer's pure logic: linking records, de-duplication, staging."""

from __future__ import annotations

import uuid

import orjson
import pytest

from libs.common.chain import ZERO_HASH, event_hash, iter_segment
from services.chainer.logic import (
    IDEMPOTENCY_WINDOW_S,
    InvalidRecord,
    PartitionState,
    Staged,
    chain_record,
    decode_head,
    encode_head,
)

WS = "6f2b1c1e-0000-4000-8000-000000000001"
NOW = 1_800_000_000.0


def raw(*events: dict[str, object], ws: str = WS) -> bytes:
    full = [
        {
            "id": str(uuid.uuid4()),
            "received_at": "2026-11-27T10:00:00.000000Z",
            "actor_id": "a",
            "action": "x.y",
        }
        | e
        for e in events
    ]
    return orjson.dumps({"workspace_id": ws, "events": full})


def lines(segment: bytes | None) -> list[dict[str, object]]:
    assert segment is not None
    out = []
    for digest, body in iter_segment(segment):
        assert event_hash(body) == digest
        out.append(orjson.loads(body))
    return out


def test_records_continue_one_chain() -> None:
    state = PartitionState()
    staged = Staged(state)
    _, first = chain_record(staged, raw({}, {}), NOW)
    _, second = chain_record(staged, raw({}), NOW)
    a, b, c = lines(first) + lines(second)
    assert [a["seq"], b["seq"], c["seq"]] == [1, 2, 3]
    assert a["prev_hash"] == ZERO_HASH
    assert b["prev_hash"] == event_hash(orjson.dumps(a, option=orjson.OPT_SORT_KEYS))
    assert state.heads == {}  # nothing committed yet
    staged.apply()
    assert state.heads[WS].seq == 3


def test_unapplied_stage_leaves_state_untouched() -> None:
    state = PartitionState()
    first = Staged(state)
    chain_record(first, raw({}), NOW)
    first.apply()
    aborted = Staged(state)
    chain_record(aborted, raw({}, {}), NOW)  # its transaction "fails": never applied
    retry = Staged(state)
    _, seg = chain_record(retry, raw({}), NOW)
    assert [e["seq"] for e in lines(seg)] == [2]


def test_idempotency_key_within_window_is_dropped() -> None:
    state = PartitionState()
    staged = Staged(state)
    _, seg = chain_record(staged, raw({"idempotency_key": "k"}, {"idempotency_key": "k"}), NOW)
    assert len(lines(seg)) == 1 and staged.duplicates == 1
    staged.apply()
    again = Staged(state)
    _, seg2 = chain_record(again, raw({"idempotency_key": "k"}), NOW + 10)
    assert seg2 is None and again.duplicates == 1
    later = Staged(state)
    _, seg3 = chain_record(later, raw({"idempotency_key": "k"}), NOW + IDEMPOTENCY_WINDOW_S + 1)
    assert [e["seq"] for e in lines(seg3)] == [2]


def test_same_key_in_two_workspaces_is_independent() -> None:
    staged = Staged(PartitionState())
    other = "6f2b1c1e-0000-4000-8000-000000000002"
    _, a = chain_record(staged, raw({"idempotency_key": "k"}), NOW)
    _, b = chain_record(staged, raw({"idempotency_key": "k"}, ws=other), NOW)
    assert len(lines(a)) == 1 and len(lines(b)) == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (orjson.dumps({"workspace_id": "nope", "events": [{}]}), "not a UUID"),
        (orjson.dumps({"workspace_id": WS, "events": []}), "non-empty"),
        (orjson.dumps({"workspace_id": WS, "events": [1]}), "not an object"),
        (raw({"action": None}), "action"),
        (raw({"seq": 5}), "system field seq"),
        (raw({"metadata": {"big": 2**60}}), "canonicalised"),
    ],
)
def test_invalid_records_change_nothing(value: bytes, reason: str) -> None:
    state = PartitionState()
    staged = Staged(state)
    chain_record(staged, raw({}), NOW)
    with pytest.raises(InvalidRecord, match=reason):
        chain_record(staged, value, NOW)
    _, seg = chain_record(staged, raw({}), NOW)
    assert [e["seq"] for e in lines(seg)] == [2]


def test_head_round_trip() -> None:
    staged = Staged(PartitionState())
    chain_record(staged, raw({}), NOW)
    head = staged.heads[WS]
    assert decode_head(encode_head(head)) == head
