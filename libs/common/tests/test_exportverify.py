"""Offline verification of export and archive files, and the standalone
verifier of docs/exports.md, on real hashed chains. No Kafka, no PostgreSQL."""

from __future__ import annotations

import ast
import copy
import csv
import gzip
import hashlib
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from libs.common import exportverify
from libs.common.chain import ZERO_HASH, Head, canonical, event_hash, link
from libs.common.exportformat import (
    CSV_COLUMNS,
    EVENT_COLUMNS,
    INTEGER_COLUMNS,
    JSON_COLUMNS,
    RowError,
    csv_decoder,
    event_from_csv,
    jsonl_line,
    neutralise,
)
from libs.common.exportverify import Anchor, NotAnExport, verify_export
from libs.common.tests.test_chain import _event, _float, _value

WS = "3f1c2b7e-8d4a-4c1e-9b2f-6a5d4e3c2b1a"
OTHER_WS = "0c4d5e6f-1a2b-4c3d-8e9f-000000000002"
ROOT = Path(__file__).resolve().parents[3]

#: Values that need quoting, neutralising or careful escaping somewhere.
TRICKY = [
    "=1+2",
    "+33 1 23 45",
    "-rf",
    "@SUM(A1)",
    "'quoted",
    "\tindented",
    "\rcarriage",
    "line 1\nline 2",
    'a,b "c"',
    "é 漢字 😀",
    "x\u2028y\x01z",
    "crlf\r\nin a cell",
    "plain",
]

#: A chain as served: each hashed event with its hash.
Served = list[tuple[dict[str, Any], str]]


def _chain(n: int, ws: str = WS, head: Head | None = None) -> Served:
    head = head or Head()
    out = []
    for _ in range(n):
        seq = head.seq + 1
        pick = TRICKY[seq % len(TRICKY)]
        ev: dict[str, Any] = {
            "id": f"019bc119-0101-7000-8000-{seq:012d}",
            "received_at": f"2026-01-15T10:{seq // 60 % 60:02d}:{seq % 60:02d}.001123Z",
            "actor_id": f"user_{seq % 7}",
            "action": "document.delete",
        }
        if seq % 2:
            ev["actor_name"] = pick
        if seq % 3 == 0:
            ev["metadata"] = {
                "why": pick,
                "floats": [0.1, 1e-7, 5e-324, -2.5, 1e21],
                "😀k": {"ａ": None, "n": -9007199254740991},
                "ａ": True,
            }
        if seq % 4 == 0:
            # 2e-6: orjson writes 2e-6, RFC 8785 0.000002
            target = {"type": "user", "id": pick, "metadata": {"x": 1.5, "y": 2e-6}}
            ev["targets"] = [target, {"type": "doc"}]
        if seq % 5 == 0:
            ev.update(
                occurred_at="2026-01-15T09:59:59.999999Z",
                tenant_id="-tenant",
                session_id="@s",
                ip_address="2001:db8::ff00:42:8329",
                user_agent=pick,
                idempotency_key="=key",
                version=2,
                schema_violation="matched no schema",
            )
        if seq % 6 == 0:
            ev.update(resource="document", resource_id=f"doc_{seq}", resource_name="'x")
        _, digest = link(head, ws, ev)
        out.append((ev, digest))
    return out


def _reseal(served: Served, i: int, **changes: Any) -> None:
    """Change row ``i`` and hash it again, as a forger who can recompute one hash would."""
    ev = {**served[i][0], **changes}
    served[i] = (ev, event_hash(canonical(ev)))


def _tamper(served: Served, i: int, **changes: Any) -> None:
    """Change row ``i`` and keep its hash, as an edit of the file would."""
    served[i] = ({**served[i][0], **changes}, served[i][1])


# ---------------------------------------------------------------------------
# Writing files as the exporter does.


