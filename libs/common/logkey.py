"""The log's signing key, and the receipts the gateway signs with it.

One Ed25519 key per deployment signs every workspace's checkpoints
(``services/exporter/transparency.py``) and ingest receipts. It is made on
first use (by whichever process gets there first) and stored sealed with
the secret box (``log_keys``); its public half is served at
``GET /api/v1/log-key``.

A receipt is a signed note (the checkpoints' format) saying the log took
these events at this time and promises to include them in a checkpoint by
``include_by``::

    chainlog.local/<workspace id>
    receipt
    received_at 2026-11-28T03:40:00.123456Z
    include_by 2026-11-28T03:42:00Z
    event 01a2...
    event 01a2...

Kept by the producer, it is checked later with an inclusion proof against
a checkpoint whose ``timestamp`` is at or after ``include_by``: an event
with a receipt and no inclusion by then is evidence against the operator.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.common import checkpoint as notes
from libs.common.secretbox import SecretBox

KEY_CONTEXT = "log_keys:1"


async def load(pool: asyncpg.Pool, box: SecretBox, name: str) -> tuple[str, Ed25519PrivateKey]:
    """The log's signing key: the stored one, or a new one stored now (first start)."""
    row = await pool.fetchrow("SELECT name, private_enc FROM log_keys WHERE id = 1")
    if row is None:
        signer, _ = notes.generate_key(name)
        _, private = notes.parse_signer_key(signer)
        # Two processes starting at once: one insert wins, both read it back.
        await pool.execute(
            "INSERT INTO log_keys (id, name, public_key, private_enc) VALUES (1, $1, $2, $3)"
            " ON CONFLICT (id) DO NOTHING",
            name,
            private.public_key().public_bytes_raw(),
            box.encrypt(signer, context=KEY_CONTEXT),
        )
        row = await pool.fetchrow("SELECT name, private_enc FROM log_keys WHERE id = 1")
    return notes.parse_signer_key(box.decrypt(row["private_enc"], context=KEY_CONTEXT))


@dataclass(frozen=True, slots=True)
class Receipt:
    origin: str
    received_at: str
    include_by: str
    event_ids: tuple[str, ...]


def receipt_body(r: Receipt) -> str:
    lines = [r.origin, "receipt", f"received_at {r.received_at}", f"include_by {r.include_by}"]
    lines += [f"event {e}" for e in r.event_ids]
    return "".join(f"{line}\n" for line in lines)


def sign_receipt(r: Receipt, name: str, private: Ed25519PrivateKey) -> str:
    return notes.sign_note(receipt_body(r), name, private)


def open_receipt(note: str, verifier: str) -> Receipt:
    """Verify a receipt's signature and read it; raises checkpoint.NoteError."""
    lines = notes.open_note(note, verifier)[:-1].split("\n")
    if len(lines) < 5 or lines[1] != "receipt":
        raise notes.NoteError("not a receipt")
    fields = [line.split(" ", 1) for line in lines[2:]]
    if fields[0][0] != "received_at" or fields[1][0] != "include_by":
        raise notes.NoteError("a receipt names received_at and include_by")
    if any(f[0] != "event" or len(f) != 2 for f in fields[2:]):
        raise notes.NoteError("a receipt lists its events")
    return Receipt(lines[0], fields[0][1], fields[1][1], tuple(f[1] for f in fields[2:]))


def receipt_for(origin: str, received_at: str, include_by: str, ids: Sequence[str]) -> Receipt:
    return Receipt(origin, received_at, include_by, tuple(ids))


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """What an erasure destroyed, signed by the log (docs/privacy.md)::

    chainlog.local/<workspace id>
    erasure
    subject "<subject, as a JSON string>"
    erased_at 2026-11-28T03:40:00.123456Z
    events 42
    enrichment kept
    admin_event 01a2...
    key 01a2...
    """

    origin: str
    subject: str
    erased_at: str
    events: int
    enrichment: str
    admin_event: str
    keys: tuple[str, ...]


def erasure_body(r: ErasureReceipt) -> str:
    lines = [
        r.origin,
        "erasure",
        f"subject {json.dumps(r.subject)}",
        f"erased_at {r.erased_at}",
        f"events {r.events}",
        f"enrichment {r.enrichment}",
        f"admin_event {r.admin_event}",
    ]
    lines += [f"key {k}" for k in r.keys]
    return "".join(f"{line}\n" for line in lines)


def open_erasure_receipt(note: str, verifier: str) -> ErasureReceipt:
    """Verify an erasure receipt's signature and read it; raises checkpoint.NoteError."""
    lines = notes.open_note(note, verifier)[:-1].split("\n")
    if len(lines) < 7 or lines[1] != "erasure":
        raise notes.NoteError("not an erasure receipt")
    fields = [line.split(" ", 1) for line in lines[2:]]
    names = [f[0] for f in fields[:5]]
    if names != ["subject", "erased_at", "events", "enrichment", "admin_event"] or any(
        f[0] != "key" or len(f) != 2 for f in fields[5:]
    ):
        raise notes.NoteError("an erasure receipt names its subject, time, events and keys")
    try:
        subject = json.loads(fields[0][1])
        events = int(fields[2][1])
    except ValueError:
        raise notes.NoteError("an erasure receipt's subject or count is malformed") from None
    return ErasureReceipt(
        lines[0],
        str(subject),
        fields[1][1],
        events,
        fields[3][1],
        fields[4][1],
        tuple(f[1] for f in fields[5:]),
    )
