"""The hash chain: canonical encoding against the RFC 8785 reference,
linking, verification, segments."""

from __future__ import annotations

import copy
import hashlib
import json
import random
from typing import Any

import orjson
import pytest
import rfc8785

from libs.common.chain import (
    ZERO_HASH,
    Head,
    StoredEvent,
    Verifier,
    _needs_reference_encoder,
    canonical,
    encode_segment,
    event_hash,
    iter_segment,
    link,
)

WS = "3f1c2b7e-8d4a-4c1e-9b2f-6a5d4e3c2b1a"
MAX_SAFE = 2**53 - 1

# ---------------------------------------------------------------------------
# A small seeded generator of event-shaped JSON.

_CHARS = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-./:")
    + ['"', "\\", "/", "'", "<", ">", "&"]
    + [chr(c) for c in range(0x01, 0x20)]  # control characters (no NUL: refused)
    + ["\x7f", "\x80", "\x9f", "\xa0", "\xad"]
    + ["é", "ü", "ß", "漢", "字", "こ", "\u2028", "\u2029", "\u200b", "\ufeff"]
    + ["\ud7ff", "\ue000", "\uff41", "\ufffd", "\uffff"]  # around the surrogate range
    + ["😀", "𝄞", "\U00010000", "\U0010ffff", "🇫🇷"]  # outside the BMP
)


def _string(rng: random.Random, max_len: int = 12) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, max_len)))


def _key(rng: random.Random) -> str:
    # Short keys from a small alphabet collide on prefixes, which is where
    # UTF-16 and code-point orders disagree ("\uff41" vs "😀").
    small = ["a", "b", "z", "A", "é", "\uff41", "\ue000", "😀", "𝄞", "\U0010ffff", "_", "\x01"]
    if rng.random() < 0.6:
        return "".join(rng.choice(small) for _ in range(rng.randint(1, 3)))
    return _string(rng, 8)


def _int(rng: random.Random) -> int:
    return rng.choice(
        [
            0,
            1,
            -1,
            MAX_SAFE,
            -MAX_SAFE,
            MAX_SAFE - 1,
            2**31,
            -(2**31),
            rng.randint(-1000, 1000),
            rng.randint(-MAX_SAFE, MAX_SAFE),
        ]
    )


def _float(rng: random.Random) -> float:
    special = [0.0, -0.0, 0.1, 1.0, -1.0, 0.5, 1e-7, 1e-6, 123.456e5, 1 / 3, 2.5e-308, 5e-324]
    special += [float(MAX_SAFE), -float(MAX_SAFE), 1e15, -1e15, 4503599627370495.5]
    # Only what ingest accepts: |f| <= 2^53-1 (see test_big_float_does_not_roundtrip).
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(special)
    if pick < 0.6:
        return rng.uniform(-1e6, 1e6)
    if pick < 0.8:
        return round(rng.uniform(-1000, 1000), rng.randint(0, 6))
    return rng.choice([-1, 1]) * 10 ** rng.uniform(-320, 15)


def _value(rng: random.Random, depth: int, floats: bool) -> Any:
    kinds = ["str", "int", "bool", "null"] + (["float"] if floats else [])
    if depth < 5:
        kinds += ["obj", "arr"]
    kind = rng.choice(kinds)
    if kind == "str":
        return _string(rng)
    if kind == "int":
        return _int(rng)
    if kind == "float":
        return _float(rng)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "obj":
        return {_key(rng): _value(rng, depth + 1, floats) for _ in range(rng.randint(0, 6))}
    return [_value(rng, depth + 1, floats) for _ in range(rng.randint(0, 5))]


def _event(rng: random.Random) -> dict[str, Any]:
    floats = rng.random() < 0.4
    event: dict[str, Any] = {
        "workspace_id": WS,
        "seq": rng.randint(1, MAX_SAFE),
        "id": "019bc119-0101-7000-8000-000000000001",
        "received_at": "2026-01-15T10:00:00.001123Z",
        "prev_hash": ZERO_HASH,
        "actor_id": _string(rng) or "u",
        "action": "user.login",
    }
    if rng.random() < 0.8:
        event["metadata"] = {_key(rng): _value(rng, 2, floats) for _ in range(rng.randint(0, 8))}
    if rng.random() < 0.5:
        event["targets"] = [
            {"type": _string(rng) or "t", "metadata": {_key(rng): _value(rng, 3, floats)}}
            for _ in range(rng.randint(1, 3))
        ]
    if rng.random() < 0.3:
        event["resource_name"] = _string(rng, 40)
    return event


