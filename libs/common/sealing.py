"""Sealed personal fields: what crypto-shredding hashes, and how it opens (docs/privacy.md).

A workspace that turns privacy on lists its personal fields (by default
``actor_name``, ``ip_address`` and ``user_agent``, plus any top-level
``metadata`` keys it names). At ingest, before anything reaches Kafka, each
such field present in an event is replaced by a *sealed string*::

    enc:v1:<kid>:<base64url(nonce || AES-256-GCM(key, nonce, value, aad))>

* ``kid`` is the id (a UUID) of the data subject's key; each subject
  (``actor_id`` by default) has one random 32-byte key per workspace.
* ``nonce`` is 12 random bytes; ``value`` is the field's UTF-8 text (a
  metadata value that is not a string is sealed as its canonical JSON).
* ``aad`` is ``enc:v1:<kid>|<workspace_id>|<field>``, so a sealed value
  cannot be moved to another field, workspace or key unnoticed.

The chain hashes the event *as sealed*: its hash covers the ciphertext, so
destroying a subject's key (erasure) leaves every hash, link, tree and
checkpoint as it was, and the plaintext unrecoverable. A reader with the
key opens the value; without it the value reads ``[erased]``.

This module is pure (no database, no server code): the keys come from
``libs/common/subjects.py``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"
ERASED = "[erased]"
#: A sealed value whose key exists but does not open it (damaged; the chain also says so).
UNREADABLE = "[unreadable]"
KEY_BYTES = 32
NONCE_BYTES = 12
#: Top-level event fields that may be declared personal.
SEALABLE_FIELDS = ("actor_name", "ip_address", "user_agent", "resource_name")
DEFAULT_FIELDS = ("actor_name", "ip_address", "user_agent")

#: The bytes every sealed value starts with: a cheap test of a stored body or file line.
MARK = PREFIX.encode()
_KID = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
_SEALED = re.compile(PREFIX + _KID + r":([A-Za-z0-9_-]+)\Z")
#: The key id of each sealed value in a run of bytes (an export file's line).
KIDS_IN_BYTES = re.compile(MARK + _KID.encode() + b":")


class SealError(ValueError):
    """A sealed value that cannot be opened with the key given (damaged, moved, wrong key)."""


@dataclass(frozen=True, slots=True)
class Privacy:
    """A workspace's privacy settings (``workspaces.privacy``; None when off)."""

    fields: tuple[str, ...] = DEFAULT_FIELDS
    metadata_keys: tuple[str, ...] = ()
    #: ``actor_id``, or ``metadata.<key>`` (falling back to actor_id when absent).
    subject: str = "actor_id"
    #: ``keep`` or ``drop``: what erasure does to ip_country/ip_city.
    erased_enrichment: str = "keep"

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Privacy:
        return cls(
            tuple(doc.get("fields", DEFAULT_FIELDS)),
            tuple(doc.get("metadata_keys", ())),
            str(doc.get("subject", "actor_id")),
            str(doc.get("erased_enrichment", "keep")),
        )

    def as_doc(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "metadata_keys": list(self.metadata_keys),
            "subject": self.subject,
            "erased_enrichment": self.erased_enrichment,
        }

    def subject_of(self, event: Mapping[str, Any]) -> str:
        if self.subject.startswith("metadata."):
            meta = event.get("metadata")
            value = meta.get(self.subject[9:]) if isinstance(meta, dict) else None
            if isinstance(value, str) and value:
                return value
        return str(event["actor_id"])

    def personal_paths(self, event: Mapping[str, Any]) -> list[str]:
        """The personal fields ``event`` holds, as paths (``ip_address``, ``metadata.email``)."""
        paths = [f for f in self.fields if f in event]
        meta = event.get("metadata")
        if isinstance(meta, dict):
            paths += [f"metadata.{k}" for k in self.metadata_keys if k in meta]
        return paths


def _aad(kid: str, workspace_id: str, path: str) -> bytes:
    return f"{PREFIX}{kid}|{workspace_id}|{path}".encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seal(
    key: bytes, kid: str, workspace_id: str, path: str, value: Any, nonce: bytes | None = None
) -> str:
    """The sealed string of one field's value (``nonce`` only for test vectors)."""
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    plain = text.encode() if isinstance(text, str) else text
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    ct = AESGCM(key).encrypt(nonce, plain, _aad(kid, workspace_id, path))
    return f"{PREFIX}{kid}:{_b64(nonce + ct)}"


def parse(value: Any) -> tuple[str, bytes] | None:
    """(kid, nonce || ciphertext) of a sealed string; None for anything else."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return None
    m = _SEALED.match(value)
    if m is None:
        return None
    try:
        blob = base64.urlsafe_b64decode(m.group(2) + "=" * (-len(m.group(2)) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(blob) < NONCE_BYTES + 16:
        return None
    return m.group(1), blob


def unseal(key: bytes, kid: str, workspace_id: str, path: str, blob: bytes) -> str:
    """The plaintext (as text) of a parsed sealed value; raises SealError."""
    try:
        plain = AESGCM(key).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(kid, workspace_id, path)
        )
    except InvalidTag:
        raise SealError(f"{path}: the sealed value does not open with key {kid}") from None
    return plain.decode()


def seal_event(
    event: dict[str, Any], privacy: Privacy, workspace_id: str, kid: str, key: bytes
) -> None:
    """Replace each personal field of ``event`` by its sealed string, in place."""
    for path in privacy.personal_paths(event):
        if path.startswith("metadata."):
            meta = event["metadata"] = dict(event["metadata"])
            name = path[9:]
            meta[name] = seal(key, kid, workspace_id, path, meta[name])
        else:
            event[path] = seal(key, kid, workspace_id, path, event[path])


def sealed_fields(event: Mapping[str, Any]) -> Iterator[tuple[str, str, bytes]]:
    """(path, kid, blob) of every sealed value in a stored event."""
    for name in SEALABLE_FIELDS:
        parsed = parse(event.get(name))
        if parsed is not None:
            yield name, *parsed
    meta = event.get("metadata")
    if isinstance(meta, dict):
        for name, value in meta.items():
            parsed = parse(value)
            if parsed is not None:
                yield f"metadata.{name}", *parsed


def kids(event: Mapping[str, Any]) -> set[str]:
    return {kid for _, kid, _ in sealed_fields(event)}


def personal(
    event: Mapping[str, Any], workspace_id: str, keys: Mapping[str, bytes | None]
) -> dict[str, str] | None:
    """Each sealed field's readable value, or ERASED where its key is destroyed.

    ``keys`` maps the kids this workspace knows to their key (None once
    erased); a value under a kid it does not know is not Chainlog's and is
    left out. None when the event holds no sealed value.
    """
    out: dict[str, str] = {}
    for path, kid, blob in sealed_fields(event):
        if kid not in keys:
            continue
        key = keys[kid]
        if key is None:
            out[path] = ERASED
            continue
        try:
            out[path] = unseal(key, kid, workspace_id, path, blob)
        except SealError:
            out[path] = UNREADABLE
    return out or None
