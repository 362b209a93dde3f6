"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, Ed25519.

A checkpoint body (https://c2sp.org/tlog-checkpoint) is::

    <origin>\\n<tree size in decimal>\\n<base64 root hash>\\n[<extension line>\\n ...]

A signed note (https://c2sp.org/signed-note) is the body, a blank line and
one or more signature lines ``— <key name> <base64(key ID || signature)>\\n``
(the dash is the em dash U+2014). For Ed25519 the key ID is
``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]`` and the
signature is over the body bytes. Verifier keys are written
``<name>+<8 hex key ID>+<base64(0x01 || public key)>`` and signer keys
``PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || 32-byte seed)>``, the
forms of Go's ``golang.org/x/mod/sumdb/note``, so Go tooling reads them.

Recommended origin for a workspace's log: ``chainlog.local/<workspace_id>``
(:func:`workspace_origin`; the host part is to become a setting), with the
log's key name equal to the origin, as tlog-checkpoint advises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from libs.common.timeutil import format_ts

SIGNATURE_TYPE_ED25519 = 0x01
EM_DASH = "\u2014"
_SIG_PREFIX = EM_DASH + " "
#: Signature lines read per note at most; the spec asks for at least 16.
MAX_SIGNATURES = 100
DEFAULT_ORIGIN_HOST = "chainlog.local"


class NoteError(ValueError):
    """A malformed note, checkpoint or key."""


class SignatureError(NoteError):
    """No signature by the expected key, or one that does not verify."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifierKey:
    name: str
    key_id: bytes
    public_key: bytes


def workspace_origin(workspace_id: str, host: str = DEFAULT_ORIGIN_HOST) -> str:
    """The recommended origin (and key name) of a workspace's log."""
    origin = f"{host}/{workspace_id}"
    if not valid_name(origin):
        raise NoteError("an origin must be non-empty, without spaces or '+'")
    return origin