def test_generated_events_canonical_matches_rfc8785() -> None:
    rng = random.Random(8785)
    fast = reference = 0
    for _ in range(3000):
        event = _event(rng)
        expected = rfc8785.dumps(event)
        assert canonical(event) == expected, event
        if _needs_reference_encoder(event):
            reference += 1
        else:
            fast += 1
            # The fast path is the point: it must really be orjson's output.
            assert orjson.dumps(event, option=orjson.OPT_SORT_KEYS) == expected
    # Both encoders were exercised, a lot.
    assert fast > 500 and reference > 500


def test_big_float_does_not_roundtrip() -> None:
    """Why ingest refuses floats beyond 2^53-1: RFC 8785 writes 1.2345678901234568e20
    as an integer literal, which a verifier parses back as an integer that RFC 8785
    then refuses (and JavaScript would round)."""
    body = canonical({"f": 1.2345678901234568e20})
    assert body == b'{"f":123456789012345680000}'
    with pytest.raises(rfc8785.IntegerDomainError):
        rfc8785.dumps(json.loads(body))


def test_generated_values_roundtrip_through_json() -> None:
    """What a verifier does: parse the canonical bytes and re-canonicalise."""
    rng = random.Random(2028)
    for _ in range(1000):
        body = canonical(_event(rng))
        assert rfc8785.dumps(json.loads(body)) == body
        assert rfc8785.dumps(orjson.loads(body)) == body
        assert canonical(orjson.loads(body)) == body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"z": 1, "\uff41": 2, "😀k": 3}, '{"z":1,"😀k":3,"\uff41":2}'),
        ({"m": [{"\uff41": 1, "😀": 2}]}, '{"m":[{"😀":2,"\uff41":1}]}'),
        ({"b": 1, "a": 2, "B": 3, "é": 4}, '{"B":3,"a":2,"b":1,"é":4}'),
        ({"f": [0.1, 1.0, -0.0, 1e-7, 123.456e5, 9007199254740991.0]},
         '{"f":[0.1,1,0,1e-7,12345600,9007199254740991]}'),
        ({"i": [MAX_SAFE, -MAX_SAFE]}, '{"i":[9007199254740991,-9007199254740991]}'),
        ({"s": "\x01\x1f\x7f\u2028\n\t\b\f\r\"\\/é😀"},
         '{"s":"\\u0001\\u001f\x7f\u2028\\n\\t\\b\\f\\r\\"\\\\/é😀"}'),
        ({"n": None, "t": True, "e": {}, "a": []}, '{"a":[],"e":{},"n":null,"t":true}'),
    ],
)  # fmt: skip
def test_canonical_known_values(value: dict[str, Any], expected: str) -> None:
    assert canonical(value) == expected.encode("utf-8")
    assert rfc8785.dumps(value) == expected.encode("utf-8")


def test_integer_beyond_safe_range_is_not_canonicalised_silently() -> None:
    # Refused at ingest; if one ever reached the reference encoder it raises.
    with pytest.raises(rfc8785.IntegerDomainError):
        canonical({"f": 0.5, "n": MAX_SAFE + 1})


# ---------------------------------------------------------------------------
# link


def test_link_adds_system_fields_and_moves_head() -> None:
    head = Head()
    ev: dict[str, Any] = {"id": "e1", "received_at": "t", "actor_id": "a", "action": "x"}
    body, digest = link(head, WS, ev)
    assert ev["workspace_id"] == WS and ev["seq"] == 1 and ev["prev_hash"] == ZERO_HASH
    assert body == rfc8785.dumps(ev)
    assert digest == hashlib.sha256(body).hexdigest() == event_hash(body)
    assert (head.seq, head.hash) == (1, digest)
    ev2: dict[str, Any] = {"id": "e2", "received_at": "t", "actor_id": "a", "action": "x"}
    link(head, WS, ev2)
    assert ev2["seq"] == 2 and ev2["prev_hash"] == digest and head.seq == 2


# ---------------------------------------------------------------------------
# Verifier


