"""C2SP tlog-checkpoint bodies and C2SP signed notes with Ed25519."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.common.checkpoint import (
    Checkpoint,
    NoteError,
    SignatureError,
    format_checkpoint,
    generate_key,
    key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_signer_key,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    signer_key,
    verifier_key,
    workspace_origin,
)
from libs.common.merkle import CompactRange, event_leaf_hash

# ---------------------------------------------------------------------------
# Known answers.
#
# golang/mod sumdb/note/note_test.go (TestSign, TestOpen, TestNewVerifier)
# and the package doc of sumdb/note/note.go: a fixed signer key, its
# verifier key and the exact signed note. Ed25519 is deterministic, so
# signing the same text with the same key must give these very bytes.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

# A real checkpoint of the Go checksum database, as sigsum/sigsum-go
# pkg/checkpoint/checkpoint_test.go (TestGoSumDBCheckpoint) keeps it
# ("Retrieved from https://sum.golang.org/latest, 2024-09-23"), and the
# log's verifier key from golang/go src/cmd/go/internal/modfetch/key.go.
GO_SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
GO_SUMDB_CHECKPOINT = (
    "go.sum database tree\n"
    "30055305\n"
    "mXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=\n"
    "\n"
    "— sum.golang.org Az3grpgEild5qw7+5dtV13Kf1C2Xurm8q4fhdxvcsDHnqNTaxL2AFjBY+2TyGKevucFcAAlWFJJYle3EJlDCrQ+y3A8=\n"
)

# The examples at the top of C2SP/C2SP signed-note.md and tlog-checkpoint.md
# (their public keys are not published: they are checked for form only).
C2SP_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)

WS = "3f1c2b7e-8d4a-4c1e-9b2f-6a5d4e3c2b1a"
ROOT = bytes(range(32))


def test_sign_note_is_byte_exact_against_go_sumdb_note() -> None:
    name, priv = parse_signer_key(PETER_SKEY)
    assert name == "PeterNeumann"
    assert sign_note(TEXT, name, priv) == TEXT + "\n" + PETER_SIG
    assert sign_note(TEXT, name, priv.private_bytes_raw()) == TEXT + "\n" + PETER_SIG
    assert verifier_key(name, priv.public_key()) == PETER_VKEY
    assert signer_key(name, priv) == PETER_SKEY
    assert key_id(name, priv.public_key()).hex() == "c74f20a3"


def test_open_note_known_answers() -> None:
    both = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(both, PETER_VKEY) == TEXT  # Enoch's signature is ignored
    assert open_note(both, ENOCH_VKEY) == TEXT
    assert open_note(both.encode(), parse_verifier_key(PETER_VKEY)) == TEXT
    with pytest.raises(SignatureError, match="no signature"):
        open_note(TEXT + "\n" + ENOCH_SIG, PETER_VKEY)
    bad = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(SignatureError, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(bad, PETER_VKEY)
    # Same name, another key ID ("x08g" -> "xxxx"): not this key, so ignored.
    with pytest.raises(SignatureError, match="no signature"):
        open_note(TEXT + "\n" + PETER_SIG.replace("x08g", "xxxx"), PETER_VKEY)


@pytest.mark.parametrize(
    "msg",
    [  # the badMsgs of TestOpen, and a few more
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT
        + "\n"
        + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("—", "-"),
        TEXT + "\n" + PETER_SIG * 101,
        TEXT + "\n— PeterNeumann AAAA\n",
        TEXT + "\n— PeterNeumann !!!!\n",
        "\ud800" + TEXT + "\n" + PETER_SIG,
    ],
)
def test_open_note_rejects_malformed(msg: str) -> None:
    with pytest.raises(NoteError):
        open_note(msg, PETER_VKEY)
    with pytest.raises(NoteError):
        open_note(b"\xff" + msg.encode(errors="replace"), PETER_VKEY)


def test_verifier_key_manglings_are_refused() -> None:
    """Every proper substring and every one-byte change (TestNewVerifier)."""
    assert parse_verifier_key(PETER_VKEY).name == "PeterNeumann"
    b = PETER_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(NoteError):
                    parse_verifier_key(b[i:j])
    for i in range(len(b)):
        with pytest.raises(NoteError):
            parse_verifier_key(b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :])
    for bad in [  # wrong length and unknown algorithm, each with a fitting key ID
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]:
        with pytest.raises(NoteError):
            parse_verifier_key(bad)


def test_signer_key_manglings_are_refused() -> None:
    b = PETER_SKEY
    for i in range(len(b)):
        with pytest.raises(NoteError):
            parse_signer_key(b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :])
        if i:
            with pytest.raises(NoteError):
                parse_signer_key(b[:i])


def test_real_go_checksum_database_checkpoint() -> None:
    assert (
        key_id("sum.golang.org", parse_verifier_key(GO_SUMDB_VKEY).public_key).hex() == "033de0ae"
    )
    cp = open_checkpoint(GO_SUMDB_CHECKPOINT, GO_SUMDB_VKEY)
    assert cp == Checkpoint(
        "go.sum database tree",
        30055305,
        base64.b64decode("mXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM="),
    )
    body = GO_SUMDB_CHECKPOINT[: GO_SUMDB_CHECKPOINT.index("\n\n") + 1]
    assert format_checkpoint(cp.origin, cp.size, cp.root) == body
    with pytest.raises(SignatureError):
        open_checkpoint(GO_SUMDB_CHECKPOINT.replace("30055305", "30055304"), GO_SUMDB_VKEY)


def test_c2sp_examples_parse() -> None:
    text, sigs = parse_note(C2SP_NOTE)
    assert (
        text
        == "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    )
    assert [s.name for s in sigs] == ["quasimodo.example/salvatore"]
    assert len(sigs[0].signature) == 64
    text, sigs = parse_note(C2SP_CHECKPOINT)
    cp = parse_checkpoint(text)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert format_checkpoint(cp.origin, cp.size, cp.root) == text
    assert sigs[0].name == cp.origin and len(sigs[0].signature) == 64
    _, vkey = generate_key("example.com/behind-the-sofa")
    with pytest.raises(SignatureError):
        open_note(C2SP_CHECKPOINT, vkey)


# ---------------------------------------------------------------------------
# Round trips with fresh keys


def test_round_trip_sign_open() -> None:
    origin = workspace_origin(WS)
    assert origin == f"chainlog.local/{WS}"
    skey, vkey = generate_key(origin)
    name, priv = parse_signer_key(skey)
    assert name == origin and parse_verifier_key(vkey).name == origin
    note = sign_checkpoint(Checkpoint(origin, 42, ROOT), name, priv)
    assert (
        note
        == f"{origin}\n42\n{base64.b64encode(ROOT).decode()}\n\n— {origin} " + note.split(" ")[-1]
    )
    assert open_checkpoint(note, vkey) == Checkpoint(origin, 42, ROOT)


def test_wrong_key_fails() -> None:
    origin = workspace_origin(WS)
    skey, _ = generate_key(origin)
    _, other_vkey = generate_key(origin)  # same name, another key
    note = sign_note(format_checkpoint(origin, 1, ROOT), *parse_signer_key(skey))
    with pytest.raises(SignatureError):
        open_note(note, other_vkey)
    # A verifier key forged to carry the signer's key ID but another public key.
    good = parse_verifier_key(verifier_key(origin, parse_signer_key(skey)[1].public_key()))
    other = parse_verifier_key(other_vkey)
    forged = type(good)(good.name, good.key_id, other.public_key)
    with pytest.raises(SignatureError, match="invalid signature"):
        open_note(note, forged)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n42\n", "\n43\n"),
        ("\n42\n", "\n4\n"),
        ("chainlog.local", "chainlog.locaI"),
        ("AAEC", "AAED"),
    ],
)
def test_altered_body_fails(old: str, new: str) -> None:
    origin = workspace_origin(WS)
    priv = Ed25519PrivateKey.generate()
    note = sign_note(format_checkpoint(origin, 42, ROOT), origin, priv)
    assert old in note.split("\n\n")[0]
    altered = note.split("\n\n")[0].replace(old, new, 1) + "\n\n" + note.split("\n\n")[1]
    with pytest.raises(SignatureError):
        open_note(altered, verifier_key(origin, priv.public_key()))


def test_altered_signature_and_extra_signatures() -> None:
    origin = workspace_origin(WS)
    priv, witness = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    vkey = verifier_key(origin, priv.public_key())
    body = format_checkpoint(origin, 7, ROOT)
    note = sign_note(body, origin, priv)
    line = note.split("\n\n")[1]
    raw = bytearray(base64.b64decode(line.split(" ")[-1]))
    raw[10] ^= 1
    with pytest.raises(SignatureError):
        open_note(f"{body}\n— {origin} {base64.b64encode(raw).decode()}\n", vkey)
    cosig = sign_note(body, "witness.example/w1", witness).split("\n\n")[1]
    assert open_note(body + "\n" + cosig + line, vkey) == body  # unknown key ignored
    assert (
        open_note(
            body + "\n" + cosig + line, verifier_key("witness.example/w1", witness.public_key())
        )
        == body
    )


def test_checkpoint_over_a_frontier_root() -> None:
    rng = CompactRange()
    for i in range(11):
        rng.append(event_leaf_hash(i.to_bytes(32, "big")))
    origin = workspace_origin(WS)
    priv = Ed25519PrivateKey.generate()
    cp = Checkpoint(origin, rng.size, rng.root(), ("chainlog-ext value",))
    note = sign_checkpoint(cp, origin, priv)
    assert open_checkpoint(note, verifier_key(origin, priv.public_key())) == cp


# ---------------------------------------------------------------------------
# The body, strictly


def test_format_checkpoint_bytes() -> None:
    assert format_checkpoint("a.example/log", 0, bytes(32)) == (
        "a.example/log\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    )
    assert format_checkpoint("o", 5, ROOT, ("x y", "z")).endswith("=\nx y\nz\n")
    assert parse_checkpoint(format_checkpoint("o", 5, ROOT, ("x y", "z"))).extensions == (
        "x y",
        "z",
    )


R64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"o\n5\n{R64}",  # no final newline
        "o\n5\n",
        f"\n5\n{R64}\n",  # empty origin
        f"o\n05\n{R64}\n",  # leading zero
        f"o\n-5\n{R64}\n",
        f"o\n+5\n{R64}\n",
        f"o\n 5\n{R64}\n",
        f"o\n٥\n{R64}\n",  # a non-ASCII digit
        f"o\n5\n{R64[:-1]}\n",
        f"o\n5\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"o\n5\n{R64[:-2]}x=\n",  # non-canonical base64 (trailing bits)
        f"o\n5\n{R64}\n\n",  # empty extension line
        f"o\n5\n{R64}\n\next\n",
    ],
)
def test_parse_checkpoint_rejects(text: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(text)


def test_format_and_sign_refuse_bad_input() -> None:
    priv = Ed25519PrivateKey.generate()
    for args in [("", 1, ROOT), ("a\nb", 1, ROOT), ("o", -1, ROOT), ("o", 1, ROOT[:31])]:
        with pytest.raises(NoteError):
            format_checkpoint(*args)
    with pytest.raises(NoteError):
        format_checkpoint("o", 1, ROOT, ("",))
    with pytest.raises(NoteError):
        sign_note("no newline", "o", priv)
    with pytest.raises(NoteError):
        sign_note("tab\there\n", "o", priv)
    for name in ["", "a b", "a+b", "a\u00a0b"]:
        with pytest.raises(NoteError):
            sign_note("x\n", name, priv)
        with pytest.raises(NoteError):
            verifier_key(name, priv.public_key())
    with pytest.raises(NoteError):
        workspace_origin("has space")
    with pytest.raises(NoteError):
        sign_note("x\n", "o", b"short")
