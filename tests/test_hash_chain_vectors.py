"""The published test vectors (docs/hash-chain-vectors.json) hold, and still
match what our code produces. No Kafka, no PostgreSQL."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from libs.common.chain import ZERO_HASH, Head, canonical, link
from libs.common.event import FIELDS, validate_event

VECTORS_PATH = Path(__file__).resolve().parents[1] / "docs" / "hash-chain-vectors.json"
DOC: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = DOC["vectors"]
IDS = [f"seq{v['seq']}" for v in VECTORS]


def test_file_shape() -> None:
    assert len(VECTORS) >= 12
    assert [v["seq"] for v in VECTORS] == list(range(1, len(VECTORS) + 1))
    for v in VECTORS:
        assert set(v) == {"description", "input", "event", "canonical", "hash", "prev_hash", "seq"}
        assert v["event"]["workspace_id"] == DOC["workspace_id"]
    assert DOC["head"] == {"seq": VECTORS[-1]["seq"], "hash": VECTORS[-1]["hash"]}


def test_covers_every_producer_field() -> None:
    assert any(set(v["input"]) == set(FIELDS) for v in VECTORS)


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_canonical_is_rfc8785(v: dict[str, Any]) -> None:
    expected = v["canonical"].encode("utf-8")
    assert rfc8785.dumps(v["event"]) == expected
    assert canonical(copy.deepcopy(v["event"])) == expected


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_hash_is_sha256_of_canonical(v: dict[str, Any]) -> None:
    assert v["hash"] == hashlib.sha256(v["canonical"].encode("utf-8")).hexdigest()
    assert len(v["hash"]) == 64 and v["hash"] == v["hash"].lower()


def test_prev_hash_links() -> None:
    prev = ZERO_HASH
    for v in VECTORS:
        assert v["prev_hash"] == prev
        assert v["event"]["prev_hash"] == prev
        assert v["event"]["seq"] == v["seq"]
        prev = v["hash"]


def test_validation_and_link_reproduce_the_file() -> None:
    """Re-running ingest + chainer on each input gives the recorded bytes."""
    head = Head()
    for v in VECTORS:
        event, violations = validate_event(copy.deepcopy(v["input"]))
        assert violations == [], v["description"]
        assert event is not None
        event["id"] = v["event"]["id"]
        event["received_at"] = v["event"]["received_at"]
        body, digest = link(head, DOC["workspace_id"], event)
        assert event == v["event"], v["description"]
        assert body.decode("utf-8") == v["canonical"], v["description"]
        assert digest == v["hash"], v["description"]
    assert (head.seq, head.hash) == (DOC["head"]["seq"], DOC["head"]["hash"])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_external_verifier_roundtrip(v: dict[str, Any]) -> None:
    """What a verifier does with the API's JSON: parse, drop the unhashed
    fields the API adds, re-canonicalise, hash."""
    served = json.loads(v["canonical"])
    assert rfc8785.dumps(served) == v["canonical"].encode("utf-8")
    served.update({"hash": v["hash"], "ip_country": "FR", "ip_city": None})
    api_json = json.dumps(served)  # any JSON spelling of the same values
    parsed = json.loads(api_json)
    for name in ("hash", "ip_country", "ip_city"):
        parsed.pop(name)
    assert hashlib.sha256(rfc8785.dumps(parsed)).hexdigest() == v["hash"]


@pytest.mark.parametrize("r", DOC["rejected"], ids=lambda r: r["description"])
def test_rejected_inputs_are_refused(r: dict[str, Any]) -> None:
    event, violations = validate_event(copy.deepcopy(r["input"]))
    assert event is None
    assert r["field"] in {x["field"] for x in violations}


DOC_PATH = VECTORS_PATH.with_name("hash-chain.md")


def _served(v: dict[str, Any]) -> dict[str, Any]:
    """The event as GET /api/v1/events serves it: body fields + three unhashed ones."""
    served: dict[str, Any] = json.loads(v["canonical"])
    served.update({"hash": v["hash"], "ip_country": "NZ", "ip_city": None})
    reparsed: dict[str, Any] = json.loads(json.dumps(served))
    return reparsed


def _doc_snippet() -> dict[str, Any]:
    text = DOC_PATH.read_text(encoding="utf-8")
    after = text.split("<!-- verifier-snippet", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 15
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC_PATH), "exec"), namespace)
    return namespace


def test_documented_verifier_accepts_the_vectors() -> None:
    ns = _doc_snippet()
    served = [_served(v) for v in reversed(VECTORS)]  # the API pages newest first
    ns["verify"](served)
    for ev in served:
        assert ns["recompute"](ev) == ev["hash"]
    # A page from the middle, with the hash before it.
    ns["verify"](served[:5], prev_hash=VECTORS[-6]["hash"], prev_seq=VECTORS[-6]["seq"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda evs: evs[3]["metadata"].update(city="Zurich"), "hash_mismatch at seq 4"),
        (lambda evs: evs.pop(5), "gap at seq 6"),
        (lambda evs: evs[0].update(prev_hash="1" * 64), "hash_mismatch at seq 1"),
    ],
)
def test_documented_verifier_catches_tampering(change: Any, message: str) -> None:
    ns = _doc_snippet()
    served = [_served(v) for v in VECTORS]
    change(served)
    with pytest.raises(AssertionError, match=message):
        ns["verify"](served)


def test_documented_json_fallback() -> None:
    """The doc's stdlib-json recipe is exact when there is no fractional/exponent
    number and no key outside the BMP (and not in general: see seq 7 and 9)."""
    used = differs = 0
    for v in VECTORS:
        event = json.loads(v["canonical"])
        text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        floats = any(isinstance(x, float) for x in _leaves(event))
        non_bmp_key = any(ord(c) > 0xFFFF for k in _keys(event) for c in k)
        if not floats and not non_bmp_key:
            used += 1
            assert text == v["canonical"], v["description"]
        elif text != v["canonical"]:
            differs += 1
    assert used >= 8 and differs >= 2


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return list(value) + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []
