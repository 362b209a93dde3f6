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

    It runs for every event, so the common types are tested by identity.
    """
    if type(value) is dict:
        for k, v in value.items():
            if not k.isascii() and any(ord(c) > 0xFFFF for c in k):
                return True
            t = type(v)
            if t is str or v is None or t is bool:
                continue
            if _needs_reference_encoder(v):
                return True
        return False
    t = type(value)
    if t is list:
        return any(_needs_reference_encoder(v) for v in value)
    if t is int:
        return not -_SAFE <= value <= _SAFE
    # floats, and any subclass of the JSON types: the reference decides
    return not (t is str or value is None or t is bool)


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

    def extend(self, later: Verification) -> None:
        """Append the result of the range that follows this one."""
        self.events_checked += later.events_checked
        if self.first_seq is None:
            self.first_seq = later.first_seq
        if later.last_seq is not None:
            self.last_seq, self.head_hash = later.last_seq, later.head_hash
        for brk in later.breaks:
            self.add(brk)
        self.truncated = self.truncated or later.truncated

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


#: A stored row in the verifier's fast form: (seq, prev_hash, hash, body),
#: hashes as raw 32 bytes. The event id is read from the body when needed.
RawRow = tuple[int, bytes, bytes, bytes]


class Verifier:
    """Checks a run of stored events, in ascending ``seq``, chunk by chunk.

    For each event it MUST check, in this order, and report the first
    failure only:

    1. SHA-256 of the body equals the stored hash, else ``hash_mismatch``;
    2. the body names this workspace and this ``seq`` (and this id, where
       the row's id is given), else ``hash_mismatch``: what is served would
       not be what was hashed;
    3. ``seq`` follows the previous one, else ``gap``, named by the first
       missing ``seq`` (a link over a gap cannot be checked);
    4. the ``prev_hash`` in the body and in the row both equal the previous
       event's hash, else ``chain_break``.

    The body is canonical JSON, so where each of ``"seq":``,
    ``"prev_hash":`` (and ``"id":``) occurs exactly once and the body ends
    with the workspace, step 2 and 4 are decided by exact substrings
    without parsing; any other body is parsed.
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
        self._prev: bytes | None = (
            bytes.fromhex(expected_prev_hash) if expected_prev_hash is not None else None
        )
        self._ws_tail = b',"workspace_id":' + orjson.dumps(workspace_id) + b"}"

    def _check(
        self, seq: int, event_id: str | None, prev_col: bytes, stored: bytes, body: bytes
    ) -> Break | None:
        actual = hashlib.sha256(body).digest()
        if actual != stored:
            return Break(seq, event_id or _id_of(body), "hash_mismatch", actual.hex(), stored.hex())
        expected = self._prev
        expected_hex = expected.hex() if expected is not None else None
        if (
            body.endswith(self._ws_tail)
            and body.count(b'"seq":') == 1
            and body.count(b'"prev_hash":') == 1
            and (event_id is None or body.count(b'"id":') == 1)
        ):
            consistent = b'"seq":%d,' % seq in body and (
                event_id is None or b'"id":"%s"' % event_id.encode() in body
            )
            body_prev: Any = (
                expected_hex
                if expected_hex is not None and b'"prev_hash":"%s"' % expected_hex.encode() in body
                else _field(body, "prev_hash")
            )
        else:
            doc = _parse(body)
            consistent = (
                doc is not None
                and doc.get("seq") == seq
                and (event_id is None or doc.get("id") == event_id)
                and doc.get("workspace_id") == self.result.workspace_id
            )
            body_prev = doc.get("prev_hash") if doc is not None else None
        if not consistent:
            return Break(seq, event_id or _id_of(body), "hash_mismatch", actual.hex(), stored.hex())
        if seq != self._next_seq:
            return Break(self._next_seq, None, "gap", expected_hex, None)
        if expected_hex is not None and (prev_col != expected or body_prev != expected_hex):
            wrong = prev_col.hex() if prev_col != expected else body_prev
            return Break(seq, event_id or _id_of(body), "chain_break", expected_hex, wrong)
        return None

    def _step(
        self, seq: int, event_id: str | None, prev_col: bytes, stored: bytes, body: bytes
    ) -> None:
        res = self.result
        if res.first_seq is None:
            res.first_seq = seq
        res.events_checked += 1
        brk = self._check(seq, event_id, prev_col, stored, body)
        if brk is not None:
            res.add(brk)
        self._next_seq = seq + 1
        self._prev = stored
        res.last_seq = seq

    def _end_chunk(self) -> None:
        if self._prev is not None and self.result.last_seq is not None:
            self.result.head_hash = self._prev.hex()

    def feed_raw(self, rows: Iterable[RawRow]) -> None:
        """The fast path: rows as ``(seq, prev_hash, hash, body)``, hashes raw."""
        step = self._step
        for seq, prev_col, stored, body in rows:
            step(seq, None, prev_col, stored, body)
        self._end_chunk()

    def feed(self, rows: Iterable[StoredEvent]) -> None:
        """Rows with hex hashes and the row's own event id (also checked)."""
        for row in rows:
            self._step(
                row.seq,
                row.event_id,
                bytes.fromhex(row.prev_hash),
                bytes.fromhex(row.hash),
                row.body,
            )
        self._end_chunk()

    def close(self, last_expected_seq: int) -> None:
        """End of a range that MUST reach ``last_expected_seq``: missing tail rows are a gap."""
        if self._next_seq <= last_expected_seq:
            expected = self._prev.hex() if self._prev is not None else None
            self.result.add(Break(self._next_seq, None, "gap", expected, None))


@dataclass(slots=True)
class Held:
    """Events a legal hold kept at or below a retention anchor: "held islands".

    Retention removed their neighbours, so no link into an island can be
    checked; each island is checked on its own (and linked to the island
    just before it where their seqs are adjacent). ``seqs`` lists the first
    ``max_listed``.
    """

    count: int = 0
    seqs: list[int] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    max_listed: int = 100

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "seqs": self.seqs,
            "seqs_truncated": self.count > len(self.seqs),
        }


