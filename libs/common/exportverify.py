"""Offline verification of export and archive files, read as one chain.

``verify_export`` reads CSV, JSON Lines and their gzipped forms (the formats
of ``libs/common/exportformat.py``) one row at a time, so a file of any size
verifies in constant memory. The files are one sequence in the order given:
a workspace's archives followed by a later export verify as one chain.
``docs/exports.md`` explains the result to an operator.

Each row is checked in this order, and reports at most one break about
itself (plus a ``gap`` for the rows missing before it):

1. it reads back into the hashed event, else ``unreadable``;
2. the event's RFC 8785 SHA-256 is the row's ``hash``, else ``hash_mismatch``;
3. it names the first row's workspace, else ``workspace_mismatch`` (and it
   is left out of the chain);
4. its ``seq`` is above every earlier one, else ``out_of_order``;
5. a jump in ``seq`` is a ``gap``, or an expected gap in a filtered export,
   and the link over it cannot be checked;
6. its ``prev_hash`` is the previous row's ``hash``, else ``chain_break``;
   the first row links to 64 zeros (``seq`` 1) or to an anchor given for
   the ``seq`` before it.

Rows at or below a given anchor are "held islands" (docs/legal-holds.md):
events a legal hold kept when retention removed their neighbours. Each is
checked on its own (1 to 4, and 6 where the row before it is its
neighbour); the jumps between them are neither gaps nor breaks, they are
counted under ``held``, and the first row above the anchor links to the
anchor's hash.

As in ``chain.Verifier``, a row's claimed hash becomes "the previous" one
even when the row is broken, so one altered row is one break.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson
import rfc8785

from libs.common.chain import ZERO_HASH, canonical, event_hash
from libs.common.exportformat import RowError, csv_decoder, event_from_line

#: The formats, told by the end of a file's name (longest first).
FORMATS = ("csv.gz", "jsonl.gz", "csv", "jsonl")
MANIFEST_SUFFIX = ".manifest.json"
#: Expected gaps listed one by one; past this many they are only counted.
MAX_LISTED_GAPS = 1000
#: Held islands listed by seq; past this many they are only counted.
MAX_LISTED_HELD = 1000
#: The largest CSV cell read: an event's targets may hold 50 metadata objects
#: of 64 KiB each, and quoting can double a cell.
_MAX_CELL = 64 << 20

BreakType = Literal[
    "unreadable",
    "hash_mismatch",
    "workspace_mismatch",
    "out_of_order",
    "gap",
    "chain_break",
    "manifest_mismatch",
]

#: A row as read: the physical line where it starts; the event, or None if
#: the row is unreadable; the claimed hash, or why the row is unreadable.
Row = tuple[int, dict[str, Any] | None, str]


class NotAnExport(ValueError):
    """A file name of none of the export formats (a usage error)."""


def export_format(path: str | Path) -> str:
    name = Path(path).name
    for fmt in FORMATS:
        if name.lower().endswith("." + fmt):
            return fmt
    raise NotAnExport(f"{name}: not an export (.csv, .jsonl, .csv.gz or .jsonl.gz)")


def manifest_path(path: Path) -> Path:
    """Where a file's manifest sits: ``<name without .jsonl.gz>.manifest.json``."""
    return path.with_name(path.name[: -len(export_format(path)) - 1] + MANIFEST_SUFFIX)


