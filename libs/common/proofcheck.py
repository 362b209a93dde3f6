"""Checking what the log serves against a pinned key: checkpoints and proofs.

The client side of ``docs/proofs.md``, used by ``chainlog verify-proof``.
Pure: it takes the bytes the API served (or a file holds) and the verifier
key, and imports only the wire formats (``checkpoint``, ``merkle``, the
canonical encoding of ``chain``), never the server's code.

Every check MUST take a tree's size and root from a checkpoint whose
signature it verified, never from the proof's response: a proof binds
neither (``docs/merkle.md``). The roots the API serves next to a proof are
informational and are ignored here.

The log signs every workspace's checkpoints with one key, so a signature
alone does not say which workspace a checkpoint is about: its origin does
(``<host>/<workspace_id>``). A consistency check requires both checkpoints
to name the same origin, an inclusion check requires the event's workspace
to be the checkpoint's, and ``origin=`` pins it where known.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from libs.common.chain import canonical, event_hash
from libs.common.checkpoint import (
    Checkpoint,
    NoteError,
    SignatureError,
    VerifierKey,
    open_checkpoint,
)
from libs.common.exportformat import NOT_HASHED
from libs.common.merkle import HASH_SIZE, event_leaf_hash, verify_consistency, verify_inclusion

Code = Literal[
    "signed",
    "consistent",
    "included",
    "bad_signature",  # no valid signature by the pinned key
    "malformed_checkpoint",
    "origin_mismatch",  # another log's checkpoint, or another workspace's event
    "shrunk",  # a later checkpoint signs a smaller tree
    "fork",  # two roots signed for one size
    "inconsistent",  # the newer tree does not extend the older one
    "malformed_proof",
    "malformed_event",
    "hash_mismatch",  # the event's body does not hash to its served hash
    "seq_mismatch",  # the proof is for another seq than the event's
    "not_covered",  # the event is after the checkpoint
    "not_included",
]

_LABELS = {"signed": "SIGNED", "consistent": "CONSISTENT", "included": "INCLUDED"}


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one check; ``reason`` is written for a person."""

    ok: bool
    code: Code
    reason: str
    #: The checkpoint checked against (the newer one for consistency), once opened.
    checkpoint: Checkpoint | None = None
    #: The older checkpoint of a consistency check, once opened.
    old: Checkpoint | None = None

    def report(self) -> str:
        """``CONSISTENT: ...`` or ``FAILED (fork): ...``, then the checkpoint checked."""
        head = _LABELS[self.code] if self.ok else f"FAILED ({self.code})"
        lines = [f"{head}: {self.reason}"]
        if self.checkpoint is not None:
            cp = self.checkpoint
            root = base64.b64encode(cp.root).decode()
            lines.append(f"  {cp.origin} size {cp.size} root {root}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        def cp(c: Checkpoint | None) -> dict[str, Any] | None:
            if c is None:
                return None
            root = base64.b64encode(c.root).decode()
            return {"origin": c.origin, "size": c.size, "root_hash": root}

        return {
            "ok": self.ok,
            "code": self.code,
            "reason": self.reason,
            "checkpoint": cp(self.checkpoint),
            "old_checkpoint": cp(self.old),
        }


class OriginMismatch(NoteError):
    """A checkpoint signed by the key, but of another log than the one expected."""


class CheckFailed(ValueError):
    """A check that cannot go on; carries the :class:`Result` to report."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.reason)
        self.result = result


def _fail(code: Code, reason: str, **found: Checkpoint | None) -> CheckFailed:
    return CheckFailed(Result(False, code, reason, **found))


def check_checkpoint(
    note: str | bytes, verifier_key: str | VerifierKey, *, origin: str | None = None
) -> Checkpoint:
    """The checkpoint of a note signed by ``verifier_key`` (and naming ``origin``).

    Raises :class:`SignatureError` when the key's signature is missing or
    wrong, :class:`OriginMismatch` when it names another origin, and
    :class:`NoteError` when the note, the checkpoint or the key is malformed.
    """
    cp = open_checkpoint(note, verifier_key)
    if origin is not None and cp.origin != origin:
        raise OriginMismatch(f"the checkpoint is of {cp.origin}, not {origin}")
    return cp


def _open(note: str | bytes, key: str | VerifierKey, which: str, origin: str | None) -> Checkpoint:
    try:
        return check_checkpoint(note, key, origin=origin)
    except SignatureError as exc:
        raise _fail("bad_signature", f"{which}: {exc}") from None
    except OriginMismatch as exc:
        raise _fail("origin_mismatch", f"{which}: {exc}") from None
    except NoteError as exc:
        raise _fail("malformed_checkpoint", f"{which}: {exc}") from None


def check_signed(
    note: str | bytes, verifier_key: str | VerifierKey, *, origin: str | None = None
) -> Result:
    """:func:`check_checkpoint` as a :class:`Result`: a first checkpoint, nothing to compare."""
    try:
        cp = _open(note, verifier_key, "the checkpoint", origin)
    except CheckFailed as exc:
        return exc.result
    return Result(True, "signed", f"signed by the key: size {cp.size}", cp)


def decode_proof(hashes: Sequence[str]) -> list[bytes]:
    """Base64 proof hashes as served; raises :class:`ValueError` unless each is 32 bytes."""
    if isinstance(hashes, str) or not isinstance(hashes, Sequence):
        raise ValueError("a proof is a list of base64 hashes")
    out = []
    for i, text in enumerate(hashes):
        try:
            raw = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
        except binascii.Error:
            raw = b""
        if len(raw) != HASH_SIZE:
            raise ValueError(f"proof hash {i} is not the base64 of 32 bytes")
        out.append(raw)
    return out


def check_consistency(
    old_note: str | bytes,
    new_note: str | bytes,
    proof: Sequence[str],
    verifier_key: str | VerifierKey,
    *,
    origin: str | None = None,
) -> Result:
    """Does the newer signed tree extend the one kept? ``proof`` is base64, RFC 9162 PROOF.

    In order: both notes open with the key; they name one origin (and
    ``origin``, if given); the newer size is not smaller; at one size the
    roots are equal; the proof leads from the old root to the new one.
    """
    try:
        old = _open(old_note, verifier_key, "the old checkpoint", origin)
        new = _open(new_note, verifier_key, "the new checkpoint", origin)
        found = {"checkpoint": new, "old": old}
        if new.origin != old.origin:
            raise _fail(
                "origin_mismatch",
                f"the checkpoints are of two logs: {old.origin} and {new.origin}",
                **found,
            )
        if new.size < old.size:
            raise _fail(
                "shrunk",
                f"the log is smaller than a size it signed: {new.size} < {old.size}"
                " (events deleted?); keep both notes, each is signed",
                **found,
            )
        if new.size == old.size and new.root != old.root:
            raise _fail(
                "fork",
                f"fork: two different roots signed for size {new.size};"
                " keep both notes, each is signed",
                **found,
            )
        try:
            hashes = decode_proof(proof)
        except ValueError as exc:
            raise _fail("malformed_proof", str(exc), **found) from None
    except CheckFailed as exc:
        return exc.result
    if not verify_consistency(old.size, new.size, old.root, new.root, hashes):
        return Result(
            False,
            "inconsistent",
            f"the tree of size {new.size} does not extend the signed tree of size {old.size}:"
            " the consistency proof fails (history rewritten, or a wrong proof)",
            new,
            old,
        )
    if new.size == old.size:
        return Result(True, "consistent", f"same size {new.size} and root", new, old)
    return Result(True, "consistent", f"size {new.size} extends size {old.size}", new, old)


def _event_hash(event: dict[str, Any]) -> str:
    """The event's SHA-256 recomputed from its body; raises :class:`CheckFailed`."""
    body = {k: v for k, v in event.items() if k not in NOT_HASHED}
    try:
        digest = event_hash(canonical(body))
    except (ValueError, TypeError) as exc:  # rfc8785 and orjson refusals
        raise _fail("malformed_event", f"the event cannot be canonicalised: {exc}") from None
    served = event.get("hash")
    if served is not None and served != digest:
        raise _fail(
            "hash_mismatch",
            f"the event does not hash to its hash: {digest} != {served}"
            " (changed after it was chained?)",
        )
    return digest


def check_inclusion(
    event: dict[str, Any] | str,
    seq: int | None,
    audit_path: Sequence[str],
    checkpoint_note: str | bytes,
    verifier_key: str | VerifierKey,
    *,
    origin: str | None = None,
) -> Result:
    """Is the event leaf ``seq - 1`` of the signed tree? ``audit_path`` is base64, RFC 9162 PATH.

    ``event`` is the event as served (its hash is recomputed from the body,
    without ``hash``, ``ip_country`` and ``ip_city``; ``seq`` may then be
    None to take the body's) or the event's 64-hex hash.
    """
    try:
        if isinstance(event, dict):
            digest = _event_hash(event)
            body_seq = event.get("seq")
            if type(body_seq) is not int or (seq is not None and body_seq != seq):
                raise _fail("seq_mismatch", f"the proof is for seq {seq}, the event is {body_seq}")
            seq = body_seq
        else:
            if seq is None:
                raise ValueError("seq is needed with an event hash")
            digest = event
        try:
            leaf = event_leaf_hash(digest)
        except ValueError:
            raise _fail("malformed_event", "an event hash is 64 hex digits") from None
        cp = _open(checkpoint_note, verifier_key, "the checkpoint", origin)
        ws = event.get("workspace_id") if isinstance(event, dict) else None
        if ws is not None and not cp.origin.endswith(f"/{ws}"):
            raise _fail(
                "origin_mismatch",
                f"the event is of workspace {ws}, the checkpoint of {cp.origin}",
                checkpoint=cp,
            )
        if not 1 <= seq <= cp.size:
            raise _fail(
                "not_covered",
                f"seq {seq} is not in the tree of size {cp.size}: check a newer checkpoint",
                checkpoint=cp,
            )
        try:
            path = decode_proof(audit_path)
        except ValueError as exc:
            raise _fail("malformed_proof", str(exc), checkpoint=cp) from None
    except CheckFailed as exc:
        return exc.result
    if not verify_inclusion(leaf, seq - 1, cp.size, path, cp.root):
        return Result(
            False,
            "not_included",
            f"the audit path does not lead from event seq {seq} (hash {digest})"
            f" to the signed root of size {cp.size}",
            cp,
        )
    return Result(True, "included", f"event seq {seq} is in the signed tree of size {cp.size}", cp)
