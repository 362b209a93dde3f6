"""The evidence pack format: which files, what they mean, how the zip is written and signed.

This module is the contract between the exporter (which gathers a period's
records and calls :func:`write_pack`) and every verifier (``chainlog
verify-pack``, ``libs/common/packverify.py``, and the standalone script of
``docs/evidence-packs.md``). It imports only wire formats, never server code.

A pack is a zip of the data files (:data:`DATA_FILES` and one signed
checkpoint note per tree size, ``checkpoints/<size>.txt``), the files the
builder adds (``README.txt``, ``controls.json``, ``log-key.txt``), and last
``manifest.json`` and ``manifest.sig``:

* ``manifest.json`` lists every other file with its size and SHA-256 (of
  the bytes as stored in the zip, uncompressed), ends with a newline and
  holds no control character but newline.
* ``manifest.sig`` is the signature block of a C2SP signed note whose text
  is ``manifest.json``, exactly: one line ``— <key name> <base64(key ID ||
  Ed25519 signature)>``, the signature over the bytes of ``manifest.json``.
  ``manifest.json``, a blank line, then ``manifest.sig`` is therefore a
  signed note that any signed-note verifier (``checkpoint.open_note``, Go's
  ``golang.org/x/mod/sumdb/note``) opens with the log's verifier key.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.common.checkpoint import sign_note, verifier_key

FORMAT = "chainlog-evidence-pack/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
CHUNK = 1 << 20

#: What each file holds; README.txt repeats it for the reader of the zip.
FILES: dict[str, str] = {
    "events.csv": "every event of the period (occurred_at in [from, to)), in the export CSV format",
    "events.jsonl": "the same events as JSON Lines, exactly as the API serves them",
    "admin-trail.csv": "the admin audit events of the period (actions admin.*), export CSV",
    "verification.json": "the chain verified over the seq range of the period's events when"
    " the pack was built, and the scheduled verification runs of the period",
    "checkpoints.json": "the signed checkpoints of the period and the first that covers its"
    " last event, an inclusion proof of that event and a consistency proof",
    "alert-rules.json": "the alert rules in force during the period (deleted ones with deleted_at)",
    "alerts.json": "the alerts raised in the period, each delivery with its status and attempts",
    "log-streams.json": "each log stream of the period with its delivery statistics (no secret)",
    "access-review.json": "API keys (name, prefix, scopes, created, last used, revoked),"
    " members and the IP allowlist when the pack was built (no key hash, no secret)",
    "controls.json": "for each SOC 2 control requested, which files are its evidence",
    "log-key.txt": "a copy of the log's verifier key; check it against the one you pinned",
    "README.txt": "this file",
}
#: The files the exporter gathers; the builder adds the other three.
DATA_FILES = tuple(n for n in FILES if n not in ("controls.json", "log-key.txt", "README.txt"))
CHECKPOINT_NOTE = re.compile(r"checkpoints/(0|[1-9][0-9]*)\.txt")


def checkpoint_file(size: int) -> str:
    return f"checkpoints/{size}.txt"


@dataclass(frozen=True, slots=True)
class Control:
    title: str
    files: tuple[str, ...]
    why: str


_EVENTS = ("events.csv", "events.jsonl")
#: SOC 2 common criteria (2017 Trust Services Criteria) and the files that evidence them.
CONTROLS: dict[str, Control] = {
    "CC1": Control(
        "Control environment",
        ("access-review.json", "admin-trail.csv"),
        "who holds which role and key, and every management action taken with them",
    ),
    "CC2": Control(
        "Communication and information",
        (*_EVENTS, "log-streams.json", "alerts.json"),
        "a complete, verifiable record of the period, and where it was delivered",
    ),
    "CC3": Control(
        "Risk assessment",
        ("alert-rules.json", "alerts.json"),
        "the risks the workspace watches for, and what the rules found",
    ),
    "CC4": Control(
        "Monitoring activities",
        ("verification.json", "checkpoints.json", "alert-rules.json", "alerts.json"),
        "ongoing evaluations: scheduled chain verification, signed checkpoints, alerting",
    ),
    "CC5": Control(
        "Control activities",
        ("alert-rules.json", "access-review.json", "admin-trail.csv"),
        "the controls configured (rules, keys, roles, allowlist) and every change to them",
    ),
    "CC6": Control(
        "Logical and physical access controls",
        ("access-review.json", "admin-trail.csv", *_EVENTS),
        "who may access what (keys, scopes, members, allowlist), changes to access,"
        " and the access events recorded",
    ),
    "CC7": Control(
        "System operations",
        ("alerts.json", "alert-rules.json", "verification.json", "log-streams.json", *_EVENTS),
        "anomalies detected and alerted, the record's integrity checked,"
        " and events forwarded to the SIEM",
    ),
    "CC8": Control(
        "Change management",
        ("admin-trail.csv", "alert-rules.json", "log-streams.json"),
        "every configuration change with its before and after, by whom and when",
    ),
    "CC9": Control(
        "Risk mitigation",
        ("log-streams.json", "checkpoints.json", "verification.json"),
        "copies kept outside (log streams, signed checkpoints) and proof the record is intact",
    ),
}


def controls_document(controls: list[str]) -> dict[str, Any]:
    """``controls.json``: each requested control, in CC order, with its evidence files."""
    return {
        "framework": "SOC 2, Trust Services Criteria (2017), common criteria",
        "controls": [
            {
                "id": c,
                "title": CONTROLS[c].title,
                "evidence": list(CONTROLS[c].files),
                "why": CONTROLS[c].why,
            }
            for c in CONTROLS
            if c in controls
        ],
    }


@dataclass(frozen=True, slots=True)
class PackMeta:
    id: str
    workspace_id: str
    period_from: str
    period_to: str
    controls: list[str]
    created_at: str


def json_bytes(doc: Any) -> bytes:
    """How every JSON file of a pack is written: indented UTF-8, newline-terminated."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def readme(meta: PackMeta, vkey: str) -> bytes:
    lines = [
        "Chainlog evidence pack",
        "",
        f"workspace   {meta.workspace_id}",
        f"period      {meta.period_from} (inclusive) to {meta.period_to} (exclusive)",
        f"controls    {', '.join(meta.controls)}",
        f"created     {meta.created_at}",
        f"pack        {meta.id}",
        "",
        "Files",
        "",
        *(f"  {name:<20} {what}" for name, what in FILES.items()),
        f"  {'checkpoints/N.txt':<20} the signed checkpoint note of tree size N",
        f"  {MANIFEST:<20} every other file with its size and SHA-256",
        f"  {SIGNATURE:<20} the log key's Ed25519 signature of manifest.json",
        "",
        "Verify it",
        "",
        "  Pin the log's verifier key from a source you trust (GET /api/v1/log-key,",
        "  chainlog log-key, or a copy kept earlier); the one in log-key.txt is",
        f"  {vkey}",
        "  Then: chainlog verify-pack THIS.zip --key KEY",
        "  It checks the signature of manifest.json, every file's size and SHA-256,",
        "  that no file is missing or extra, every event's hash and link, and every",
        "  checkpoint's signature. Without Chainlog: docs/evidence-packs.md has a",
        "  standalone script (Python and the cryptography package).",
        "",
    ]
    return "\n".join(lines).encode()


