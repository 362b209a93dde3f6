"""Offline verification of an evidence pack with nothing but the zip and the log's key.

The client side of ``docs/evidence-packs.md``, used by ``chainlog
verify-pack``. Like ``proofcheck`` it imports only wire formats
(``packformat``, ``checkpoint``, ``exportverify``), never server code.

In order, stopping at the first three when they fail (nothing after them
can be trusted):

1. the zip reads, and holds ``manifest.json`` and ``manifest.sig`` once;
2. the manifest's signature verifies with the pinned key (``bad_signature``);
3. the manifest is one of this format (``manifest_invalid``);

then, reporting every problem found:

4. no file is missing (``file_missing``), extra (``file_extra``) or twice
   in the zip (``file_duplicate``); each file has the manifest's size and
   SHA-256 (``size_mismatch``, ``sha256_mismatch``);
5. ``log-key.txt`` is the pinned key (``log_key_mismatch``);
6. ``events.csv``, ``events.jsonl`` and ``admin-trail.csv`` verify as
   filtered exports (``events_broken``), of the manifest's workspace
   (``workspace_mismatch``), and the CSV and JSON Lines hold the same chain
   (``events_disagree``);
7. every checkpoint note opens with the key, names the workspace's log and
   matches ``checkpoints.json`` (``checkpoint_invalid``); the inclusion
   proof of the last event (``not_included``) and the consistency proof
   from the first checkpoint to the last (``inconsistent``) verify;
8. ``verification.json`` found the chain intact (``chain_broken``) and ends
   where the events end (``verification_mismatch``); ``controls.json``
   names the requested controls and files of the pack (``controls_mismatch``).

A JSON file that is not what the format says is ``malformed``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from libs.common import packformat as fmt
from libs.common.checkpoint import NoteError, VerifierKey, open_note, parse_verifier_key
from libs.common.exportverify import ExportVerification, verify_export
from libs.common.proofcheck import check_consistency, check_inclusion, check_signed

Code = Literal[
    "unreadable",
    "file_duplicate",
    "manifest_missing",
    "bad_signature",
    "manifest_invalid",
    "file_missing",
    "file_extra",
    "size_mismatch",
    "sha256_mismatch",
    "log_key_mismatch",
    "events_broken",
    "workspace_mismatch",
    "events_disagree",
    "checkpoint_invalid",
    "not_included",
    "inconsistent",
    "chain_broken",
    "verification_mismatch",
    "controls_mismatch",
    "malformed",
]
#: The event files, each verified as a filtered export.
EVENT_FILES = ("events.csv", "events.jsonl", "admin-trail.csv")
#: manifest.sig is one signature line; anything longer is not ours.
_MAX_SIGNATURE = 64 << 10


@dataclass(frozen=True, slots=True)
class Problem:
    code: Code
    file: str | None
    detail: str


@dataclass(slots=True)
class PackVerification:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    #: Per event file: rows, seq range, head hash, breaks (exportverify's result).
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints_checked: int = 0

    @property
    def valid(self) -> bool:
        return not self.problems

    def problem(self, code: Code, file: str | None, detail: str) -> None:
        self.problems.append(Problem(code, file, detail))

    def as_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, **asdict(self)}

    def report(self) -> str:
        m = self.manifest or {}
        out = [f"{'VALID' if self.valid else 'INVALID'}: evidence pack {m.get('id') or '-'}"]
        if m:
            out += [
                f"  workspace        {m.get('workspace_id')}",
                f"  period           {m.get('from')} to {m.get('to')}",
                f"  controls         {', '.join(map(str, m.get('controls') or []))}",
                f"  files            {len(m.get('files') or [])} listed in the signed manifest",
            ]
        for name, ev in self.events.items():
            out.append(
                f"  {name:<16} {ev['rows_checked']} rows, seq {ev['first_seq']} to"
                f" {ev['last_seq']}, head hash {ev['head_hash'] or '-'}"
            )
        if self.checkpoints_checked:
            out.append(f"  checkpoints      {self.checkpoints_checked} signed notes checked")
        if self.problems:
            out.append(f"problems ({len(self.problems)}):")
        out += [f"  {p.file or 'pack'}: {p.code}: {p.detail}" for p in self.problems]
        return "\n".join(out + [f"note: {n}" for n in self.notes])


def verify_pack(path: str | Path, key: str | VerifierKey) -> PackVerification:
    """Verify the pack at ``path`` against the pinned verifier ``key`` (a string or parsed)."""
    vkey = parse_verifier_key(key) if isinstance(key, str) else key
    result = PackVerification()
    try:
        with zipfile.ZipFile(path) as zf:
            _verify(zf, vkey, result)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        result.problem("unreadable", None, f"not a readable zip: {exc}")
    return result


def _verify(zf: zipfile.ZipFile, vkey: VerifierKey, result: PackVerification) -> None:
    names = zf.namelist()
    twice = sorted(n for n, times in Counter(names).items() if times > 1)
    for name in twice:
        result.problem("file_duplicate", name, "the zip holds this name more than once")
    if fmt.MANIFEST not in names or fmt.SIGNATURE not in names:
        result.problem("manifest_missing", None, "manifest.json or manifest.sig is not in the zip")
        return
    if twice:
        return  # which copy is the one signed cannot be told
    raw = zf.read(fmt.MANIFEST)
    signature = _read(zf, fmt.SIGNATURE, _MAX_SIGNATURE)
    try:
        open_note(fmt.as_note(raw, signature or b""), vkey)
    except NoteError as exc:
        result.problem("bad_signature", fmt.MANIFEST, f"{exc} (manifest.json with manifest.sig)")
        return
    manifest = _manifest(raw, result)
    if manifest is None:
        return
    result.manifest = manifest
    listed = {f["name"]: f for f in manifest["files"]}
    present = set(names) - {fmt.MANIFEST, fmt.SIGNATURE}
    for name in sorted(set(listed) - present):
        result.problem("file_missing", name, "listed in the manifest, not in the zip")
    for name in sorted(present - set(listed)):
        result.problem("file_extra", name, "in the zip, not listed in the manifest")
    for name in [n for n in fmt.FILES if n not in listed]:
        result.problem("file_missing", name, "every pack holds it; the manifest does not list it")
    intact = {n for n in sorted(present & set(listed)) if _same(zf, listed[n], result)}
    _contents(zf, vkey, manifest, intact, result)


def _manifest(raw: bytes, result: PackVerification) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(raw)
        ok = (
            doc.get("format") == fmt.FORMAT
            and all(isinstance(doc.get(k), str) for k in ("workspace_id", "from", "to"))
            and isinstance(doc.get("controls"), list)
            and isinstance(doc.get("files"), list)
            and all(
                isinstance(f.get("name"), str)
                and type(f.get("size")) is int
                and isinstance(f.get("sha256"), str)
                for f in doc["files"]
            )
        )
    except (orjson.JSONDecodeError, AttributeError):
        ok = False
    if not ok:
        result.problem("manifest_invalid", fmt.MANIFEST, f"not a {fmt.FORMAT} manifest")
        return None
    return doc  # type: ignore[no-any-return]


def _read(zf: zipfile.ZipFile, name: str, limit: int) -> bytes | None:
    """A member's bytes, or None if it has more than ``limit``."""
    with zf.open(name) as f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def _same(zf: zipfile.ZipFile, entry: dict[str, Any], result: PackVerification) -> bool:
    """Does the member have the manifest's size and SHA-256? Read once, never past the size."""
    name, size = entry["name"], entry["size"]
    digest, seen = hashlib.sha256(), 0
    with zf.open(name) as f:
        while chunk := f.read(min(fmt.CHUNK, size + 1 - seen)):
            digest.update(chunk)
            seen += len(chunk)
            if seen > size:
                break
    if seen != size:
        found = f"more than {size}" if seen > size else str(seen)
        result.problem("size_mismatch", name, f"{found} bytes, the manifest says {size}")
        return False
    if digest.hexdigest() != entry["sha256"]:
        detail = f"SHA-256 {digest.hexdigest()}, the manifest says {entry['sha256']}"
        result.problem("sha256_mismatch", name, detail)
        return False
    return True