@dataclass(frozen=True, slots=True)
class Anchor:
    """The event just before the files, from a record trusted elsewhere (a
    retention anchor, the head of an earlier verification)."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        seq, _, digest = text.partition(":")
        digest = digest.lower()
        hex64 = len(digest) == 64 and not digest.strip("0123456789abcdef")
        if not (seq.isascii() and seq.isdigit() and hex64):
            raise ValueError(f"an anchor is SEQ:HASH (a seq and 64 hex digits), not {text!r}")
        return cls(int(seq), digest)


@dataclass(frozen=True, slots=True)
class Break:
    file: str
    line: int | None
    seq: int | None
    type: BreakType
    detail: str
    expected: str | None = None
    actual: str | None = None


@dataclass(slots=True)
class FileSummary:
    name: str
    format: str
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_prev_hash: str | None = None
    last_hash: str | None = None
    #: The manifest checked against the file, when one sits next to it.
    manifest: str | None = None


@dataclass(slots=True)
class ExportVerification:
    complete: bool = True
    max_breaks: int = 100
    workspace_id: str | None = None
    files: list[FileSummary] = field(default_factory=list)
    rows_checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    breaks: list[Break] = field(default_factory=list)
    truncated: bool = False
    #: Filtered exports: the seq ranges not in the files (the first
    #: ``MAX_LISTED_GAPS``), how many ranges, how many seqs in all.
    expected_gaps: list[tuple[int, int]] = field(default_factory=list)
    expected_gap_count: int = 0
    expected_missing: int = 0
    #: Rows at or below the anchor, held by a legal hold: how many, the first seqs.
    held: int = 0
    held_seqs: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.breaks and not self.truncated

    def add(self, brk: Break) -> None:
        if len(self.breaks) < self.max_breaks:
            self.breaks.append(brk)
        else:
            self.truncated = True

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["breaks_truncated"] = doc.pop("truncated")
        return {"valid": self.valid, **doc}

    def report(self) -> str:
        """The result as a person reads it."""
        kind = "complete export" if self.complete else "filtered export"
        out = [
            f"{'VALID' if self.valid else 'BROKEN'}: {self.rows_checked} rows checked"
            f" in {len(self.files)} file(s), {kind}",
            f"  workspace   {self.workspace_id or '-'}",
            f"  seq         {_dash(self.first_seq)} to {_dash(self.last_seq)}",
            f"  head hash   {self.head_hash or '-'}",
        ]
        for f in self.files:
            checked = f", manifest {f.manifest} checked" if f.manifest else ""
            out.append(
                f"  file        {f.name}: {f.rows} rows,"
                f" seq {_dash(f.first_seq)} to {_dash(f.last_seq)}{checked}"
            )
        if self.expected_gap_count:
            shown = [str(a) if a == b else f"{a}-{b}" for a, b in self.expected_gaps[:20]]
            more = ", ..." if self.expected_gap_count > 20 else ""
            out.append(
                f"expected gaps: {self.expected_gap_count} ranges, {self.expected_missing} seqs"
                f" not in this filtered export: {', '.join(shown)}{more}"
            )
        if self.held:
            seqs = ", ".join(map(str, self.held_seqs[:20])) + (", ..." if self.held > 20 else "")
            out.append(
                f"held: {self.held} rows at or below the anchor (legal holds),"
                f" each checked on its own: seq {seqs}"
            )
        if self.breaks:
            out.append(f"breaks ({len(self.breaks)}):")
        for b in self.breaks:
            where = b.file if b.line is None else f"{b.file}:{b.line}"
            seq = "" if b.seq is None else f" seq {b.seq}"
            out.append(f"  {where}{seq}: {b.type}: {b.detail}")
            if b.expected is not None or b.actual is not None:
                out += [f"      expected {b.expected}", f"      actual   {b.actual}"]
        if self.truncated:
            out.append(f"  (stopped listing at {self.max_breaks} breaks: there are more)")
        return "\n".join(out + [f"note: {n}" for n in self.notes])


def verify_export(
    paths: Iterable[str | Path],
    *,
    complete: bool = True,
    anchor: Anchor | None = None,
    max_breaks: int = 100,
) -> ExportVerification:
    """Verify ``paths``, in this order, as one chain of one workspace.

    ``complete=False`` is for a filtered export: a jump in ``seq`` is then an
    expected gap, not a break. A ``.manifest.json`` among ``paths`` is
    skipped (manifests are read next to their files). Raises
    ``NotAnExport`` before reading anything if a name is of no format, and
    ``OSError`` for a file that cannot be opened.
    """
    result = ExportVerification(complete=complete, max_breaks=max_breaks)
    files = []
    for p in map(Path, paths):
        if p.name.lower().endswith(MANIFEST_SUFFIX):
            result.notes.append(f"{p.name}: a manifest, checked next to its file")
        else:
            export_format(p)
            files.append(p)
    # Raised, never lowered: the process-wide default (128 KiB) is below an event's largest cell.
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_CELL))
    walk = _Walk(result, anchor)
    for path in files:
        walk.file(path)
    if not result.rows_checked:
        result.notes.append("no rows: nothing was verified")
    return result


class _Walk:
    """The state carried from row to row: MUST see the rows in file order."""

    def __init__(self, result: ExportVerification, anchor: Anchor | None) -> None:
        self.result = result
        self.anchor = anchor
        self.prev_seq: int | None = None
        self.prev_hash: str | None = None
        #: An unreadable row since the last one read: a jump may be that row, not a gap.
        self.unread = False

    def file(self, path: Path) -> None:
        fmt = export_format(path)
        manifest = manifest_path(path)
        f = FileSummary(path.name, fmt, manifest=manifest.name if manifest.is_file() else None)
        self.result.files.append(f)
        line, digest = 0, ""
        with ExitStack() as stack:
            raw = stack.enter_context(open(path, "rb"))
            digesting = _Digesting(raw) if f.manifest else None
            source: IO[bytes] = raw
            if fmt.endswith(".gz"):
                gz = gzip.GzipFile(fileobj=raw if digesting is None else digesting, mode="rb")
                source = cast(IO[bytes], stack.enter_context(gz))
            elif digesting is not None:
                source = io.BufferedReader(digesting)
            rows = _csv_rows(source) if fmt.startswith("csv") else _jsonl_rows(source)
            try:
                for line, event, claimed in rows:
                    f.rows += 1
                    if event is None:
                        self.unreadable(f, line, claimed)
                    else:
                        self.row(f, line, event, claimed)
            except _Unreadable as exc:
                self.unreadable(f, exc.line, exc.detail)
            except (OSError, EOFError, zlib.error) as exc:
                self.unreadable(f, line + 1, f"the file is cut or corrupt here: {exc}")
            if digesting is not None:
                digest = digesting.hexdigest()
        if f.manifest:
            self.manifest(f, manifest, digest)

    def unreadable(self, f: FileSummary, line: int, detail: str) -> None:
        self.result.rows_checked += 1
        self.unread = True
        self.result.add(Break(f.name, line, None, "unreadable", detail))

    def row(self, f: FileSummary, line: int, event: dict[str, Any], claimed: str) -> None:
        res = self.result
        seq = event.get("seq")
        if type(seq) is not int:
            self.unreadable(f, line, "seq is missing or not an integer")
            return
        try:
            recomputed = _hash_of(event, claimed)
        except (TypeError, ValueError) as exc:
            self.unreadable(f, line, f"not UTF-8, or refused by RFC 8785: {exc}")
            return
        res.rows_checked += 1
        ws, prev_hash = event.get("workspace_id"), event.get("prev_hash")
        if res.workspace_id is None and isinstance(ws, str):
            res.workspace_id = ws
        if f.first_seq is None:
            f.first_seq, f.first_prev_hash = seq, prev_hash
        f.last_seq, f.last_hash = seq, claimed
        ok = recomputed == claimed
        if not ok:
            detail = "the row hashes to the expected hash, not to the one it names"
            res.add(Break(f.name, line, seq, "hash_mismatch", detail, recomputed, claimed))
        elif ws != res.workspace_id:
            detail = "the row is of another workspace's chain"
            brk = Break(f.name, line, seq, "workspace_mismatch", detail, res.workspace_id, str(ws))
            res.add(brk)
            return
        prev = self.prev_seq
        anchor = self.anchor
        island = anchor is not None and seq <= anchor.seq
        expected: str | None
        if prev is None:
            expected = None if island else self.first_link(f, line, seq, prev_hash)
        elif seq <= prev:
            if ok:
                detail = f"seq {seq} comes after seq {prev}"
                res.add(Break(f.name, line, seq, "out_of_order", detail))
            return
        elif island:
            # what lies between islands was removed by retention, archived
            expected = self.prev_hash if seq == prev + 1 else None
        elif anchor is not None and prev <= anchor.seq:
            # the first row past the islands: the chain goes on from the anchor
            expected = anchor.hash
            if seq > anchor.seq + 1:
                self.gap(f, line, anchor.seq + 1, seq - 1)
                expected = None
        elif seq > prev + 1:
            self.gap(f, line, prev + 1, seq - 1)
            expected = None
        else:
            expected = self.prev_hash
        self.unread = False
        if ok and expected is not None and prev_hash != expected:
            detail = "its prev_hash is not the hash of the row before"
            res.add(Break(f.name, line, seq, "chain_break", detail, expected, str(prev_hash)))
        if island:
            res.held += 1
            if len(res.held_seqs) < MAX_LISTED_HELD:
                res.held_seqs.append(seq)
        self.prev_seq, self.prev_hash = seq, claimed
        if res.first_seq is None:
            res.first_seq = seq
        res.last_seq, res.head_hash = seq, claimed

    def first_link(self, f: FileSummary, line: int, seq: int, prev_hash: Any) -> str | None:
        """What the first row's prev_hash must be, when anything says."""
        anchor = self.anchor
        if anchor is not None and anchor.seq == seq - 1:
            return anchor.hash
        if anchor is not None and anchor.seq < seq - 1:
            self.gap(f, line, anchor.seq + 1, seq - 1)
            return None
        if seq == 1:
            return ZERO_HASH
        self.result.notes.append(
            f"first link unchecked (no anchor): seq {seq} names prev_hash {prev_hash};"
            f" the anchor {seq - 1}:<hash of seq {seq - 1}> checks it"
        )
        return None

    def gap(self, f: FileSummary, line: int, first: int, last: int) -> None:
        res = self.result
        if self.unread:
            return  # the unreadable rows may be these: already a break
        if res.complete:
            span = f"seq {first}" if first == last else f"seq {first} to {last}"
            detail = f"{span} missing ({last - first + 1} rows)"
            res.add(Break(f.name, line, first, "gap", detail))
            return
        res.expected_gap_count += 1
        res.expected_missing += last - first + 1
        if len(res.expected_gaps) < MAX_LISTED_GAPS:
            res.expected_gaps.append((first, last))

    def manifest(self, f: FileSummary, path: Path, sha256: str) -> None:
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            doc = str(exc)
        if not isinstance(doc, dict):
            detail = f"not a JSON object: {doc}"
            self.result.add(Break(path.name, None, None, "manifest_mismatch", detail))
            return
        has: dict[str, Any] = {
            "workspace_id": self.result.workspace_id,
            "first_seq": f.first_seq,
            "last_seq": f.last_seq,
            "first_prev_hash": f.first_prev_hash,
            "last_hash": f.last_hash,
            "rows": f.rows,
            "sha256": sha256,
        }
        for key, value in has.items():
            said = doc.get(key)
            if type(said) is not type(value) or said != value:
                detail = f"{key}: the manifest says {said}, {f.name} has {value}"
                brk = Break(
                    path.name, None, None, "manifest_mismatch", detail, str(said), str(value)
                )
                self.result.add(brk)