def _chain(n: int = 8) -> list[StoredEvent]:
    head = Head()
    rows = []
    for i in range(1, n + 1):
        ev: dict[str, Any] = {
            "id": f"019bc119-01{i:02x}-7000-8000-0000000000{i:02x}",
            "received_at": f"2026-01-15T10:00:{i:02d}.000000Z",
            "actor_id": f"user_{i}",
            "action": "doc.view",
            "metadata": {"i": i, "note": "é😀\n"},
        }
        body, digest = link(head, WS, ev)
        rows.append(StoredEvent(ev["seq"], ev["id"], ev["prev_hash"], digest, body))
    return rows


def _verify(
    rows: list[StoredEvent],
    *,
    first: int = 1,
    prev: str | None = ZERO_HASH,
    max_breaks: int = 100,
    chunk: int = 3,
) -> dict[str, Any]:
    """Verify through both paths; the fast one must agree wherever it can know."""
    v = Verifier(WS, expected_first_seq=first, expected_prev_hash=prev, max_breaks=max_breaks)
    fast = Verifier(WS, expected_first_seq=first, expected_prev_hash=prev, max_breaks=max_breaks)
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        v.feed(part)
        fast.feed_raw(
            [(r.seq, bytes.fromhex(r.prev_hash), bytes.fromhex(r.hash), r.body) for r in part]
        )
    result = v.result.as_dict()
    if all(_body_id(r) == r.event_id for r in rows):  # feed_raw has no row id to compare
        assert fast.result.as_dict() == result
    return result


def _body_id(row: StoredEvent) -> Any:
    try:
        doc = orjson.loads(row.body)
    except orjson.JSONDecodeError:
        return None
    return doc.get("id") if isinstance(doc, dict) else None


def _reseal(row: StoredEvent, **changes: Any) -> StoredEvent:
    """``row`` with body fields changed and its hash recomputed (self-consistent)."""
    doc = orjson.loads(row.body)
    doc.update(changes)
    body = canonical(doc)
    return StoredEvent(doc["seq"], doc["id"], doc["prev_hash"], event_hash(body), body)


def test_clean_chain_is_valid() -> None:
    rows = _chain()
    res = _verify(rows)
    assert res == {
        "valid": True,
        "events_checked": 8,
        "first_seq": 1,
        "last_seq": 8,
        "head_hash": rows[-1].hash,
        "breaks": [],
        "breaks_truncated": False,
    }


def test_chunking_does_not_matter() -> None:
    rows = _chain()
    rows[4] = StoredEvent(rows[4].seq, rows[4].event_id, rows[4].prev_hash, rows[4].hash, b"{}")
    assert _verify(rows, chunk=1) == _verify(rows, chunk=100) == _verify(rows, chunk=3)


def test_empty_run() -> None:
    res = _verify([])
    assert res["valid"] is True and res["events_checked"] == 0 and res["first_seq"] is None


def test_tampered_body_is_hash_mismatch() -> None:
    rows = _chain()
    r = rows[2]
    body = r.body.replace(b'"user_3"', b'"user_X"')
    assert body != r.body
    rows[2] = StoredEvent(r.seq, r.event_id, r.prev_hash, r.hash, body)
    res = _verify(rows)
    assert res["valid"] is False
    assert res["breaks"] == [
        {
            "seq": 3,
            "event_id": r.event_id,
            "type": "hash_mismatch",
            "expected_hash": hashlib.sha256(body).hexdigest(),
            "actual_hash": r.hash,
        }
    ]


def test_missing_row_is_gap_named_by_first_missing_seq() -> None:
    rows = _chain()
    del rows[3:5]  # seq 4 and 5
    res = _verify(rows)
    assert res["valid"] is False
    assert res["events_checked"] == 6
    assert res["breaks"] == [
        {
            "seq": 4,
            "event_id": None,
            "type": "gap",
            "expected_hash": rows[2].hash,
            "actual_hash": None,
        }
    ]


def test_missing_first_row_is_gap() -> None:
    rows = _chain()[1:]
    res = _verify(rows)
    assert [(b["seq"], b["type"]) for b in res["breaks"]] == [(1, "gap")]


def test_changed_prev_hash_is_chain_break() -> None:
    rows = _chain()
    original = rows[4]
    forged = _reseal(original, prev_hash="ab" * 32)
    assert forged.hash != original.hash
    rows[4] = forged
    res = _verify(rows)
    assert res["valid"] is False
    assert res["breaks"][0] == {
        "seq": 5,
        "event_id": original.event_id,
        "type": "chain_break",
        "expected_hash": rows[3].hash,
        "actual_hash": "ab" * 32,
    }
    # Its successor still links to the original hash, not the forged one.
    assert res["breaks"][1] == {
        "seq": 6,
        "event_id": rows[5].event_id,
        "type": "chain_break",
        "expected_hash": forged.hash,
        "actual_hash": original.hash,
    }
    assert len(res["breaks"]) == 2