def _contents(
    zf: zipfile.ZipFile,
    vkey: VerifierKey,
    manifest: dict[str, Any],
    intact: set[str],
    result: PackVerification,
) -> None:
    """What the files say, read from those whose bytes the manifest vouches for."""

    def doc(name: str) -> Any:
        if name not in intact:
            return None
        try:
            return orjson.loads(zf.read(name))
        except orjson.JSONDecodeError as exc:
            result.problem("malformed", name, f"not JSON: {exc}")
            return None

    if "log-key.txt" in intact and not _is_key(zf.read("log-key.txt"), vkey):
        result.problem("log_key_mismatch", "log-key.txt", "not the key the pack was checked with")
    events = _events(zf, intact, manifest["workspace_id"], result)
    checks: list[tuple[str, Callable[[Any], None]]] = [
        (
            "checkpoints.json",
            lambda d: _checkpoints(zf, vkey, manifest["workspace_id"], d, events, intact, result),
        ),
        ("verification.json", lambda d: _verification(d, events, result)),
        ("controls.json", lambda d: _controls(d, manifest["controls"], result)),
    ]
    for name, check in checks:
        parsed = doc(name)
        if parsed is None:
            continue
        try:
            check(parsed)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            result.problem("malformed", name, f"not as the format says: {exc!r}")


