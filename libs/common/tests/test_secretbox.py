"""Secrets sealed at rest: round trip, bound to their row, tamper-evident, key file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from libs.common.secretbox import SecretBox, SecretError, for_settings
from libs.common.settings import Settings

CTX = "webhook_endpoint:0b9e3a5c-6f43-4c39-8f0e-1c3d2b7a9e10"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(32))


def test_round_trip_and_fresh_nonce(box: SecretBox) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    a = box.encrypt(secret, context=CTX)
    b = box.encrypt(secret, context=CTX)
    assert a != b  # a new nonce every time
    assert a[0] == 1 and len(a) == 1 + 12 + len(secret) + 16
    assert secret.encode() not in a
    assert box.decrypt(a, context=CTX) == secret
    assert box.decrypt(b, context=CTX) == secret
    assert box.decrypt(box.encrypt("", context=CTX), context=CTX) == ""
    assert box.decrypt(box.encrypt("ünï ✓", context=CTX), context=CTX) == "ünï ✓"


def test_blob_copied_to_another_row_fails(box: SecretBox) -> None:
    blob = box.encrypt("token", context=CTX)
    with pytest.raises(SecretError, match="another record"):
        box.decrypt(blob, context="webhook_endpoint:another")


def test_other_master_key_fails(box: SecretBox) -> None:
    blob = box.encrypt("token", context=CTX)
    with pytest.raises(SecretError):
        SecretBox(os.urandom(32)).decrypt(blob, context=CTX)


@pytest.mark.parametrize("index", [0, 1, 12, 13, -1])
def test_tampered_blob_fails(box: SecretBox, index: int) -> None:
    blob = bytearray(box.encrypt("token", context=CTX))
    blob[index] ^= 0x01
    with pytest.raises(SecretError):
        box.decrypt(bytes(blob), context=CTX)


def test_truncated_blob_fails(box: SecretBox) -> None:
    blob = box.encrypt("token", context=CTX)
    for cut in (0, 1, 13, 28, len(blob) - 1):
        with pytest.raises(SecretError):
            box.decrypt(blob[:cut], context=CTX)


def test_error_never_carries_the_secret(box: SecretBox) -> None:
    blob = box.encrypt("hunter2-very-secret", context=CTX)
    with pytest.raises(SecretError) as info:
        box.decrypt(blob, context="elsewhere")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(box)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(SecretError, match="32 bytes"):
        SecretBox(b"short")
    with pytest.raises(SecretError, match="base64"):
        SecretBox.from_b64("not base64!!")
    with pytest.raises(SecretError, match="32 bytes"):
        SecretBox.from_b64(base64.b64encode(b"x" * 16).decode())


def test_from_b64_matches_raw_key() -> None:
    key = os.urandom(32)
    blob = SecretBox(key).encrypt("s", context=CTX)
    assert SecretBox.from_b64(base64.b64encode(key).decode() + "\n").decrypt(blob, context=CTX)


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys" / "secretbox.key"
    first = SecretBox.from_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip())) == 32
    blob = first.encrypt("token", context=CTX)

    again = SecretBox.from_key_file(path)
    assert again.decrypt(blob, context=CTX) == "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_file_with_garbage_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secretbox.key"
    path.write_text("garbage")
    with pytest.raises(SecretError, match=str(path)):
        SecretBox.from_key_file(path)


def test_for_settings_prefers_the_variable_then_the_file(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    env = {"CHAINLOG_STATE_DIR": str(tmp_path)}
    blob = SecretBox.from_b64(key).encrypt("s", context=CTX)
    assert for_settings(Settings.from_env(env | {"CHAINLOG_SECRET_KEY": key})).decrypt(
        blob, context=CTX
    )
    assert not (tmp_path / "secret.key").exists()

    from_file = for_settings(Settings.from_env(env))
    assert (tmp_path / "secret.key").exists()
    assert for_settings(Settings.from_env(env)).decrypt(
        from_file.encrypt("t", context=CTX), context=CTX
    )
    with pytest.raises(SecretError, match=r"^CHAINLOG_SECRET_KEY: "):
        for_settings(Settings.from_env(env | {"CHAINLOG_SECRET_KEY": "short"}))