def _jsonb(value: Any) -> Any:
    """PostgreSQL's jsonb key order (by length, then bytes): not the canonical order."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _jsonb(value[k]) for k in keys}
    if isinstance(value, list):
        return [_jsonb(v) for v in value]
    return value


def _csv_cells(ev: dict[str, Any], digest: str) -> list[str | None]:
    """The cells of the exporter's SELECT; None is SQL NULL."""
    cells: list[str | None] = []
    for name in EVENT_COLUMNS:
        v = ev.get(name)
        if v is None:
            cells.append(None)
        elif name in INTEGER_COLUMNS:
            cells.append(str(v))
        elif name in JSON_COLUMNS:
            cells.append(json.dumps(_jsonb(v), ensure_ascii=False))
        else:
            cells.append(neutralise(v))
    return [*cells, digest, "FR", neutralise("=Paris")]


def _pg_cell(value: str | None) -> str:
    # COPY ... CSV quotes the empty string (NULL is the unquoted empty cell)
    # and any value holding the delimiter, the quote, CR or LF.
    if value is None:
        return ""
    if value == "" or any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _write_csv(path: Path, served: Served, style: str = "pg") -> list[int]:
    """Writes the file; returns the line where each row starts (the header is line 1)."""
    end = "\r\n" if style == "pg-crlf" else "\n"
    texts = []
    if style == "python":  # csv.writer: QUOTE_MINIMAL, CRLF, as the module docstring says
        buf: list[str] = []

        class _Sink:
            def write(self, s: str) -> None:
                buf.append(s)

        writer = csv.writer(_Sink())
        writer.writerow(CSV_COLUMNS)
        for ev, digest in served:
            writer.writerow(["" if c is None else c for c in _csv_cells(ev, digest)])
        texts = buf
    else:
        texts = [",".join(CSV_COLUMNS) + end]
        texts += [",".join(map(_pg_cell, _csv_cells(ev, d))) + end for ev, d in served]
    path.write_text("".join(texts), encoding="utf-8", newline="")
    starts, line = [], 1
    for text in texts:
        starts.append(line)
        line += text.count("\n")
    return starts[1:]


def _jsonl_bytes(served: Served) -> bytes:
    return b"".join(jsonl_line(canonical(ev), bytes.fromhex(d), "FR", None) for ev, d in served)


def _write(tmp: Path, kind: str, served: Served, name: str = "export") -> tuple[Path, list[int]]:
    """One file of ``kind``; returns it and the line where each row starts."""
    if kind.startswith("csv"):
        style = {"csv": "pg", "csv-crlf": "pg-crlf", "csv-python": "python"}.get(kind, "pg")
        path = tmp / f"{name}.csv"
        starts = _write_csv(path, served, style)
        if kind == "csv.gz":
            gz = path.with_suffix(".csv.gz")
            gz.write_bytes(gzip.compress(path.read_bytes(), mtime=0))
            path.unlink()
            path = gz
        return path, starts
    path = tmp / f"{name}.{kind}"
    data = _jsonl_bytes(served)
    path.write_bytes(gzip.compress(data, mtime=0) if kind.endswith(".gz") else data)
    return path, list(range(1, len(served) + 1))