def _is_key(text: bytes, vkey: VerifierKey) -> bool:
    try:
        return parse_verifier_key(text.decode("utf-8").strip()) == vkey
    except (NoteError, UnicodeDecodeError):
        return False


def _events(
    zf: zipfile.ZipFile, intact: set[str], workspace_id: str, result: PackVerification
) -> ExportVerification | None:
    """Verify each event file as a filtered export; the JSON Lines result, or None."""
    checked: dict[str, ExportVerification] = {}
    scratch = Path(tempfile.mkdtemp(prefix="chainlog-pack-"))
    try:
        for name in EVENT_FILES:
            if name not in intact:
                continue
            target = scratch / name
            with zf.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, fmt.CHUNK)
            ev = checked[name] = verify_export([target], complete=False)
            result.events[name] = {
                k: ev.as_dict()[k] for k in ("rows_checked", "first_seq", "last_seq", "head_hash")
            }
            for b in ev.breaks[:5]:
                result.problem(
                    "events_broken", name, f"line {b.line} seq {b.seq}: {b.type}: {b.detail}"
                )
            if len(ev.breaks) > 5 or ev.truncated:
                result.problem("events_broken", name, "more breaks: run chainlog verify-export")
            if ev.workspace_id not in (None, workspace_id):
                detail = f"events of workspace {ev.workspace_id}, the manifest names {workspace_id}"
                result.problem("workspace_mismatch", name, detail)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    csv, jsonl = checked.get("events.csv"), checked.get("events.jsonl")
    if csv is not None and jsonl is not None and _summary(csv) != _summary(jsonl):
        detail = f"events.csv {_summary(csv)}, events.jsonl {_summary(jsonl)}"
        result.problem("events_disagree", "events.csv", detail)
    return jsonl


def _summary(ev: ExportVerification) -> tuple[int, int | None, int | None, str | None]:
    return ev.rows_checked, ev.first_seq, ev.last_seq, ev.head_hash