def _hash_of(event: dict[str, Any], claimed: str) -> str:
    """The event's hash under the contract (RFC 8785, SHA-256), given the claimed one.

    ``chain.canonical`` walks the whole event to choose an encoder, and
    writes an event with a float or a key outside the Basic Multilingual
    Plane in pure Python (~100 µs): too slow for a million rows. But bytes
    that hash to the claimed hash are the bytes that were hashed (SHA-256
    has no known collisions), so bytes that also parse back to this event
    prove the row, whoever wrote them. Two cheap spellings come first:
    orjson's sorted output (RFC 8785 for nearly every event read back from
    a file), then the same with each float written by the RFC 8785
    reference (orjson writes ``2e-6`` for ``0.000002``). A row neither
    proves, tampered or not, is hashed by ``chain.canonical``. (So a file
    whose hashes were all made again with orjson's spelling would pass, as
    would one made again with RFC 8785: only a recorded head tells.)
    """
    for spell in (_as_is, _es6_floats):
        try:
            body = orjson.dumps(spell(event), option=orjson.OPT_SORT_KEYS)
        except (TypeError, ValueError):
            continue
        if hashlib.sha256(body).hexdigest() == claimed:
            return claimed
    return event_hash(canonical(event))


def _as_is(value: Any) -> Any:
    return value