def _archive(tmp: Path, served: Served, day: str) -> Path:
    """An archive file and its manifest, as retention writes them."""
    first, (last, last_hash) = served[0][0], served[-1]
    base = f"{day}-{first['seq']:020d}"
    path = tmp / f"{base}.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl_bytes(served), compresslevel=6, mtime=0))
    manifest = {
        "workspace_id": first["workspace_id"],
        "day": day,
        "first_seq": first["seq"],
        "last_seq": last["seq"],
        "first_prev_hash": first["prev_hash"],
        "last_hash": last_hash,
        "rows": len(served),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "file": path.name,
    }
    (tmp / f"{base}.manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return path


def _kinds(res: Any) -> list[tuple[str, int | None, int | None, str]]:
    return [(b.file, b.line, b.seq, b.type) for b in res.breaks]


KINDS = ["csv", "csv-crlf", "csv-python", "csv.gz", "jsonl", "jsonl.gz"]


# ---------------------------------------------------------------------------
# verify_export


@pytest.mark.parametrize("kind", KINDS)
def test_valid_chain_passes(tmp_path: Path, kind: str) -> None:
    served = _chain(60)
    path, _ = _write(tmp_path, kind, served)
    res = verify_export([path])
    assert res.valid, res.report()
    assert (res.rows_checked, res.first_seq, res.last_seq) == (60, 1, 60)
    assert res.head_hash == served[-1][1]
    assert res.workspace_id == WS and res.notes == []
    assert [(f.name, f.rows, f.first_seq, f.last_seq) for f in res.files] == [
        (path.name, 60, 1, 60)
    ]


@pytest.mark.parametrize("kind", ["csv", "csv-crlf", "jsonl.gz"])
def test_tampered_cell_is_hash_mismatch_at_its_line(tmp_path: Path, kind: str) -> None:
    served = _chain(40)
    original = served[32][0]  # seq 33: its actor_name holds a line break
    _tamper(served, 32, actor_id="mallory")
    path, starts = _write(tmp_path, kind, served)
    if kind.startswith("csv"):
        # Rows before it span several lines, and so does it: the line is where it starts.
        assert starts[32] > 32 + 2 and starts[33] - starts[32] == 2
    res = verify_export([path])
    assert _kinds(res) == [(path.name, starts[32], 33, "hash_mismatch")]
    brk = res.breaks[0]
    assert brk.actual == served[32][1]
    assert brk.expected == event_hash(canonical({**original, "actor_id": "mallory"}))
    assert not res.valid and res.rows_checked == 40


@pytest.mark.parametrize(("cell", "hashed"), [("'=x", "=x"), ("''x", "'x"), ("'-1", "-1")])
def test_neutralisation_is_undone_exactly_once(tmp_path: Path, cell: str, hashed: str) -> None:
    served = _chain(3)
    _reseal(served, 2, actor_name=hashed)
    path, _ = _write(tmp_path, "csv", served)
    assert f",{cell}," in path.read_text(encoding="utf-8")
    assert verify_export([path]).valid
    # One quote more or less is another value.
    path.write_text(path.read_text(encoding="utf-8").replace(f",{cell},", f",'{cell},"))
    assert _kinds(verify_export([path])) == [(path.name, 4, 3, "hash_mismatch")]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_deleted_rows_are_a_gap_or_an_expected_gap(tmp_path: Path, kind: str) -> None:
    served = _chain(20)
    del served[9:12]  # seq 10 to 12
    path, starts = _write(tmp_path, kind, served)
    res = verify_export([path])
    assert _kinds(res) == [(path.name, starts[9], 10, "gap")]
    assert res.breaks[0].detail == "seq 10 to 12 missing (3 rows)"
    filtered = verify_export([path], complete=False)
    assert filtered.valid, filtered.report()
    assert filtered.expected_gaps == [(10, 12)]
    assert (filtered.expected_gap_count, filtered.expected_missing) == (1, 3)
    assert "expected gaps: 1 ranges, 3 seqs" in filtered.report()


def test_filtered_export_still_checks_hashes_and_consecutive_links(tmp_path: Path) -> None:
    served = _chain(20)
    del served[4]
    _tamper(served, 10, action="user.login")
    _reseal(served, 15, prev_hash="ab" * 32)
    path, _ = _write(tmp_path, "jsonl", served)
    res = verify_export([path], complete=False)
    assert [(b.seq, b.type) for b in res.breaks] == [
        (12, "hash_mismatch"),
        (17, "chain_break"),
        (18, "chain_break"),  # it names the hash row 17 had before
    ]


def test_swapped_rows(tmp_path: Path) -> None:
    served = _chain(20)
    served[9], served[10] = served[10], served[9]
    path, _ = _write(tmp_path, "jsonl", served)
    res = verify_export([path])
    assert _kinds(res) == [(path.name, 10, 10, "gap"), (path.name, 11, 10, "out_of_order")]
    assert res.last_seq == 20 and res.head_hash == served[-1][1]


def test_repeated_row_is_out_of_order(tmp_path: Path) -> None:
    served = _chain(5)
    served.insert(3, served[2])
    path, _ = _write(tmp_path, "jsonl", served)
    assert _kinds(verify_export([path])) == [(path.name, 4, 3, "out_of_order")]


def test_rehashed_row_breaks_the_links_on_both_sides(tmp_path: Path) -> None:
    served = _chain(20)
    original = served[9][1]
    _reseal(served, 9, prev_hash="ab" * 32)
    path, _ = _write(tmp_path, "csv", served)
    res = verify_export([path])
    assert [(b.seq, b.type, b.expected, b.actual) for b in res.breaks] == [
        (10, "chain_break", served[8][1], "ab" * 32),
        (11, "chain_break", served[9][1], original),
    ]


def test_first_row_must_link_to_zeros(tmp_path: Path) -> None:
    served = _chain(3)
    _reseal(served, 0, prev_hash="11" * 32)
    path, _ = _write(tmp_path, "jsonl", served)
    res = verify_export([path])
    assert [(b.seq, b.type, b.expected) for b in res.breaks] == [
        (1, "chain_break", ZERO_HASH),
        (2, "chain_break", served[0][1]),
    ]


def test_archives_and_a_later_export_verify_as_one_chain(tmp_path: Path) -> None:
    served = _chain(30)
    day1 = _archive(tmp_path, served[:10], "2026-01-15")
    day2 = _archive(tmp_path, served[10:20], "2026-01-16")
    export, _ = _write(tmp_path, "csv", served[20:])
    res = verify_export([day1, day2, export])
    assert res.valid, res.report()
    assert (res.rows_checked, res.first_seq, res.last_seq) == (30, 1, 30)
    assert [(f.rows, f.manifest) for f in res.files] == [
        (10, "2026-01-15-00000000000000000001.manifest.json"),
        (10, "2026-01-16-00000000000000000011.manifest.json"),
        (10, None),
    ]
    # Without the first day, the first link is unchecked unless anchored.
    res = verify_export([day2, export])
    assert res.valid and res.notes[0].startswith("first link unchecked (no anchor): seq 11")
    res = verify_export([day2, export], anchor=Anchor(10, served[9][1]))
    assert res.valid and res.notes == []
    res = verify_export([day2, export], anchor=Anchor(10, "cd" * 32))
    assert [(b.file, b.line, b.type, b.expected) for b in res.breaks] == [
        (day2.name, 1, "chain_break", "cd" * 32)
    ]
    res = verify_export([day2, export], anchor=Anchor(7, served[6][1]))
    assert [(b.seq, b.type, b.detail) for b in res.breaks] == [
        (8, "gap", "seq 8 to 10 missing (3 rows)")
    ]
    # An anchor at or past the first row: the rows up to it are held islands.
    res = verify_export([day2, export], anchor=Anchor(12, served[11][1]))
    assert res.valid and (res.held, res.held_seqs, res.notes) == (2, [11, 12], [])
    # Files in the wrong order are rows out of order.
    res = verify_export([day2, day1])
    assert {b.type for b in res.breaks} == {"out_of_order"} and len(res.breaks) == 10


def test_manifest_mismatch(tmp_path: Path) -> None:
    served = _chain(10)
    path = _archive(tmp_path, served, "2026-01-15")
    manifest = tmp_path / "2026-01-15-00000000000000000001.manifest.json"
    doc = orjson.loads(manifest.read_bytes())
    manifest.write_bytes(orjson.dumps({**doc, "rows": 11, "last_hash": "ef" * 32}))
    res = verify_export([path])
    assert [(b.file, b.type, b.expected, b.actual) for b in res.breaks] == [
        (manifest.name, "manifest_mismatch", "ef" * 32, served[-1][1]),
        (manifest.name, "manifest_mismatch", "11", "10"),
    ]
    # The same rows compressed otherwise: only the file's SHA-256 differs.
    manifest.write_bytes(orjson.dumps(doc))
    path.write_bytes(gzip.compress(_jsonl_bytes(served), compresslevel=1, mtime=0))
    res = verify_export([path])
    assert [b.detail.split(":")[0] for b in res.breaks] == ["sha256"]
    manifest.write_text("[1, 2]")
    assert [b.type for b in verify_export([path]).breaks] == ["manifest_mismatch"]


def test_unreadable_rows_are_breaks_and_verification_goes_on(tmp_path: Path) -> None:
    served = _chain(12)
    lines = _jsonl_bytes(served).splitlines(keepends=True)
    lines[4] = b'{"seq": 5, "not json\n'
    lines[7] = b"[1, 2]\n"
    lines.insert(9, b"\n")  # blank lines are skipped
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"".join(lines))
    res = verify_export([path])
    assert _kinds(res) == [(path.name, 5, None, "unreadable"), (path.name, 8, None, "unreadable")]
    assert res.rows_checked == 12 and res.last_seq == 12


