"""Encryption at rest for secrets we must use again: webhook signing secrets, SIEM tokens.

A hash would do for secrets we only compare (API keys, see ``keys``); these
we must hand back to HMAC or to an ``Authorization`` header, so they are
sealed with AES-256-GCM under one master key kept outside the database.

A sealed blob reads ``version (1 byte) || nonce (12 bytes) || ciphertext+tag``.
The caller's ``context`` (e.g. ``webhook_endpoint:<uuid>``) is the associated
data: it is not stored, and a blob copied to another row MUST NOT decrypt
there. A fresh random nonce per encryption keeps one key safe for far more
secrets than a workspace will ever hold.

Nothing in this module logs or prints a secret, and ``SecretError`` never
carries one.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from libs.common.settings import Settings

VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16


class SecretError(ValueError):
    """A secret cannot be sealed or opened: bad key, wrong context, damaged blob."""


class SecretBox:
    """Seals short secrets with AES-256-GCM, bound to a context string."""

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretError(f"the master key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self._key = key

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (HKDF-SHA256 of the master key, ``purpose`` as info).

        Keys for different purposes are independent: a viewer-token MAC key
        reveals nothing of the master key or of any other derived key.
        """
        return HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()
        ).derive(self._key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    @classmethod
    def from_b64(cls, text: str) -> SecretBox:
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SecretError("the master key is not valid base64") from None
        return cls(key)

    @classmethod
    def from_key_file(cls, path: Path) -> SecretBox:
        """The key in ``path`` (base64); absent, a new random key written there, mode 0600.

        ``O_EXCL`` makes two processes starting together agree: the loser of
        the race reads the winner's key instead of overwriting it.
        """
        try:
            return cls._read(path)
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        key = os.urandom(KEY_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls._read(path)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(key).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
        return cls(key)

    @classmethod
    def _read(cls, path: Path) -> SecretBox:
        text = path.read_text()
        try:
            return cls.from_b64(text)
        except SecretError as exc:
            raise SecretError(f"{path}: {exc}") from None

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return bytes([VERSION]) + nonce + sealed

    def decrypt(self, blob: bytes, *, context: str) -> str:
        if len(blob) < 1 + NONCE_BYTES + _TAG_BYTES:
            raise SecretError("cannot decrypt secret: the stored value is too short")
        if blob[0] != VERSION:
            raise SecretError(f"cannot decrypt secret: unknown format version {blob[0]}")
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, context.encode())
        except InvalidTag:
            raise SecretError(
                f"cannot decrypt secret for {context!r}: wrong master key,"
                " value copied from another record, or value damaged"
            ) from None
        return plain.decode()


def for_settings(settings: Settings) -> SecretBox:
    """``CHAINLOG_SECRET_KEY`` when set, else the key file (created on first use).

    Every process that reads or writes sealed secrets MUST use the same key:
    with a per-host key file, give them a shared ``CHAINLOG_SECRET_KEY_FILE``
    or set ``CHAINLOG_SECRET_KEY``.
    """
    if settings.secret_key:
        try:
            return SecretBox.from_b64(settings.secret_key)
        except SecretError as exc:
            raise SecretError(f"CHAINLOG_SECRET_KEY: {exc}") from None
    return SecretBox.from_key_file(settings.secret_key_file)
