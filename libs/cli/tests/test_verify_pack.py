"""``chainlog verify-pack``: exit codes and output (the checks themselves are
tested in libs/common/tests/test_packverify.py)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from libs.cli.main import app
from libs.common.checkpoint import generate_key
from libs.common.tests.test_packverify import KEY_NAME, META, build, members, rezip
from libs.common.tests.test_proofcheck import VKEY, WS

runner = CliRunner()


def test_a_valid_pack_exits_0(tmp_path: Path) -> None:
    pack = build(tmp_path)
    done = runner.invoke(app, ["verify-pack", str(pack), "--key", VKEY])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"VALID: evidence pack {META.id}")
    assert f"workspace        {WS}" in done.stdout
    assert "events.csv       15 rows, seq 3 to 18" in done.stdout
    key_file = tmp_path / "key.txt"
    key_file.write_text(VKEY + "\n", encoding="utf-8")
    done = runner.invoke(app, ["verify-pack", str(pack), "--key", str(key_file), "--json"])
    doc = json.loads(done.stdout)
    assert done.exit_code == 0 and doc["valid"] and doc["problems"] == []
    assert doc["manifest"]["workspace_id"] == WS and doc["checkpoints_checked"] == 3


def test_a_tampered_pack_exits_1_naming_the_file(tmp_path: Path) -> None:
    pack = build(tmp_path)
    content = members(pack)
    content["access-review.json"] = content["access-review.json"].replace(b"[]", b"[0]", 1)
    rezip(pack, content)
    done = runner.invoke(app, ["verify-pack", str(pack), "--key", VKEY])
    assert done.exit_code == 1
    assert done.stdout.startswith("INVALID")
    assert "access-review.json: size_mismatch:" in done.stdout
    other = generate_key(KEY_NAME)[1]
    done = runner.invoke(app, ["verify-pack", str(build(tmp_path)), "--key", other, "--json"])
    assert done.exit_code == 1
    assert [p["code"] for p in json.loads(done.stdout)["problems"]] == ["bad_signature"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    pack = build(tmp_path)
    done = runner.invoke(app, ["verify-pack", str(pack), "--key", "not-a-key"])
    assert done.exit_code == 2 and "--key" in done.output
    done = runner.invoke(app, ["verify-pack", str(tmp_path / "nope.zip"), "--key", VKEY])
    assert done.exit_code == 2 and "no such file" in done.output
    done = runner.invoke(app, ["verify-pack", str(pack)], env={"CHAINLOG_LOG_KEY": ""})
    assert done.exit_code == 2
