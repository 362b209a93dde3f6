"""``chainlog verify-export``: exit codes and output (the checks themselves are
tested in libs/common/tests/test_exportverify.py)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from libs.cli.main import app
from libs.common.tests.test_exportverify import _archive, _chain, _tamper, _write

runner = CliRunner()


def test_valid_files_exit_0(tmp_path: Path) -> None:
    served = _chain(20)
    archive = _archive(tmp_path, served[:10], "2026-01-15")
    export, _ = _write(tmp_path, "csv", served[10:])
    done = runner.invoke(app, ["verify-export", str(archive), str(export)])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("VALID: 20 rows checked in 2 file(s)")
    assert "seq         1 to 20" in done.stdout and served[-1][1] in done.stdout
    assert "manifest 2026-01-15-00000000000000000001.manifest.json checked" in done.stdout


def test_breaks_exit_1_with_file_and_line(tmp_path: Path) -> None:
    served = _chain(20)
    _tamper(served, 11, actor_id="mallory")
    del served[15]
    export, starts = _write(tmp_path, "csv", served)
    done = runner.invoke(app, ["verify-export", str(export)])
    assert done.exit_code == 1
    assert f"export.csv:{starts[11]} seq 12: hash_mismatch" in done.stdout
    assert f"export.csv:{starts[15]} seq 16: gap: seq 16 missing (1 rows)" in done.stdout
    filtered = runner.invoke(app, ["verify-export", "--filtered", "--json", str(export)])
    doc = json.loads(filtered.stdout)
    assert filtered.exit_code == 1 and [b["type"] for b in doc["breaks"]] == ["hash_mismatch"]
    assert doc["expected_gaps"] == [[16, 16]]


def test_anchor_and_max_breaks(tmp_path: Path) -> None:
    served = _chain(20)
    export, _ = _write(tmp_path, "jsonl", served[10:])
    anchor = f"10:{served[9][1]}"
    done = runner.invoke(app, ["verify-export", "--anchor", anchor, "--json", str(export)])
    assert done.exit_code == 0 and json.loads(done.stdout)["notes"] == []
    done = runner.invoke(app, ["verify-export", "--anchor", f"10:{'0' * 64}", str(export)])
    assert done.exit_code == 1 and "export.jsonl:1 seq 11: chain_break" in done.stdout
    for i in range(10):
        _tamper(served, i, actor_id="x")
    export, _ = _write(tmp_path, "jsonl", served)
    done = runner.invoke(app, ["verify-export", "--max-breaks", "2", "--json", str(export)])
    doc = json.loads(done.stdout)
    assert done.exit_code == 1 and len(doc["breaks"]) == 2 and doc["breaks_truncated"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    export, _ = _write(tmp_path, "jsonl", _chain(3))
    done = runner.invoke(app, ["verify-export", str(export), str(tmp_path / "gone.csv")])
    assert done.exit_code == 2 and "no such file" in done.stderr and "gone.csv" in done.stderr
    done = runner.invoke(app, ["verify-export", "--anchor", "12", str(export)])
    assert done.exit_code == 2 and "SEQ:HASH" in done.stderr
    other = tmp_path / "notes.txt"
    other.write_text("x")
    done = runner.invoke(app, ["verify-export", "--json", str(other)])
    assert done.exit_code == 2 and json.loads(done.stderr)["error"] == "unknown_format"
    assert runner.invoke(app, ["verify-export"]).exit_code == 2
