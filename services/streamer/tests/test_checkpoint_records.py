"""A signed checkpoint, sent down a log stream, is an event every format can carry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.common import checkpoint as notes
from libs.common.checkpoint import CHECKPOINT_ACTION
from libs.common.event import validate_event
from services.streamer.destinations.s3 import S3
from services.streamer.formats import cef, leef, ocsf, otlp, udm

WS = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def record() -> tuple[dict[str, Any], str]:
    origin = notes.workspace_origin(WS)
    root = bytes(range(32))
    note = notes.sign_checkpoint(
        notes.Checkpoint(origin, 1234, root, ("timestamp 1790000000",)),
        origin,
        Ed25519PrivateKey.generate(),
    )
    row = {
        "id": uuid.UUID("0193a1b2-c3d4-7e5f-8a9b-000000000042"),
        "size": 1234,
        "root": root,
        "note": note,
        "created_at": datetime(2026, 11, 28, 5, 0, tzinfo=UTC),
    }
    return notes.as_event(WS, str(row["id"]), notes.served_row(row)), note


def test_the_record_holds_the_signed_note_and_the_tree() -> None:
    event, note = record()
    assert event["action"] == CHECKPOINT_ACTION
    assert event["seq"] == 1234
    assert event["hash"] == bytes(range(32)).hex()
    assert event["metadata"]["checkpoint"] == note
    assert event["metadata"]["size"] == 1234
    assert event["metadata"]["origin"] == f"chainlog.local/{WS}"
    assert event["received_at"] == "2026-11-28T05:00:00.000000Z"


def test_its_producer_fields_are_valid_event_fields() -> None:
    """What a producer could send is valid, so formats meet nothing new."""
    event, _ = record()
    producer = {
        k: v
        for k, v in event.items()
        if k not in ("id", "workspace_id", "seq", "received_at", "prev_hash", "hash", "ip_country")
        and k != "ip_city"
    }
    normalised, violations = validate_event(producer)
    assert violations == [], violations
    assert normalised is not None


def test_every_format_renders_it_with_the_note() -> None:
    event, note = record()
    first_line = note.split("\n", 1)[0]
    assert CHECKPOINT_ACTION in cef.line(event)
    assert CHECKPOINT_ACTION in leef.line(event)
    assert ocsf.record(event)["metadata"]["uid"] == event["id"]
    assert first_line in str(ocsf.record(event))
    assert first_line in str(udm.event(event))
    assert first_line in str(otlp.log_record(event))


def test_s3_keeps_checkpoints_beside_the_events_never_over_them() -> None:
    event, _ = record()
    config = {"prefix": "audit/"}
    key = S3().key(config, [event])
    assert key == f"audit/{WS}/checkpoints/2026/11/28/{1234:020d}-{event['id']}.jsonl.gz"
    same_seq = {**event, "action": "user.login", "id": "x"}
    assert S3().key(config, [same_seq]) != key
