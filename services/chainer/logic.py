"""Turning raw records into chain segments: pure, no Kafka.

A raw record is one accepted request of one workspace:
``{"workspace_id": ..., "events": [{"id", "received_at", ...producer fields}]}``.
Its chained record is a *segment*: one line per new chain entry,
``<hash hex> <canonical event>`` (see ``libs.common.chain``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from libs.common.chain import Head, encode_segment, link

IDEMPOTENCY_WINDOW_S = 24 * 3600


class InvalidRecord(Exception):
    """A raw record that can never be chained; it goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class IdemEntry:
    event_id: str
    seq: int
    at: float

    def encode(self) -> bytes:
        return orjson.dumps({"event_id": self.event_id, "seq": self.seq, "at": self.at})

    @classmethod
    def decode(cls, value: bytes) -> IdemEntry:
        d = orjson.loads(value)
        return cls(d["event_id"], d["seq"], d["at"])


def encode_head(head: Head) -> bytes:
    return orjson.dumps({"seq": head.seq, "hash": head.hash})


def decode_head(value: bytes) -> Head:
    d = orjson.loads(value)
    return Head(d["seq"], d["hash"])


def idem_key(workspace_id: str, key: str) -> str:
    return f"{workspace_id}\x00{key}"


@dataclass(slots=True)
class PartitionState:
    """The chain heads and recent idempotency keys of one partition's workspaces.

    It MUST only be changed through :class:`Staged`, and a ``Staged`` MUST
    only be applied after the Kafka transaction carrying its output has
    committed: memory never runs ahead of what Kafka holds.
    """

    heads: dict[str, Head] = field(default_factory=dict)
    idem: dict[str, IdemEntry] = field(default_factory=dict)

    def prune(self, now: float) -> None:
        cutoff = now - IDEMPOTENCY_WINDOW_S
        stale = [k for k, e in self.idem.items() if e.at < cutoff]
        for k in stale:
            del self.idem[k]


@dataclass(slots=True)
class Staged:
    """Changes of one transaction, on top of a :class:`PartitionState`."""

    base: PartitionState
    heads: dict[str, Head] = field(default_factory=dict)
    idem: dict[str, IdemEntry] = field(default_factory=dict)
    duplicates: int = 0

    def head(self, workspace_id: str) -> Head:
        head = self.heads.get(workspace_id)
        if head is None:
            committed = self.base.heads.get(workspace_id)
            head = Head(committed.seq, committed.hash) if committed else Head()
            self.heads[workspace_id] = head
        return head

    def seen(self, key: str, now: float) -> bool:
        entry = self.idem.get(key) or self.base.idem.get(key)
        return entry is not None and entry.at >= now - IDEMPOTENCY_WINDOW_S

    def apply(self) -> None:
        self.base.heads.update(self.heads)
        self.base.idem.update(self.idem)


def _check_uuid(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(f"{what} is not a string")
    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidRecord(f"{what} is not a UUID") from None
    return value


def chain_record(staged: Staged, value: bytes | None, now: float) -> tuple[str, bytes | None]:
    """Chain one raw record; returns (workspace_id, segment or None if all duplicates).

    Raises :class:`InvalidRecord` before changing anything when the record
    cannot be chained as a whole.
    """
    if not value:
        raise InvalidRecord("empty record")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRecord("not a JSON object")
    workspace_id = _check_uuid(doc.get("workspace_id"), "workspace_id")
    events = doc.get("events")
    if not isinstance(events, list) or not events:
        raise InvalidRecord("events is not a non-empty array")
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            raise InvalidRecord(f"events[{i}] is not an object")
        _check_uuid(ev.get("id"), f"events[{i}].id")
        for name in ("received_at", "actor_id", "action"):
            if not isinstance(ev.get(name), str):
                raise InvalidRecord(f"events[{i}].{name} is missing or not a string")
        for name in ("workspace_id", "seq", "prev_hash", "hash"):
            if name in ev:
                raise InvalidRecord(f"events[{i}] carries the system field {name}")

    head = staged.head(workspace_id)
    start = Head(head.seq, head.hash)
    lines: list[tuple[str, bytes]] = []
    new_idem: dict[str, IdemEntry] = {}
    try:
        for ev in events:
            key = ev.get("idempotency_key")
            if key is not None:
                k = idem_key(workspace_id, str(key))
                if k in new_idem or staged.seen(k, now):
                    staged.duplicates += 1
                    continue
            body, digest = link(head, workspace_id, ev)
            lines.append((digest, body))
            if key is not None:
                new_idem[k] = IdemEntry(ev["id"], head.seq, now)
    except (TypeError, ValueError) as exc:
        # Not encodable (e.g. an integer beyond what RFC 8785 allows): the
        # whole record is refused and the head goes back where it was.
        head.seq, head.hash = start.seq, start.hash
        raise InvalidRecord(f"cannot be canonicalised: {exc}") from None
    staged.idem.update(new_idem)
    return workspace_id, (encode_segment(lines) if lines else None)
