"""The hash chain: canonical encoding, hashing, linking and verification.

This module imports nothing from the rest of Chainlog but the standard
library, ``orjson`` and ``rfc8785``: a verifier needs the bytes and this
page, nothing from the server (``docs/hash-chain.md`` is the contract).

``hash_n = SHA-256(JCS(event_n))`` where ``event_n`` holds the system fields
(``workspace_id``, ``seq``, ``id``, ``received_at``, ``prev_hash``) and every
producer-supplied field that is present. Absent fields are omitted, never
``null``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import rfc8785

ZERO_HASH = "0" * 64

#: Fields the system assigns; they are hashed with the producer's fields.
SYSTEM_HASHED_FIELDS = ("workspace_id", "seq", "id", "received_at", "prev_hash")

_SORT = orjson.OPT_SORT_KEYS


_SAFE = 2**53 - 1


def _needs_reference_encoder(value: Any) -> bool:
    """True where orjson's sorted output may differ from RFC 8785.

    orjson with sorted keys is byte-identical to RFC 8785 for strings,
    integers within ±2^53, booleans, null and nesting. It differs for floats
    (number formatting), for keys outside the Basic Multilingual Plane
    (RFC 8785 sorts by UTF-16 code units), and for integers beyond ±2^53,
    which RFC 8785 refuses: those take the reference encoder, which raises
    for the last (ingest refuses them before; this keeps a hand-made record
    from being hashed in a form no verifier can reproduce).
    """
    if isinstance(value, dict):
        for k, v in value.items():
            if not k.isascii() and any(ord(c) > 0xFFFF for c in k):
                return True
            if isinstance(v, (dict, list, float, int)) and _needs_reference_encoder(v):
                return True
        return False
    if isinstance(value, list):
        return any(
            isinstance(v, (dict, list, float, int)) and _needs_reference_encoder(v) for v in value
        )
    if isinstance(value, int):
        return not -_SAFE <= value <= _SAFE
    return isinstance(value, float)


def canonical(event: dict[str, Any]) -> bytes:
    """RFC 8785 (JSON Canonicalization Scheme) bytes of ``event``."""
    if _needs_reference_encoder(event):
        return bytes(rfc8785.dumps(event))
    return orjson.dumps(event, option=_SORT)


def event_hash(canonical_bytes: bytes) -> str:
    return hashlib.sha256(canonical_bytes).hexdigest()


@dataclass(slots=True)
class Head:
    """A workspace's chain head: the last assigned ``seq`` and its hash."""

    seq: int = 0
    hash: str = ZERO_HASH


def link(head: Head, workspace_id: str, event: dict[str, Any]) -> tuple[bytes, str]:
    """Append ``event`` to the chain at ``head``; returns (canonical, hash).

    ``event`` holds ``id``, ``received_at`` and the producer's fields; this
    adds ``workspace_id``, ``seq`` and ``prev_hash`` to it and moves
    ``head`` forward.
    """
    event["workspace_id"] = workspace_id
    event["seq"] = head.seq + 1
    event["prev_hash"] = head.hash
    body = canonical(event)
    digest = event_hash(body)
    head.seq += 1
    head.hash = digest
    return body, digest


BreakType = Literal["hash_mismatch", "chain_break", "gap"]


@dataclass(slots=True, frozen=True)
class Break:
    seq: int
    event_id: str | None
    type: BreakType
    expected_hash: str | None
    actual_hash: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "type": self.type,
            "expected_hash": self.expected_hash,
            "actual_hash": self.actual_hash,
        }


@dataclass(slots=True, frozen=True)
class StoredEvent:
    """One row as stored: the index columns next to the hashed body."""

    seq: int
    event_id: str
    prev_hash: str
    hash: str
    body: bytes


@dataclass(slots=True)
class Verification:
    workspace_id: str
    events_checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    breaks: list[Break] = field(default_factory=list)
    max_breaks: int = 100
    truncated: bool = False

    @property
    def valid(self) -> bool:
        return not self.breaks and not self.truncated

    def add(self, brk: Break) -> None:
        if len(self.breaks) < self.max_breaks:
            self.breaks.append(brk)
        else:
            self.truncated = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "events_checked": self.events_checked,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head_hash": self.head_hash,
            "breaks": [b.as_dict() for b in self.breaks],
            "breaks_truncated": self.truncated,
        }


class Verifier:
    """Checks a run of stored events, in ascending ``seq``, chunk by chunk.

    For each event it MUST check, in this order, and report the first
    failure only:

    1. SHA-256 of the body equals the stored hash, else ``hash_mismatch``;
    2. the body names this workspace, this ``seq`` and this id, else
       ``hash_mismatch`` (what is served would not be what was hashed);
    3. ``seq`` follows the previous one, else ``gap``, named by the first
       missing ``seq`` (a link over a gap cannot be checked);
    4. the ``prev_hash`` in the body and in the row both equal the previous
       event's hash, else ``chain_break``.
    """

    def __init__(
        self,
        workspace_id: str,
        *,
        expected_first_seq: int,
        expected_prev_hash: str | None,
        max_breaks: int = 100,
    ) -> None:
        self.result = Verification(workspace_id, max_breaks=max_breaks)
        self._next_seq = expected_first_seq
        self._prev_hash = expected_prev_hash

    def _check(self, row: StoredEvent, actual: str) -> Break | None:
        if actual != row.hash:
            return Break(row.seq, row.event_id, "hash_mismatch", actual, row.hash)
        try:
            doc = orjson.loads(row.body)
        except orjson.JSONDecodeError:
            doc = None
        if not (
            isinstance(doc, dict)  # a JSON array/scalar body must not crash
            and doc.get("seq") == row.seq
            and doc.get("id") == row.event_id
            and doc.get("workspace_id") == self.result.workspace_id
        ):
            return Break(row.seq, row.event_id, "hash_mismatch", actual, row.hash)
        if row.seq != self._next_seq:
            return Break(self._next_seq, None, "gap", self._prev_hash, None)
        expected = self._prev_hash
        if expected is not None:
            body_prev = doc.get("prev_hash")
            if row.prev_hash != expected or body_prev != expected:
                wrong = row.prev_hash if row.prev_hash != expected else body_prev
                return Break(row.seq, row.event_id, "chain_break", expected, wrong)
        return None

    def feed(self, rows: Iterable[StoredEvent]) -> None:
        res = self.result
        sha256 = hashlib.sha256
        for row in rows:
            if res.first_seq is None:
                res.first_seq = row.seq
            res.events_checked += 1
            brk = self._check(row, sha256(row.body).hexdigest())
            if brk is not None:
                res.add(brk)
            self._next_seq = row.seq + 1
            self._prev_hash = row.hash
            res.last_seq = row.seq
            res.head_hash = row.hash


def iter_segment(value: bytes) -> Iterator[tuple[str, bytes]]:
    """Lines of a chained record: ``<64 hex hash> <canonical event>``."""
    for line in value.split(b"\n"):
        if line:
            yield line[:64].decode("ascii"), line[65:]


def encode_segment(lines: Iterable[tuple[str, bytes]]) -> bytes:
    return b"\n".join(h.encode("ascii") + b" " + body for h, body in lines)