def _es6_floats(value: Any) -> Any:
    """``value`` with each float as RFC 8785 writes it (orjson writes ``1.0``, not ``1``)."""
    t = type(value)
    if t is float:
        return orjson.Fragment(rfc8785.dumps(value))
    if t is dict:
        return {k: _es6_floats(v) for k, v in value.items()}
    if t is list:
        return [_es6_floats(v) for v in value]
    return value


class _Unreadable(Exception):
    """The rest of a file cannot be read (its header is not one)."""

    def __init__(self, line: int, detail: str) -> None:
        super().__init__(detail)
        self.line = line
        self.detail = detail


class _Digesting(io.RawIOBase):
    """A file that hashes every byte read from it (for a manifest's sha256)."""

    def __init__(self, f: io.BufferedReader) -> None:
        super().__init__()
        self.f = f
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.f.readinto(buffer)
        self.digest.update(memoryview(buffer)[:n])
        return n

    def hexdigest(self) -> str:
        """The SHA-256 of the whole file, with what no reader asked for."""
        while chunk := self.f.read(1 << 20):
            self.digest.update(chunk)
        return self.digest.hexdigest()


def _csv_rows(stream: IO[bytes]) -> Iterator[Row]:
    # newline="\n": no translation, and a lone "\r" in a cell ends no line,
    # so line numbers are those of `grep -n` and editors. Bytes that are not
    # UTF-8 become lone surrogates, which no encoder accepts: that row only
    # is unreadable.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="\n")
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        decode = csv_decoder(header)
    except (csv.Error, RowError) as exc:
        raise _Unreadable(1, f"header: {exc}") from None
    last = reader.line_num
    while True:
        try:
            for cells in reader:
                line, last = last + 1, reader.line_num
                if not cells:
                    continue
                try:
                    event, claimed = decode(cells)
                except RowError as exc:
                    yield line, None, str(exc)
                    continue
                yield line, event, claimed
            return
        except csv.Error as exc:
            line, last = last + 1, reader.line_num
            yield line, None, f"not CSV: {exc}"


def _jsonl_rows(stream: IO[bytes]) -> Iterator[Row]:
    for line, raw in enumerate(stream, 1):
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if raw.strip():
                yield line, None, f"not JSON: {exc}"
            continue
        if type(doc) is not dict:
            yield line, None, "not a JSON object"
            continue
        yield (line, *event_from_line(doc))


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)