def valid_name(name: str) -> bool:
    """A key name: non-empty, no Unicode space, no '+' (signed-note §Format)."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError("bad base64") from exc


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------
# Checkpoint body


def format_checkpoint(origin: str, size: int, root: bytes, extensions: tuple[str, ...] = ()) -> str:
    """The checkpoint body, ending in a newline."""
    if not origin or "\n" in origin:
        raise NoteError("an origin is one non-empty line")
    if size < 0:
        raise NoteError("a tree size is not negative")
    if len(root) != 32:
        raise NoteError("a root hash has 32 bytes")
    if any(not line or "\n" in line for line in extensions):
        raise NoteError("extension lines are non-empty single lines")
    return "".join(f"{line}\n" for line in (origin, str(size), _b64encode(root), *extensions))


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body strictly: one spelling per checkpoint."""
    if not text.endswith("\n"):
        raise NoteError("a checkpoint body ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise NoteError("a checkpoint body has at least three non-empty lines")
    origin, size_s, root_s, *ext = lines
    if not size_s.isascii() or not size_s.isdigit() or (size_s != "0" and size_s[0] == "0"):
        raise NoteError("a tree size is decimal without leading zeros")
    root = _b64decode(root_s)
    if len(root) != 32 or _b64encode(root) != root_s:
        raise NoteError("a root hash is the base64 of 32 bytes")
    return Checkpoint(origin, int(size_s), root, tuple(ext))


# ---------------------------------------------------------------------------
# Keys


def _raw_public(public_key: Ed25519PublicKey | bytes) -> bytes:
    if isinstance(public_key, Ed25519PublicKey):
        return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    if len(public_key) != 32:
        raise NoteError("an Ed25519 public key has 32 bytes")
    return bytes(public_key)


def _private(private_key: Ed25519PrivateKey | bytes) -> Ed25519PrivateKey:
    if isinstance(private_key, Ed25519PrivateKey):
        return private_key
    if len(private_key) != 32:
        raise NoteError("an Ed25519 private key (seed) has 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(bytes(private_key))


def key_id(name: str, public_key: Ed25519PublicKey | bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x01 || public key)[:4]``."""
    data = name.encode() + b"\n" + bytes([SIGNATURE_TYPE_ED25519]) + _raw_public(public_key)
    return hashlib.sha256(data).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey | bytes) -> str:
    """``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
    if not valid_name(name):
        raise NoteError("invalid key name")
    raw = _raw_public(public_key)
    blob = bytes([SIGNATURE_TYPE_ED25519]) + raw
    return f"{name}+{key_id(name, raw).hex()}+{_b64encode(blob)}"


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse and check a verifier key string (name, key ID and key must agree)."""
    parts = vkey.split("+", 2)  # base64 may hold '+'
    if len(parts) != 3:
        raise NoteError("a verifier key is <name>+<hex key ID>+<base64 key>")
    name, id_hex, key_b64 = parts
    blob = _b64decode(key_b64)
    if (
        not valid_name(name)
        or len(id_hex) != 8
        or any(c not in "0123456789abcdef" for c in id_hex.lower())
    ):
        raise NoteError("malformed verifier key")
    if len(blob) != 33 or blob[0] != SIGNATURE_TYPE_ED25519:
        raise NoteError("not an Ed25519 verifier key")
    kid = bytes.fromhex(id_hex)
    if kid != key_id(name, blob[1:]):
        raise NoteError("the verifier key's ID does not match its name and key")
    return VerifierKey(name, kid, blob[1:])


def signer_key(name: str, private_key: Ed25519PrivateKey | bytes) -> str:
    """``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``: keep it secret."""
    if not valid_name(name):
        raise NoteError("invalid key name")
    priv = _private(private_key)
    seed = priv.private_bytes_raw()
    kid = key_id(name, priv.public_key())
    return f"PRIVATE+KEY+{name}+{kid.hex()}+{_b64encode(bytes([SIGNATURE_TYPE_ED25519]) + seed)}"


def parse_signer_key(skey: str) -> tuple[str, Ed25519PrivateKey]:
    """The key name and private key of a signer key string."""
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise NoteError("a signer key is PRIVATE+KEY+<name>+<hex key ID>+<base64 key>")
    name, id_hex, key_b64 = parts[2:]
    blob = _b64decode(key_b64)
    if not valid_name(name) or len(id_hex) != 8:
        raise NoteError("malformed signer key")
    if len(blob) != 33 or blob[0] != SIGNATURE_TYPE_ED25519:
        raise NoteError("not an Ed25519 signer key")
    priv = Ed25519PrivateKey.from_private_bytes(blob[1:])
    if id_hex.lower() != key_id(name, priv.public_key()).hex():
        raise NoteError("the signer key's ID does not match its name and key")
    return name, priv


def generate_key(name: str) -> tuple[str, str]:
    """A new Ed25519 key: ``(signer key, verifier key)`` strings."""
    priv = Ed25519PrivateKey.generate()
    return signer_key(name, priv), verifier_key(name, priv.public_key())


# ---------------------------------------------------------------------------
# Signed notes


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


def _check_text(text: str) -> None:
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("a note holds no control characters but newline")
    try:
        text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise NoteError("a note is valid UTF-8") from exc


def sign_note(body: str, name: str, private_key: Ed25519PrivateKey | bytes) -> str:
    """``body``, a blank line and one Ed25519 signature line by ``name``."""
    if not body.endswith("\n"):
        raise NoteError("a note's text ends with a newline")
    _check_text(body)
    if not valid_name(name):
        raise NoteError("invalid key name")
    priv = _private(private_key)
    sig = priv.sign(body.encode())
    kid = key_id(name, priv.public_key())
    return f"{body}\n{_SIG_PREFIX}{name} {_b64encode(kid + sig)}\n"


def parse_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a note into its text and its (unverified) signatures.

    The text ends at the last blank line and keeps its final newline.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("a note is valid UTF-8") from exc
    _check_text(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("a note's signatures follow a blank line")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("a note ends with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("too many signatures")
    sigs = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("a signature line starts with an em dash and a space")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not b64 or not valid_name(name):
            raise NoteError("malformed signature line")
        raw = _b64decode(b64)
        if len(raw) < 5:
            raise NoteError("malformed signature line")
        sigs.append(NoteSignature(name, raw[:4], raw[4:]))
    return text, sigs


def open_note(note: str | bytes, verifier: str | VerifierKey) -> str:
    """The text of a note signed by ``verifier``; raises otherwise.

    Signatures by other keys (another name or key ID) are ignored, as the
    spec requires. A signature by this key that does not verify raises
    :class:`SignatureError`, and so does a note with none by this key;
    a malformed note raises :class:`NoteError`.
    """
    key = parse_verifier_key(verifier) if isinstance(verifier, str) else verifier
    text, sigs = parse_note(note)
    public = Ed25519PublicKey.from_public_bytes(key.public_key)
    verified = False
    for sig in sigs:
        if sig.name != key.name or sig.key_id != key.key_id:
            continue
        try:
            public.verify(sig.signature, text.encode())
        except InvalidSignature as exc:
            raise SignatureError(
                f"invalid signature for key {key.name}+{key.key_id.hex()}"
            ) from exc
        verified = True
    if not verified:
        raise SignatureError(f"no signature by key {key.name}+{key.key_id.hex()}")
    return text


def sign_checkpoint(cp: Checkpoint, name: str, private_key: Ed25519PrivateKey | bytes) -> str:
    return sign_note(
        format_checkpoint(cp.origin, cp.size, cp.root, cp.extensions), name, private_key
    )


def open_checkpoint(note: str | bytes, verifier: str | VerifierKey) -> Checkpoint:
    """Verify the note, then parse its text as a checkpoint."""
    return parse_checkpoint(open_note(note, verifier))


#: The action of a checkpoint sent down a log stream (:func:`as_event`).
CHECKPOINT_ACTION = "chainlog.checkpoint"


def served_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`served` of a ``checkpoints`` row."""
    return served(row["note"], row["size"], bytes(row["root"]), row["created_at"])


def served(note: str, size: int, root: bytes, created_at: datetime) -> dict[str, Any]:
    """A stored checkpoint as the API, webhooks and log streams show it."""
    return {
        "origin": parse_checkpoint(note.split("\n\n", 1)[0] + "\n").origin,
        "size": size,
        "root_hash": _b64encode(root),
        "checkpoint": note,
        "created_at": format_ts(created_at),
    }


def as_event(workspace_id: str, checkpoint_id: str, cp: Mapping[str, Any]) -> dict[str, Any]:
    """A served checkpoint shaped as an event, so every log-stream format carries it.

    ``action`` is :data:`CHECKPOINT_ACTION`; ``metadata`` is the checkpoint
    as served (the signed note included); ``seq`` is the tree size and
    ``hash`` the root, hex. It is not an event of the chain: its ``id`` is
    the checkpoint's and its ``prev_hash`` is zeros.
    """
    return {
        "id": checkpoint_id,
        "workspace_id": workspace_id,
        "version": 1,
        "seq": cp["size"],
        "action": CHECKPOINT_ACTION,
        "action_category": "chainlog",
        "actor_id": "chainlog",
        "actor_type": "system",
        "actor_name": cp["origin"],
        "resource": "log",
        "resource_id": cp["origin"],
        "occurred_at": cp["created_at"],
        "received_at": cp["created_at"],
        "metadata": dict(cp),
        "prev_hash": bytes(32).hex(),
        "hash": _b64decode(cp["root_hash"]).hex(),
        "ip_country": None,
        "ip_city": None,
    }