@pytest.mark.parametrize(
    "changes",
    [{"seq": 99}, {"id": "other"}, {"workspace_id": "other"}],
    ids=["seq", "id", "workspace_id"],
)
def test_body_disagreeing_with_its_row_is_hash_mismatch(changes: dict[str, Any]) -> None:
    rows = _chain()
    r = rows[-1]
    sealed = _reseal(r, **changes)  # body and hash agree with each other...
    # ...but the row's index columns still say what they said.
    rows[-1] = StoredEvent(r.seq, r.event_id, r.prev_hash, sealed.hash, sealed.body)
    res = _verify(rows)
    assert res["breaks"] == [
        {
            "seq": r.seq,
            "event_id": r.event_id,
            "type": "hash_mismatch",
            "expected_hash": sealed.hash,
            "actual_hash": sealed.hash,
        }
    ]


@pytest.mark.parametrize("body", [b"[]", b"1", b"null", b'"x"', b"not json", b"\xff"])
def test_non_object_body_is_reported_not_raised(body: bytes) -> None:
    rows = _chain(3)
    r = rows[-1]
    rows[-1] = StoredEvent(r.seq, r.event_id, r.prev_hash, event_hash(body), body)
    res = _verify(rows)
    assert [(b["seq"], b["type"]) for b in res["breaks"]] == [(3, "hash_mismatch")]


def test_start_mid_chain() -> None:
    rows = _chain()
    res = _verify(rows[4:], first=5, prev=rows[3].hash)
    assert res["valid"] is True
    assert (res["first_seq"], res["last_seq"], res["events_checked"]) == (5, 8, 4)
    assert res["head_hash"] == rows[-1].hash


def test_start_mid_chain_with_wrong_prev_hash() -> None:
    rows = _chain()
    res = _verify(rows[4:], first=5, prev=rows[2].hash)
    assert res["breaks"] == [
        {
            "seq": 5,
            "event_id": rows[4].event_id,
            "type": "chain_break",
            "expected_hash": rows[2].hash,
            "actual_hash": rows[3].hash,
        }
    ]


def test_start_mid_chain_without_prev_hash_trusts_the_first_link() -> None:
    rows = _chain()
    assert _verify(rows[4:], first=5, prev=None)["valid"] is True


def test_start_mid_chain_with_missing_first_row() -> None:
    rows = _chain()
    res = _verify(rows[5:], first=5, prev=rows[3].hash)
    assert [(b["seq"], b["type"]) for b in res["breaks"]] == [(5, "gap")]


def test_max_breaks_truncates_and_invalidates() -> None:
    rows = _chain()
    for i in (1, 3, 5, 7):
        r = rows[i]
        rows[i] = StoredEvent(r.seq, r.event_id, r.prev_hash, r.hash, r.body + b" ")
    res = _verify(rows, max_breaks=2)
    assert res["valid"] is False
    assert res["breaks_truncated"] is True
    assert [b["seq"] for b in res["breaks"]] == [2, 4]
    assert res["events_checked"] == 8 and res["last_seq"] == 8

    res = _verify(rows, max_breaks=4)
    assert res["breaks_truncated"] is False and len(res["breaks"]) == 4

    res = _verify(rows, max_breaks=0)
    assert res["valid"] is False and res["breaks"] == [] and res["breaks_truncated"] is True


# ---------------------------------------------------------------------------
# Segments


def test_segment_roundtrip() -> None:
    head = Head()
    lines = []
    for i, text in enumerate(["plain", "new\nline", "sep\u2028\u2029", "é漢😀", "\r\n\t"]):
        ev: dict[str, Any] = {"id": str(i), "received_at": "t", "actor_id": text, "action": "a"}
        body, digest = link(head, WS, ev)
        assert b"\n" not in body
        lines.append((digest, body))
    value = encode_segment(lines)
    assert list(iter_segment(value)) == lines
    assert value.count(b"\n") == len(lines) - 1
    assert list(iter_segment(value + b"\n")) == lines
    for h, body in iter_segment(value):
        assert h == event_hash(body)
        assert orjson.loads(body)["prev_hash"] in {ZERO_HASH} | {d for d, _ in lines}