def _zip_time(created_at: str) -> tuple[int, int, int, int, int, int]:
    t = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    return (max(t.year, 1980), t.month, t.day, t.hour, t.minute, t.second)


def _add(zf: zipfile.ZipFile, name: str, data: bytes | Path, when: Any) -> dict[str, Any]:
    """Write one member, hashing what goes in; its manifest entry."""
    info = zipfile.ZipInfo(name, when)
    info.compress_type = zipfile.ZIP_DEFLATED
    digest, size = hashlib.sha256(), 0
    large = isinstance(data, Path) and data.stat().st_size >= zipfile.ZIP64_LIMIT
    with zf.open(info, "w", force_zip64=large) as out:
        if isinstance(data, bytes):
            digest.update(data)
            size = len(data)
            out.write(data)
        else:
            with open(data, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    return {"name": name, "size": size, "sha256": digest.hexdigest()}


def write_pack(
    path: Path,
    files: Mapping[str, bytes | Path],
    meta: PackMeta,
    key_name: str,
    private_key: Ed25519PrivateKey,
) -> tuple[int, str]:
    """Write the pack to ``path``: the gathered ``files``, the builder's three, the signed manifest.

    ``files`` MUST hold every name of :data:`DATA_FILES` and may hold
    checkpoint notes (``checkpoints/<size>.txt``); nothing else. Returns the
    zip's size and SHA-256, hashed as it is written (never read back).
    """
    unknown = [n for n in files if n not in DATA_FILES and not CHECKPOINT_NOTE.fullmatch(n)]
    missing = [n for n in DATA_FILES if n not in files]
    if unknown or missing:
        raise ValueError(f"not a pack's files: unknown {unknown}, missing {missing}")
    vkey = verifier_key(key_name, private_key.public_key())
    added: dict[str, bytes | Path] = {
        "controls.json": json_bytes(controls_document(meta.controls)),
        "log-key.txt": (vkey + "\n").encode(),
        "README.txt": readme(meta, vkey),
    }
    from libs.common.storage import HashingWriter  # here: verifiers need no storage client

    when = _zip_time(meta.created_at)
    # Not seekable: each member's sizes follow it in a data descriptor.
    out = HashingWriter(open(path, "wb"))  # noqa: SIM115 (closed below)
    try:
        with zipfile.ZipFile(out, "w", allowZip64=True) as zf:
            entries = [_add(zf, n, d, when) for n, d in sorted({**files, **added}.items())]
            manifest = json_bytes(
                {
                    "format": FORMAT,
                    "id": meta.id,
                    "workspace_id": meta.workspace_id,
                    "from": meta.period_from,
                    "to": meta.period_to,
                    "controls": meta.controls,
                    "created_at": meta.created_at,
                    "files": entries,
                }
            )
            _add(zf, MANIFEST, manifest, when)
            _add(zf, SIGNATURE, sign_manifest(manifest, key_name, private_key), when)
    finally:
        out.close()
    return out.size, out.digest.hexdigest()


def sign_manifest(manifest: bytes, key_name: str, private_key: Ed25519PrivateKey) -> bytes:
    """``manifest.sig``: the signature block of the signed note whose text is ``manifest``."""
    text = manifest.decode()
    return sign_note(text, key_name, private_key)[len(text) + 1 :].encode()


def as_note(manifest: bytes, signature: bytes) -> bytes:
    """The signed note that ``manifest.json`` and ``manifest.sig`` make together."""
    return manifest + b"\n" + signature