def _checkpoints(
    zf: zipfile.ZipFile,
    vkey: VerifierKey,
    workspace_id: str,
    doc: dict[str, Any],
    events: ExportVerification | None,
    intact: set[str],
    result: PackVerification,
) -> None:
    name = "checkpoints.json"
    notes: dict[int, bytes] = {}
    last_size = -1
    for entry in doc["checkpoints"]:
        file = fmt.checkpoint_file(entry["size"])
        if file not in intact:
            result.problem("checkpoint_invalid", name, f"{file} is not an intact file of the pack")
            continue
        note = zf.read(file)
        opened = check_signed(note, vkey)
        cp = opened.checkpoint
        if cp is None:
            result.problem("checkpoint_invalid", file, f"{opened.code}: {opened.reason}")
            continue
        result.checkpoints_checked += 1
        if not cp.origin.endswith("/" + workspace_id):
            result.problem(
                "checkpoint_invalid", file, f"of the log {cp.origin}, not this workspace"
            )
        elif cp.size != entry["size"] or cp.size <= last_size:
            result.problem("checkpoint_invalid", file, "size out of order or not the one listed")
        else:
            notes[cp.size] = note
            last_size = cp.size
    covering = doc["covering"]
    if events is None or events.last_seq is None:
        pass  # nothing to cover, or events.jsonl is already reported
    elif covering is None or covering["size"] not in notes:
        result.notes.append(
            f"no checkpoint in the pack covers its last event (seq {events.last_seq})"
        )
    elif covering["seq"] != events.last_seq:
        detail = (
            f"the inclusion proof is of seq {covering['seq']}, the events end at {events.last_seq}"
        )
        result.problem("not_included", name, detail)
    else:
        _inclusion(zf, covering, notes[covering["size"]], vkey, result)
    proof = doc["consistency"]
    if proof is not None and proof["first"] in notes and proof["second"] in notes:
        first, second = notes[proof["first"]], notes[proof["second"]]
        checked = check_consistency(first, second, proof["proof"], vkey)
        if not checked.ok:
            result.problem("inconsistent", name, f"{checked.code}: {checked.reason}")
    elif len(notes) > 1:
        result.notes.append("no consistency proof between the pack's checkpoints")


def _inclusion(
    zf: zipfile.ZipFile,
    covering: dict[str, Any],
    note: bytes,
    vkey: VerifierKey,
    result: PackVerification,
) -> None:
    """The proof that the pack's last event is in the covering checkpoint's tree."""
    seq = covering["seq"]
    served = next(e for e in _jsonl(zf) if e.get("seq") == seq)  # the events end at it
    checked = check_inclusion(served, seq, covering["audit_path"], note, vkey)
    if not checked.ok:
        result.problem("not_included", "checkpoints.json", f"{checked.code}: {checked.reason}")


def _jsonl(zf: zipfile.ZipFile) -> Iterator[dict[str, Any]]:
    with zf.open("events.jsonl") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


def _verification(
    doc: dict[str, Any], events: ExportVerification | None, result: PackVerification
) -> None:
    run = doc["range"]
    if run is None:
        return
    name = "verification.json"
    if run["valid"] is not True:
        result.problem("chain_broken", name, f"the chain has breaks: {run['breaks']}")
    end = (run["last_seq"], run["head_hash"])
    if events is not None and end != (events.last_seq, events.head_hash):
        detail = (
            f"verified to seq {end[0]} ({end[1]}),"
            f" the events end at {events.last_seq} ({events.head_hash})"
        )
        result.problem("verification_mismatch", name, detail)


def _controls(doc: dict[str, Any], requested: list[str], result: PackVerification) -> None:
    named = [c["id"] for c in doc["controls"]]
    unknown = [f for c in doc["controls"] for f in c["evidence"] if f not in fmt.FILES]
    if sorted(named) != sorted(requested) or unknown:
        detail = f"names {named} and files {unknown}, the manifest requests {requested}"
        result.problem("controls_mismatch", "controls.json", detail)