def check_held(workspace_id: str, rows: Iterable[RawRow], *, max_listed: int = 100) -> Held:
    """Check held islands (rows as ``Verifier.feed_raw`` takes them, ascending ``seq``).

    Each row MUST hash to its stored hash and name its workspace and seq
    (``hash_mismatch`` otherwise), exactly as in a walk; a row whose seq
    follows the previous island's MUST link to it (``chain_break``). A jump
    in seq is what retention removed: not a gap.
    """
    held = Held(max_listed=max_listed)
    run: Verifier | None = None
    last = 0
    for row in rows:
        seq = row[0]
        if run is None or seq != last + 1:
            if run is not None:
                held.breaks += run.result.breaks
            run = Verifier(workspace_id, expected_first_seq=seq, expected_prev_hash=None)
        run.feed_raw([row])
        last = seq
        held.count += 1
        if len(held.seqs) < max_listed:
            held.seqs.append(seq)
    if run is not None:
        held.breaks += run.result.breaks
    return held


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None  # an array/scalar body must not crash


def _field(body: bytes, name: str) -> Any:
    doc = _parse(body)
    return doc.get(name) if doc is not None else None


def _id_of(body: bytes) -> str | None:
    value = _field(body, "id")
    return value if isinstance(value, str) else None


def iter_segment(value: bytes) -> Iterator[tuple[str, bytes]]:
    """Lines of a chained record: ``<64 hex hash> <canonical event>``."""
    for line in value.split(b"\n"):
        if line:
            yield line[:64].decode("ascii"), line[65:]


def encode_segment(lines: Iterable[tuple[str, bytes]]) -> bytes:
    return b"\n".join(h.encode("ascii") + b" " + body for h, body in lines)