def test_segment_line_format() -> None:
    body = canonical({"a": 1})
    h = event_hash(body)
    assert encode_segment([(h, body)]) == h.encode() + b" " + body
    assert list(iter_segment(b"")) == []


def test_deepcopy_does_not_change_bytes() -> None:
    """canonical depends on values only, not on dict insertion order."""
    rng = random.Random(7)
    for _ in range(200):
        ev = _event(rng)
        shuffled = dict(reversed(list(copy.deepcopy(ev).items())))
        assert canonical(shuffled) == canonical(ev)


def test_hashed_prev_hash_that_does_not_link_is_chain_break() -> None:
    rows = _chain()
    r = rows[-1]
    sealed = _reseal(r, prev_hash="cd" * 32)  # the body says another predecessor
    rows[-1] = StoredEvent(r.seq, r.event_id, r.prev_hash, sealed.hash, sealed.body)
    res = _verify(rows)
    assert res["breaks"] == [
        {
            "seq": r.seq,
            "event_id": r.event_id,
            "type": "chain_break",
            "expected_hash": rows[-2].hash,
            "actual_hash": "cd" * 32,
        }
    ]


def test_prev_hash_column_alone_altered_is_chain_break() -> None:
    rows = _chain()
    r = rows[3]
    rows[3] = StoredEvent(r.seq, r.event_id, "ef" * 32, r.hash, r.body)
    res = _verify(rows)
    assert res["breaks"] == [
        {
            "seq": r.seq,
            "event_id": r.event_id,
            "type": "chain_break",
            "expected_hash": rows[2].hash,
            "actual_hash": "ef" * 32,
        }
    ]


def test_nested_seq_and_prev_hash_keys_take_the_parsing_path() -> None:
    head = Head()
    rows = []
    for i in range(1, 5):
        ev: dict[str, Any] = {
            "id": f"019bc119-02{i:02x}-7000-8000-0000000000{i:02x}",
            "received_at": "2026-01-15T10:00:00.000000Z",
            "actor_id": "u",
            "action": "doc.view",
            "metadata": {"seq": 99, "prev_hash": "f" * 64, "workspace_id": "x"},
        }
        body, digest = link(head, WS, ev)
        rows.append(StoredEvent(ev["seq"], ev["id"], ev["prev_hash"], digest, body))
    assert _verify(rows)["valid"] is True
    forged = _reseal(rows[2], prev_hash="f" * 64)  # the nested value must not pass for the real one
    rows[2] = forged
    assert [(b["seq"], b["type"]) for b in _verify(rows)["breaks"]] == [
        (3, "chain_break"),
        (4, "chain_break"),
    ]


def _walk_split(rows: list[StoredEvent], start: int, end: int, mid: int) -> dict[str, Any]:
    """Verify [start, end] as two halves joined the way the API joins them."""

    def raw(part: list[StoredEvent]) -> list[tuple[int, bytes, bytes, bytes]]:
        return [(r.seq, bytes.fromhex(r.prev_hash), bytes.fromhex(r.hash), r.body) for r in part]

    by_seq = {r.seq: r for r in rows}
    before = by_seq.get(mid - 1)
    first = Verifier(WS, expected_first_seq=start, expected_prev_hash=ZERO_HASH)
    first.feed_raw(raw([r for r in rows if start <= r.seq < mid]))
    first.close(mid - 1)
    second = Verifier(
        WS, expected_first_seq=mid, expected_prev_hash=before.hash if before else None
    )
    second.feed_raw(raw([r for r in rows if mid <= r.seq <= end]))
    first.result.extend(second.result)
    return first.result.as_dict()


@pytest.mark.parametrize("damage", ["none", "delete", "tamper", "relink"])
def test_two_halves_report_exactly_what_one_walk_reports(damage: str) -> None:
    for at in range(1, 9):
        rows = _chain(8)
        if damage == "delete":
            del rows[at - 1]
        elif damage == "tamper":
            r = rows[at - 1]
            rows[at - 1] = StoredEvent(r.seq, r.event_id, r.prev_hash, r.hash, r.body + b" ")
        elif damage == "relink":
            r = rows[at - 1]
            rows[at - 1] = StoredEvent(r.seq, r.event_id, "ab" * 32, r.hash, r.body)
        one = Verifier(WS, expected_first_seq=1, expected_prev_hash=ZERO_HASH)
        one.feed(rows)
        for mid in range(2, 9):
            assert _walk_split(rows, 1, 8, mid) == one.result.as_dict(), (damage, at, mid)
