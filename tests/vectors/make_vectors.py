"""Write ``docs/hash-chain-vectors.json``: a small chain built by our own code.

Deterministic: fixed workspace id, event ids and ``received_at``; nothing
random, nothing read from the clock. Every event goes through the same path
as in production: ``validate_event`` (what the gateway does), then the
gateway's ``id``/``received_at``, then ``link`` (what the chainer does).

Run from the repository root::

    .venv/bin/python tests/vectors/make_vectors.py

``tests/test_hash_chain_vectors.py`` checks that the file still matches what
the code produces, so regenerate (and review the diff) when the contract
changes on purpose.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

from libs.common.chain import ZERO_HASH, Head, link
from libs.common.event import validate_event
from libs.common.timeutil import format_epoch_us

OUT = Path(__file__).resolve().parents[2] / "docs" / "hash-chain-vectors.json"

WORKSPACE_ID = "3f1c2b7e-8d4a-4c1e-9b2f-6a5d4e3c2b1a"
#: 2026-01-15T10:00:00Z in milliseconds since the epoch.
BASE_MS = 1_768_471_200_000


def fixed_uuid7(n: int) -> str:
    """A valid UUIDv7 at ``BASE_MS + n`` ms whose random bits are just ``n``."""
    value = (BASE_MS + n) << 80 | 0x7 << 76 | 0b10 << 62 | n
    return str(uuid.UUID(int=value))


def fixed_received_at(n: int) -> str:
    return format_epoch_us((BASE_MS + n) * 1000 + 123)


#: (description, the producer event exactly as sent) in chain order.
CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "minimal event: only the two required fields",
        {"actor_id": "user_1", "action": "user.login"},
    ),
    (
        "every producer field present; occurred_at already normalised",
        {
            "actor_id": "user_42",
            "actor_name": "Ada Lovelace",
            "actor_type": "user",
            "action": "document.delete",
            "action_category": "data",
            "resource": "document",
            "resource_id": "doc_981",
            "resource_name": "Q3 plan.pdf",
            "targets": [{"type": "folder", "id": "fld_7", "name": "Finance"}],
            "metadata": {"reason": "retention", "count": 3},
            "occurred_at": "2026-01-15T09:59:58.000001Z",
            "session_id": "sess_abc",
            "tenant_id": "tenant_9",
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "idempotency_key": "doc_981-delete-1",
            "version": 2,
        },
    ),
    (
        "targets with metadata; a target's null field and a top-level null are absent",
        {
            "actor_id": "svc_billing",
            "actor_type": "service",
            "action": "invoice.void",
            "resource_name": None,
            "targets": [
                {"type": "invoice", "id": "inv_1", "metadata": {"amount_cents": 1999}},
                {"type": "customer", "id": "cus_2", "name": None, "metadata": {"tier": "gold"}},
            ],
        },
    ),
    (
        "non-ASCII text in values: é, 漢字, emoji (written as UTF-8, never escaped)",
        {
            "actor_id": "usr_é",
            "actor_name": "Zoë 漢字 😀",
            "action": "profile.update",
            "metadata": {"city": "Zürich", "greeting": "こんにちは", "face": "😀"},
        },
    ),
    (
        "control characters: U+0001 and U+001F as \\u00xx, \\n \\t \\b \\f \\r short "
        "escapes, DEL and U+2028/U+2029 raw, quote and backslash escaped, slash raw",
        {
            "actor_id": "user_1",
            "action": "note.create",
            "resource_name": "line1\nline2\ttabbed",
            "metadata": {
                "ctl": "\u0001\u001f\b\f\r",
                "del": "\u007f",
                "seps": "\u2028\u2029",
                "quote": 'say "hi" \\ bye / now',
            },
        },
    ),
    (
        "nested metadata with arrays, booleans, null (kept inside metadata) and empty containers",
        {
            "actor_id": "user_1",
            "action": "settings.change",
            "metadata": {
                "changes": [
                    {"key": "mfa", "from": False, "to": True},
                    {"key": "nickname", "from": None, "to": "ada"},
                ],
                "flags": [True, False, None, 0, "x"],
                "empty_obj": {},
                "empty_arr": [],
                "deep": {"a": {"b": {"c": [1, [2, [3]]]}}},
            },
        },
    ),
    (
        "floats, written as ECMAScript does: 0.1, 1.0 -> 1, -0.0 -> 0, 1e-7, "
        "123.456e5 -> 12345600, 2^53-1 as a float -> 9007199254740991",
        {
            "actor_id": "user_1",
            "action": "metric.record",
            "metadata": {
                "tenth": 0.1,
                "one": 1.0,
                "neg_zero": -0.0,
                "tiny": 1e-7,
                "sci": 123.456e5,
                "max_safe_float": 9007199254740991.0,
                "neg": -2.5,
                "third": 1 / 3,
            },
        },
    ),
    (
        "the largest integers accepted: ±(2^53-1)",
        {
            "actor_id": "user_1",
            "action": "counter.set",
            "metadata": {"max": 9007199254740991, "min": -9007199254740991, "zero": 0},
        },
    ),
    (
        "keys sorted by UTF-16 code units: '😀k' (U+1F600 = D83D DE00) sorts before "
        "'\uff41' (U+FF41), the opposite of code-point (and UTF-8 byte) order",
        {
            "actor_id": "user_1",
            "action": "sort.check",
            "metadata": {
                "z": 1,
                "\uff41": 2,
                "😀k": 3,
                "a": 4,
                "B": 5,
                "é": 6,
                "nested": {"\uff41": "fullwidth a", "😀": "emoji"},
            },
        },
    ),
    (
        "occurred_at with a +05:30 offset and 9 fractional digits: converted to UTC, "
        "truncated (not rounded) to microseconds",
        {
            "actor_id": "user_1",
            "action": "clock.check",
            "occurred_at": "2026-01-15T15:29:59.999999999+05:30",
        },
    ),
    (
        "IPv6 address normalised: lower case, leading zeros dropped, longest zero run compressed",
        {
            "actor_id": "user_1",
            "action": "user.login",
            "ip_address": "2001:0DB8:0000:0000:0000:FF00:0042:8329",
            "occurred_at": "2026-01-15T04:00:00-06:00",
        },
    ),
    (
        "an idempotency_key (hashed like any field) and a version",
        {
            "actor_id": "user_1",
            "action": "payment.refund",
            "idempotency_key": "refund-ord_42-attempt-1",
            "version": 1,
        },
    ),
]

#: Producer events that ingest MUST refuse, with the field named in the error.
REJECTED: list[tuple[str, dict[str, Any], str]] = [
    (
        "an integer beyond 2^53-1",
        {"actor_id": "u", "action": "a", "metadata": {"n": 9007199254740992}},
        "metadata",
    ),
    (
        "a float beyond 2^53-1",
        {"actor_id": "u", "action": "a", "metadata": {"n": 1e16}},
        "metadata",
    ),
    (
        "NUL in a string",
        {"actor_id": "u\u0000", "action": "a"},
        "actor_id",
    ),
    (
        "NUL in a metadata key",
        {"actor_id": "u", "action": "a", "metadata": {"k\u0000": 1}},
        "metadata",
    ),
    (
        "a system field sent by the producer",
        {"actor_id": "u", "action": "a", "prev_hash": ZERO_HASH},
        "prev_hash",
    ),
    (
        "enrichment fields are not producer fields either",
        {"actor_id": "u", "action": "a", "ip_country": "FR"},
        "ip_country",
    ),
    (
        "occurred_at without an offset",
        {"actor_id": "u", "action": "a", "occurred_at": "2026-01-15T10:00:00"},
        "occurred_at",
    ),
]


def build() -> dict[str, Any]:
    head = Head()
    vectors = []
    for n, (description, raw) in enumerate(CASES, start=1):
        event, violations = validate_event(copy.deepcopy(raw))
        if event is None:
            raise SystemExit(f"vector {n} ({description}) is invalid: {violations}")
        event["id"] = fixed_uuid7(n)
        event["received_at"] = fixed_received_at(n)
        prev_hash = head.hash
        body, digest = link(head, WORKSPACE_ID, event)
        vectors.append(
            {
                "description": description,
                "seq": event["seq"],
                "prev_hash": prev_hash,
                "input": raw,
                "event": event,
                "canonical": body.decode("utf-8"),
                "hash": digest,
            }
        )
    rejected = []
    for description, raw, field in REJECTED:
        event, violations = validate_event(copy.deepcopy(raw))
        if event is not None or not any(v["field"] == field for v in violations):
            raise SystemExit(f"rejected vector ({description}) was not refused on {field}")
        rejected.append({"description": description, "input": raw, "field": field})
    return {
        "description": (
            "Chainlog hash-chain test vectors (see docs/hash-chain.md). "
            "hash = lowercase hex SHA-256 of the UTF-8 bytes of canonical; "
            "canonical = RFC 8785 (JCS) of event; vectors are in chain order, seq 1..n, "
            "each prev_hash being the previous vector's hash (64 zeros for seq 1). "
            "input is the producer event as sent; event is the hashed object after "
            "validation, with the system fields added. "
            "Generated by tests/vectors/make_vectors.py; do not edit by hand."
        ),
        "workspace_id": WORKSPACE_ID,
        "hash_algorithm": "sha256",
        "canonicalization": "RFC 8785",
        "head": {"seq": head.seq, "hash": head.hash},
        "vectors": vectors,
        "rejected": rejected,
    }


def render(doc: dict[str, Any]) -> str:
    # ASCII-only file: no editor or tool can re-normalise the Unicode in it.
    return json.dumps(doc, ensure_ascii=True, indent=2) + "\n"


def main() -> None:
    OUT.write_text(render(build()), encoding="ascii")
    print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")


if __name__ == "__main__":
    main()