def test_unreadable_csv_rows(tmp_path: Path) -> None:
    served = _chain(8)
    path, starts = _write(tmp_path, "csv", served)
    data = path.read_bytes().split(b"\n")
    row = starts[2] - 1  # this row has no line break inside
    data[row] = data[row].rsplit(b",", 1)[0]  # one cell short
    data[starts[4] - 1] = data[starts[4] - 1].replace(b"user_", b"\xffuser_")  # not UTF-8
    path.write_bytes(b"\n".join(data))
    res = verify_export([path])
    assert _kinds(res) == [(path.name, starts[2], None, "unreadable"), (path.name, starts[4], None, "unreadable")]  # fmt: skip
    assert "26" in res.breaks[0].detail and "UTF-8" in res.breaks[1].detail
    # A header without an event column: nothing can be read.
    path.write_text("seq,id,hash\n1,x,y\n", encoding="utf-8")
    res = verify_export([path])
    assert [(b.line, b.type, b.detail) for b in res.breaks] == [
        (1, "unreadable", "header: column workspace_id is missing")
    ]


def test_cut_gzip_file(tmp_path: Path) -> None:
    path, _ = _write(tmp_path, "jsonl.gz", _chain(2000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    res = verify_export([path])
    assert [b.type for b in res.breaks] == ["unreadable"]
    assert "cut or corrupt" in res.breaks[0].detail
    assert 0 < res.rows_checked < 2000 and res.breaks[0].line == res.rows_checked


def test_row_of_another_workspace(tmp_path: Path) -> None:
    served = _chain(6)
    served.insert(3, _chain(4, ws=OTHER_WS)[3])
    path, _ = _write(tmp_path, "jsonl", served)
    res = verify_export([path])
    assert [(b.line, b.type, b.expected, b.actual) for b in res.breaks] == [
        (4, "workspace_mismatch", WS, OTHER_WS)
    ]


def test_max_breaks_truncates_and_invalidates(tmp_path: Path) -> None:
    served = _chain(10)
    for i in range(1, 9):
        _tamper(served, i, actor_id="x")
    path, _ = _write(tmp_path, "jsonl", served)
    res = verify_export([path], max_breaks=3)
    assert len(res.breaks) == 3 and res.truncated and not res.valid
    assert "stopped listing at 3 breaks" in res.report()


def test_names_and_manifests_given_as_files(tmp_path: Path) -> None:
    with pytest.raises(NotAnExport):
        verify_export([tmp_path / "export.txt"])
    path = _archive(tmp_path, _chain(3), "2026-01-15")
    res = verify_export(sorted(tmp_path.iterdir()))  # a glob over the folder
    assert res.valid and res.rows_checked == 3
    assert res.notes == ["2026-01-15-00000000000000000001.manifest.json: a manifest, checked next to its file"]  # fmt: skip
    assert verify_export([]).notes == ["no rows: nothing was verified"]
    assert path.exists()


def test_fast_paths_leave_chain_canonical_to_the_rare_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed of a million rows: chain.canonical writes any event with a float
    in pure Python, so only what no cheaper spelling proves may reach it."""
    calls: list[int] = []

    def counted(event: dict[str, Any]) -> bytes:
        calls.append(event["seq"])
        return canonical(event)

    monkeypatch.setattr(exportverify, "canonical", counted)
    served = _chain(60)
    # Floats are cheap (even 2e-6, which orjson spells otherwise), keys
    # outside the BMP are not: orjson sorts them by code point.
    rare = [seq for seq in range(1, 61) if seq % 3 == 0]
    for kind in ("jsonl", "csv"):
        path, _ = _write(tmp_path, kind, served)
        calls.clear()
        assert verify_export([path]).valid and calls == rare


def test_a_field_appended_to_a_line_is_a_hash_mismatch(tmp_path: Path) -> None:
    served = _chain(3)
    lines = _jsonl_bytes(served).splitlines(keepends=True)
    # The line's start is still the stored body, but a later key overrides a hashed field.
    lines[1] = lines[1].replace(b',"ip_city":null}', b',"ip_city":null,"actor_id":"mallory"}')
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"".join(lines))
    assert _kinds(verify_export([path])) == [(path.name, 2, 2, "hash_mismatch")]


def test_cells_beyond_the_csv_module_default_limit(tmp_path: Path) -> None:
    head = Head()
    ev: dict[str, Any] = {"id": "e1", "received_at": "2026-01-15T10:00:00.000000Z"}
    ev.update(actor_id="u", action="a.b", metadata={"blob": "x" * 300_000})
    _, digest = link(head, WS, ev)
    path, _ = _write(tmp_path, "csv", [(ev, digest)])
    assert verify_export([path]).valid


def test_report_and_as_dict(tmp_path: Path) -> None:
    served = _chain(10)
    _tamper(served, 4, actor_id="x")
    path, starts = _write(tmp_path, "csv", served)
    res = verify_export([path])
    text = res.report()
    assert text.startswith("BROKEN: 10 rows checked in 1 file(s), complete export")
    assert f"export.csv:{starts[4]} seq 5: hash_mismatch" in text
    assert f"head hash   {served[-1][1]}" in text
    doc = json.loads(json.dumps(res.as_dict()))
    assert doc["valid"] is False and doc["breaks"][0]["line"] == starts[4]


def test_anchor_parse() -> None:
    assert Anchor.parse("12:" + "AB" * 32) == Anchor(12, "ab" * 32)
    for bad in ("12", "x:" + "ab" * 32, "12:abc", "-1:" + "ab" * 32):
        with pytest.raises(ValueError):
            Anchor.parse(bad)


def test_csv_decoder_agrees_with_event_from_csv(tmp_path: Path) -> None:
    served = _chain(30)
    path, _ = _write(tmp_path, "csv", served)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        decode = csv_decoder(next(reader))
        by_cells = [decode(cells) for cells in reader]
    with path.open(encoding="utf-8", newline="") as f:
        by_name = [event_from_csv(row) for row in csv.DictReader(f)]
    assert by_cells == by_name == [(ev, d) for ev, d in served]
    with pytest.raises(RowError, match="column metadata is missing"):
        event_from_csv({n: "" for n in EVENT_COLUMNS if n != "metadata"})


# ---------------------------------------------------------------------------
# The standalone verifier of docs/exports.md


def _standalone_code() -> str:
    text = (ROOT / "docs" / "exports.md").read_text(encoding="utf-8")
    after = text.split("<!-- standalone-verifier", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def _standalone() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "standalone"}
    exec(compile(_standalone_code(), "docs/exports.md", "exec"), namespace)
    return namespace


def _run_standalone(tmp: Path, *args: Path | str) -> subprocess.CompletedProcess[str]:
    script = tmp / "verify_export.py"
    script.write_text(_standalone_code(), encoding="utf-8")
    python = shutil.which("python3") or sys.executable
    # -I: no site packages, no current directory: the standard library only.
    cmd = [python, "-I", str(script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_standalone_is_short_and_standard_library_only() -> None:
    code = _standalone_code()
    assert len(code.splitlines()) <= 130
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(n and n.split(".")[0] in sys.stdlib_module_names for n in names), names


@pytest.mark.parametrize("kind", ["csv", "csv-crlf", "csv-python", "jsonl", "jsonl.gz"])
def test_standalone_accepts_a_valid_export(tmp_path: Path, kind: str) -> None:
    path, _ = _write(tmp_path, kind, _chain(60))
    done = _run_standalone(tmp_path, path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "60 rows checked" in done.stdout and done.stdout.rstrip().endswith("VALID")


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_standalone_names_the_tampered_line(tmp_path: Path, kind: str) -> None:
    served = _chain(40)
    _tamper(served, 29, metadata={"why": "edited"})
    path, starts = _write(tmp_path, kind, served)
    done = _run_standalone(tmp_path, path)
    assert done.returncode == 1
    assert f"{path}:{starts[29]}: seq 30: hash_mismatch" in done.stdout
    assert "VALID" not in done.stdout


def test_held_islands_below_the_anchor(tmp_path: Path) -> None:
    """An export after retention kept held events: islands, then the chain from the anchor."""
    served = _chain(30)
    kept = [served[2], served[3], served[8], *served[20:]]  # seqs 3, 4, 9, then 21..30
    export, _ = _write(tmp_path, "csv", kept)
    anchor = Anchor(20, served[19][1])
    res = verify_export([export], anchor=anchor)
    assert res.valid, res.report()
    assert (res.held, res.held_seqs, res.rows_checked) == (3, [3, 4, 9], 13)
    assert "held: 3 rows at or below the anchor" in res.report()
    # Without the anchor the jumps are gaps; --filtered takes them as expected.
    assert [b.type for b in verify_export([export]).breaks] == ["gap", "gap"]
    assert verify_export([export], complete=False).valid
    # An island is checked on its own, and linked to its neighbour island.
    _tamper(kept, 2, actor_id="someone else")
    _reseal(kept, 1, prev_hash="11" * 32)
    broken, starts = _write(tmp_path, "jsonl", kept, name="broken")
    res = verify_export([broken], anchor=anchor)
    assert [(b.line, b.seq, b.type) for b in res.breaks] == [
        (starts[1], 4, "chain_break"),
        (starts[2], 9, "hash_mismatch"),
    ]
    # The first row past the islands links to the anchor, and a jump past it is a gap.
    res = verify_export([export], anchor=Anchor(20, "cd" * 32))
    assert [(b.seq, b.type, b.expected) for b in res.breaks] == [(21, "chain_break", "cd" * 32)]
    res = verify_export([export], anchor=Anchor(19, served[18][1]))
    assert [(b.seq, b.type) for b in res.breaks] == [(20, "gap")]


def test_standalone_gaps_anchors_and_several_files(tmp_path: Path) -> None:
    served = _chain(30)
    first, _ = _write(tmp_path, "jsonl", served[:10], name="a")
    second, starts = _write(tmp_path, "csv", served[10:15] + served[17:], name="b")
    done = _run_standalone(tmp_path, first, second)
    assert done.returncode == 1 and f"{second}:{starts[5]}: seq 18: gap" in done.stdout
    assert _run_standalone(tmp_path, "--filtered", first, second).returncode == 0
    done = _run_standalone(tmp_path, second)
    assert done.returncode == 1 and "first link unchecked" in done.stdout


FLOATS = [1e21, 1e-7, 0.1, -0.0, 5e-324, 1.0, 123.456e5, 1e16, 1e-6, 2.5e-308, 1 / 3]
FLOATS += [9007199254740991.0, 1.7976931348623157e308, 4503599627370495.5, -1e-7, 1e20, 1.5e21]


def test_standalone_jcs_matches_chain_canonical() -> None:
    jcs = _standalone()["jcs"]
    rng = random.Random(8785)
    values: list[Any] = [*FLOATS, 2**53 - 1, -(2**53 - 1), 0, '\x00\x1f\x7f\u2028/"\\é😀']
    values += [rng.choice([-1, 1]) * 10 ** rng.uniform(-330, 308) for _ in range(2000)]
    values += [_float(rng) for _ in range(2000)]
    values += [_value(rng, 0, True) for _ in range(2000)]
    values += [{"😀k": 1, "ａ": 2, "z": 3, "é": {"\U0010ffff": 0, "\uffff": 1}}]
    for v in values:
        assert jcs({"v": v}).encode("utf-8") == canonical({"v": v}), v
    for _ in range(2000):
        ev = _event(rng)
        assert jcs(ev).encode("utf-8") == canonical(copy.deepcopy(ev)), ev


def test_standalone_jcs_reproduces_the_published_vectors() -> None:
    jcs = _standalone()["jcs"]
    doc = json.loads((ROOT / "docs" / "hash-chain-vectors.json").read_text(encoding="utf-8"))
    for v in doc["vectors"]:
        assert jcs(json.loads(v["canonical"])) == v["canonical"], v["description"]
