"""Sealed personal fields: the vectors of docs/privacy-vectors.json, round trips, binding."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import rfc8785
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from libs.common import logkey, sealing
from libs.common.chain import canonical
from libs.common.checkpoint import generate_key, parse_signer_key, sign_note
from libs.common.exportformat import event_from_line

VECTORS = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "privacy-vectors.json").read_text()
)
KEY = bytes.fromhex(VECTORS["subject_key_hex"])
KID = VECTORS["kid"]
WS = VECTORS["workspace_id"]


@pytest.mark.parametrize("v", VECTORS["fields"], ids=lambda v: v["path"])
def test_vectors_seal_and_open_with_plain_aes_gcm(v: dict[str, Any]) -> None:
    # sealing.seal gives the published string ...
    got = sealing.seal(KEY, KID, WS, v["path"], v["value"], nonce=bytes.fromhex(v["nonce_hex"]))
    assert got == v["sealed"]
    # ... and any AES-GCM library opens it with the documented framing alone.
    prefix, rest = v["sealed"].split(":", 3)[:2], v["sealed"].split(":", 3)[3]
    assert prefix == ["enc", "v1"]
    blob = base64.urlsafe_b64decode(rest + "=" * (-len(rest) % 4))
    aad = f"enc:v1:{KID}|{WS}|{v['path']}".encode()
    plain = AESGCM(KEY).decrypt(blob[:12], blob[12:], aad).decode()
    expected = v["value"] if isinstance(v["value"], str) else orjson.dumps(v["value"]).decode()
    assert plain == expected


def test_vector_event_hashes_the_sealed_text() -> None:
    ev = VECTORS["event"]
    assert rfc8785.dumps(ev["hashed"]).decode() == ev["canonical"]
    assert canonical(ev["hashed"]).decode() == ev["canonical"]
    assert hashlib.sha256(ev["canonical"].encode()).hexdigest() == ev["hash"]
    assert "Ann Lee" not in ev["canonical"] and "203.0.113.7" not in ev["canonical"]


def _event() -> dict[str, Any]:
    return {
        "actor_id": "user_1",
        "actor_name": "Zoë Example",
        "ip_address": "198.51.100.4",
        "user_agent": "curl/8",
        "metadata": {"email": "z@example.com", "plan": "pro", "n": 3},
    }


def test_seal_event_then_personal_round_trip() -> None:
    privacy = sealing.Privacy(metadata_keys=("email", "n"))
    event = _event()
    sealing.seal_event(event, privacy, WS, KID, KEY)
    assert event["actor_id"] == "user_1" and event["metadata"]["plan"] == "pro"
    text = orjson.dumps(event).decode()
    for plain in ("Zoë", "198.51.100.4", "curl/8", "z@example.com"):
        assert plain not in text
    shown = sealing.personal(event, WS, {KID: KEY})
    assert shown == {
        "actor_name": "Zoë Example",
        "ip_address": "198.51.100.4",
        "user_agent": "curl/8",
        "metadata.email": "z@example.com",
        "metadata.n": "3",
    }
    # erased: every sealed field reads [erased]; a kid the workspace does not know is left out
    erased = sealing.personal(event, WS, {KID: None})
    assert erased is not None and set(erased.values()) == {sealing.ERASED}
    assert sealing.personal(event, WS, {}) is None


def test_a_sealed_value_is_bound_to_its_field_workspace_and_key() -> None:
    sealed = sealing.seal(KEY, KID, WS, "actor_name", "Ann")
    parsed = sealing.parse(sealed)
    assert parsed is not None and parsed[0] == KID
    assert sealing.unseal(KEY, KID, WS, "actor_name", parsed[1]) == "Ann"
    for kid, ws, path, key in (
        (KID, WS, "user_agent", KEY),  # moved to another field
        (KID, "0192b5e4-0000-7000-8000-000000000002", "actor_name", KEY),  # another workspace
        (KID, WS, "actor_name", bytes(32)),  # another key
    ):
        with pytest.raises(sealing.SealError):
            sealing.unseal(key, kid, ws, path, parsed[1])
    # a moved value shows as unreadable, never as another field's plaintext
    event = {"actor_id": "u", "user_agent": sealed}
    assert sealing.personal(event, WS, {KID: KEY}) == {"user_agent": sealing.UNREADABLE}


@pytest.mark.parametrize(
    "value",
    ["enc:v1:", "enc:v1:not-a-uuid:AAAA", f"enc:v1:{KID}:", f"enc:v1:{KID}:!!", "Ann", 7, None],
)
def test_parse_refuses_what_is_not_a_sealed_value(value: object) -> None:
    assert sealing.parse(value) is None


def test_subject_of_uses_the_configured_metadata_key_or_falls_back() -> None:
    privacy = sealing.Privacy(subject="metadata.user_email")
    assert privacy.subject_of({"actor_id": "a", "metadata": {"user_email": "x@y"}}) == "x@y"
    assert privacy.subject_of({"actor_id": "a", "metadata": {}}) == "a"
    assert privacy.subject_of({"actor_id": "a"}) == "a"


def test_jsonl_personal_key_is_not_hashed() -> None:
    line = {"id": "x", "actor_name": "enc:v1:...", "hash": "h", "personal": {"actor_name": "A"}}
    event, claimed = event_from_line(line)
    assert "personal" not in event and claimed == "h"


def test_erasure_receipt_round_trip_and_tamper() -> None:
    signer, verifier = generate_key("chainlog.test")
    name, private = parse_signer_key(signer)
    r = logkey.ErasureReceipt(
        "chainlog.test/ws", 'Ann "the subject"', "2026-11-28T10:00:00Z", 12, "dropped", "e1", (KID,)
    )
    note = sign_note(logkey.erasure_body(r), name, private)
    assert logkey.open_erasure_receipt(note, verifier) == r
    with pytest.raises(ValueError):
        logkey.open_erasure_receipt(note.replace("events 12", "events 11"), verifier)
