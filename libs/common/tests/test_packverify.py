"""Evidence packs built as the exporter builds them (``packformat.write_pack``) from
a real hash chain, tree and key held in memory, verified by ``packverify``, then
tampered with in every way the verifier names. No Kafka, no PostgreSQL.
The standalone script of docs/evidence-packs.md runs on the same packs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.common import packformat
from libs.common.chain import canonical
from libs.common.checkpoint import generate_key, open_note, parse_signer_key, workspace_origin
from libs.common.exportformat import CSV_COLUMNS, csv_cells, jsonl_line
from libs.common.packformat import PackMeta, write_pack
from libs.common.packverify import verify_pack
from libs.common.tests.docscripts import check_short_and_self_contained, doc_script, run_script
from libs.common.tests.test_proofcheck import OTHER_WS, SIGNER, VKEY, WS, Log

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "evidence-packs.md"
KEY_NAME, PRIVATE = parse_signer_key(SIGNER)
META = PackMeta(
    "019bc119-0101-7000-8000-00000000beef",
    WS,
    "2026-01-01T00:00:00.000000Z",
    "2026-04-01T00:00:00.000000Z",
    ["CC6", "CC7", "CC8"],
    "2026-04-02T10:00:00.000000Z",
)
DERIVED = ("hash", "ip_country", "ip_city")


def _log() -> Log:
    """10 events, 2 admin events, 8 more: the period holds seq 3 to 18, but not 6."""
    return Log().add(10).add(2, action="admin.alert_rule.created").add(8)


def _csv(events: list[dict[str, Any]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_cells(e) for e in events)
    return out.getvalue().encode()


def _jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        jsonl_line(
            canonical({k: v for k, v in e.items() if k not in DERIVED}),
            bytes.fromhex(e["hash"]),
            e["ip_country"],
            e["ip_city"],
        )
        for e in events
    )


def gathered(lg: Log | None = None) -> dict[str, bytes]:
    """The data files of a pack, as ``services/exporter/packs.gather`` makes them."""
    lg = lg or _log()
    period = [e for e in lg.events if 3 <= e["seq"] <= 18 and e["seq"] != 6]
    admin = [e for e in period if e["action"].startswith("admin.")]
    last = period[-1]
    notes = {size: lg.checkpoint(size) for size in (4, 12, 20)}
    return {
        "events.csv": _csv(period),
        "events.jsonl": _jsonl(period),
        "admin-trail.csv": _csv(admin),
        "verification.json": packformat.json_bytes(
            {
                "range": {
                    "valid": True,
                    "events_checked": 16,
                    "first_seq": 3,
                    "last_seq": 18,
                    "head_hash": last["hash"],
                    "breaks": [],
                    "breaks_truncated": False,
                },
                "scheduled_runs": [],
            }
        ),
        "checkpoints.json": packformat.json_bytes(
            {
                "origin": workspace_origin(WS),
                "through_seq": 20,
                "checkpoints": [
                    {"size": s, "file": packformat.checkpoint_file(s)} for s in sorted(notes)
                ],
                "covering": {
                    "seq": 18,
                    "event_id": last["id"],
                    "size": 20,
                    "file": packformat.checkpoint_file(20),
                    "audit_path": lg.inclusion(18, 20),
                },
                "consistency": {"first": 4, "second": 20, "proof": lg.consistency(4, 20)},
            }
        ),
        **{packformat.checkpoint_file(s): n.encode() for s, n in notes.items()},
        "alert-rules.json": packformat.json_bytes({"data": [{"name": "mass deletion"}]}),
        "alerts.json": packformat.json_bytes({"data": []}),
        "log-streams.json": packformat.json_bytes({"data": []}),
        "access-review.json": packformat.json_bytes({"api_keys": [], "members": []}),
    }


def build(
    tmp: Path,
    files: Mapping[str, bytes | Path] | None = None,
    private: Ed25519PrivateKey = PRIVATE,
    meta: PackMeta = META,
    name: str = "pack.zip",
) -> Path:
    path = tmp / name
    write_pack(path, files or gathered(), meta, KEY_NAME, private)
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rezip(path: Path, content: dict[str, bytes], extra: tuple[tuple[str, bytes], ...] = ()) -> Path:
    """Write ``content`` as the zip at ``path`` (``extra``: members added as they are)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in [*content.items(), *extra]:
            zf.writestr(name, data)
    return path


def codes(path: Path, key: str = VKEY) -> list[str]:
    return [p.code for p in verify_pack(path, key).problems]


# ---------------------------------------------------------------------------
# A good pack


def test_a_pack_as_built_verifies(tmp_path: Path) -> None:
    path = tmp_path / "pack.zip"
    size, digest = write_pack(path, gathered(), META, KEY_NAME, PRIVATE)
    data = path.read_bytes()
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    result = verify_pack(path, VKEY)
    assert result.valid, result.report()
    assert result.events["events.csv"] == {
        "rows_checked": 15,
        "first_seq": 3,
        "last_seq": 18,
        "head_hash": _log().events[17]["hash"],
    }
    assert result.events["events.jsonl"] == result.events["events.csv"]
    assert result.events["admin-trail.csv"]["rows_checked"] == 2
    assert result.checkpoints_checked == 3 and result.notes == []
    assert result.report().startswith(f"VALID: evidence pack {META.id}")
    files = members(path)
    manifest = orjson.loads(files["manifest.json"])
    assert manifest["format"] == "chainlog-evidence-pack/1"
    assert {k: manifest[k] for k in ("workspace_id", "from", "to", "controls", "created_at")} == {
        "workspace_id": WS,
        "from": META.period_from,
        "to": META.period_to,
        "controls": META.controls,
        "created_at": META.created_at,
    }
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json", "manifest.sig"}
    for name, entry in listed.items():
        assert entry == {
            "name": name,
            "size": len(files[name]),
            "sha256": hashlib.sha256(files[name]).hexdigest(),
        }
    assert files["log-key.txt"] == (VKEY + "\n").encode()
    # manifest.json, a blank line and manifest.sig: a C2SP signed note by the log's key.
    text = open_note(files["manifest.json"] + b"\n" + files["manifest.sig"], VKEY)
    assert text.encode() == files["manifest.json"]


def test_controls_and_readme_describe_the_pack(tmp_path: Path) -> None:
    files = members(build(tmp_path))
    controls = orjson.loads(files["controls.json"])["controls"]
    assert [c["id"] for c in controls] == ["CC6", "CC7", "CC8"]
    assert controls[0]["evidence"][:2] == ["access-review.json", "admin-trail.csv"]
    assert "admin-trail.csv" in controls[2]["evidence"]
    for c in packformat.CONTROLS.values():
        assert set(c.files) <= set(packformat.FILES) and c.title and c.why
    readme = files["README.txt"].decode()
    for name in packformat.FILES:
        assert name in readme
    assert VKEY in readme and "chainlog verify-pack" in readme and META.period_to in readme


def test_the_builder_takes_only_a_packs_files(tmp_path: Path) -> None:
    files = gathered()
    del files["alerts.json"]
    with pytest.raises(ValueError, match=re.escape("missing ['alerts.json']")):
        build(tmp_path, files)
    with pytest.raises(ValueError, match=re.escape("unknown ['notes.txt']")):
        build(tmp_path, {**gathered(), "notes.txt": b"x"})


def test_a_large_file_is_streamed_from_disk(tmp_path: Path) -> None:
    files: dict[str, bytes | Path] = {**gathered()}
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_bytes(gathered()["events.jsonl"])  # as the exporter hands it over: a path
    files["events.jsonl"] = jsonl
    assert verify_pack(build(tmp_path, files), VKEY).valid


# ---------------------------------------------------------------------------
# Tampering, each named


def test_a_changed_byte_is_named(tmp_path: Path) -> None:
    path = build(tmp_path)
    content = members(path)
    content["alerts.json"] = content["alerts.json"].replace(b"[]", b"[1]")
    assert codes(rezip(path, content)) == ["size_mismatch"]
    content = members(build(tmp_path))
    content["events.csv"] = content["events.csv"].replace(b"user_3", b"user_4", 1)
    result = verify_pack(rezip(path, content), VKEY)
    assert [(p.code, p.file) for p in result.problems] == [("sha256_mismatch", "events.csv")]
    assert "the manifest says" in result.report() and result.report().startswith("INVALID")


def test_a_dropped_file_and_an_added_file(tmp_path: Path) -> None:
    path = build(tmp_path)
    content = members(path)
    del content["checkpoints/12.txt"]
    result = verify_pack(rezip(path, content), VKEY)
    assert [(p.code, p.file) for p in result.problems] == [
        ("file_missing", "checkpoints/12.txt"),
        ("checkpoint_invalid", "checkpoints.json"),
    ]
    content = members(build(tmp_path))
    assert codes(rezip(path, {**content, "extra.txt": b"hello"})) == ["file_extra"]
    twice = (("alerts.json", content["alerts.json"]),)
    with pytest.warns(UserWarning, match="Duplicate name"):
        rezip(path, content, twice)
    assert codes(path) == ["file_duplicate"]
    del content["manifest.sig"]
    assert codes(rezip(path, content)) == ["manifest_missing"]


def test_another_key_or_an_edited_manifest_is_a_bad_signature(tmp_path: Path) -> None:
    other = parse_signer_key(generate_key(KEY_NAME)[0])[1]
    assert codes(build(tmp_path, private=other)) == ["bad_signature"]
    path = build(tmp_path)
    content = members(path)
    content["manifest.json"] = content["manifest.json"].replace(b"2026-04-01", b"2026-05-01")
    result = verify_pack(rezip(path, content), VKEY)
    assert [p.code for p in result.problems] == ["bad_signature"]
    assert "invalid signature" in result.problems[0].detail
    content = members(build(tmp_path))
    content["manifest.sig"] = b"not a signature\n"
    assert codes(rezip(path, content)) == ["bad_signature"]


def test_what_is_not_a_pack(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    assert codes(junk) == ["unreadable"]
    # A damaged byte inside a compressed member: the zip itself no longer reads.
    path = build(tmp_path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("events.jsonl")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert codes(path) == ["unreadable"]
    # Signed, but not a manifest of this format.
    manifest = b'{"format": "something-else/1"}\n'
    sig = packformat.sign_manifest(manifest, KEY_NAME, PRIVATE)
    odd = rezip(tmp_path / "odd.zip", {"manifest.json": manifest, "manifest.sig": sig})
    assert codes(odd) == ["manifest_invalid"]


# A signer that lies: every hash in the manifest is right, the contents are not.


def test_a_rehashed_event_breaks_the_chain_even_when_the_manifest_is_resigned(
    tmp_path: Path,
) -> None:
    content = members(build(tmp_path))
    lines = content["events.jsonl"].splitlines(keepends=True)
    doc = orjson.loads(lines[4])
    doc["actor_id"] = "mallory"
    body = {k: v for k, v in doc.items() if k not in DERIVED}
    doc["hash"] = hashlib.sha256(canonical(body)).hexdigest()  # a forger rehashes the row
    lines[4] = orjson.dumps(doc) + b"\n"
    content["events.jsonl"] = b"".join(lines)
    _resign(content)
    result = verify_pack(rezip(tmp_path / "forged.zip", content), VKEY)
    # The next row's prev_hash still names the old hash: the link breaks.
    assert [p.code for p in result.problems] == ["events_broken"]
    assert "line 6 seq 9: chain_break" in result.problems[0].detail


def test_a_rewritten_history_fails_against_the_signed_tree(tmp_path: Path) -> None:
    """Every event from seq 8 on rehashed and relinked, in both files: each file is a valid
    chain, but not the one the log signed, nor the one verified."""
    forged = gathered(_log().rebuilt(20, change_seq=8, actor_id="mallory"))
    files = gathered()
    for name in ("events.csv", "events.jsonl", "admin-trail.csv"):
        files[name] = forged[name]
    found = codes(build(tmp_path, files))
    assert found == ["not_included", "verification_mismatch"], found


def test_resigned_content_problems_are_each_named(tmp_path: Path) -> None:
    files = gathered()
    lg = _log()
    cps = orjson.loads(files["checkpoints.json"])
    other = Log(OTHER_WS).add(20)
    cases: dict[str, dict[str, bytes]] = {
        "log_key_mismatch": {"log-key.txt": (generate_key(KEY_NAME)[1] + "\n").encode()},
        "workspace_mismatch": {
            "admin-trail.csv": _csv([e for e in other.events if e["seq"] in (11, 12)])
        },
        "checkpoint_invalid": {"checkpoints/12.txt": other.checkpoint(12).encode()},
        "not_included": {
            "checkpoints.json": packformat.json_bytes(
                {**cps, "covering": {**cps["covering"], "audit_path": lg.inclusion(17, 20)}}
            )
        },
        "inconsistent": {
            "checkpoints.json": packformat.json_bytes(
                {**cps, "consistency": {**cps["consistency"], "proof": lg.consistency(12, 20)}}
            )
        },
        "chain_broken": {
            "verification.json": files["verification.json"].replace(
                b'"valid": true', b'"valid": false'
            )
        },
        "verification_mismatch": {
            "verification.json": files["verification.json"].replace(
                b'"last_seq": 18', b'"last_seq": 17'
            )
        },
        "controls_mismatch": {
            "controls.json": packformat.json_bytes(packformat.controls_document(["CC1"]))
        },
        "malformed": {"checkpoints.json": b'{"checkpoints": 5}\n'},
    }
    for code, change in cases.items():
        path = tmp_path / f"{code}.zip"
        with zipfile.ZipFile(build(tmp_path)) as zf:
            content = {n: zf.read(n) for n in zf.namelist()}
        content.update(change)
        _resign(content)
        assert codes(rezip(path, content)) == [code], code


def _resign(content: dict[str, bytes]) -> None:
    """Make the manifest list ``content`` as it is, and sign it with the log's key."""
    manifest = orjson.loads(content["manifest.json"])
    manifest["files"] = [
        {"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for n, d in sorted(content.items())
        if n not in ("manifest.json", "manifest.sig")
    ]
    content["manifest.json"] = packformat.json_bytes(manifest)
    content["manifest.sig"] = packformat.sign_manifest(content["manifest.json"], KEY_NAME, PRIVATE)


def test_an_uncovered_pack_says_so(tmp_path: Path) -> None:
    files = gathered()
    cps = orjson.loads(files["checkpoints.json"])
    files["checkpoints.json"] = packformat.json_bytes({**cps, "covering": None})
    result = verify_pack(build(tmp_path, files), VKEY)
    assert result.valid and result.notes == [
        "no checkpoint in the pack covers its last event (seq 18)"
    ]


def test_an_empty_period_verifies(tmp_path: Path) -> None:
    files = {
        **gathered(),
        "events.csv": _csv([]),
        "events.jsonl": b"",
        "admin-trail.csv": _csv([]),
        "verification.json": packformat.json_bytes({"range": None, "scheduled_runs": []}),
    }
    files = {k: v for k, v in files.items() if not k.startswith("checkpoints/")}
    files["checkpoints.json"] = packformat.json_bytes(
        {"checkpoints": [], "covering": None, "consistency": None}
    )
    result = verify_pack(build(tmp_path, files), VKEY)
    assert result.valid, result.report()
    assert result.events["events.csv"]["rows_checked"] == 0


# ---------------------------------------------------------------------------
# The standalone script of docs/evidence-packs.md


def _run(tmp: Path, *args: Path | str) -> subprocess.CompletedProcess[str]:
    return run_script(tmp, doc_script(DOC, "standalone-pack-verifier"), "verify_pack.py", *args)


def test_standalone_is_short_and_needs_only_cryptography() -> None:
    check_short_and_self_contained(doc_script(DOC, "standalone-pack-verifier"), 100)


def test_standalone_accepts_a_pack_and_names_each_tamper(tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text(VKEY + "\n", encoding="utf-8")
    path = build(tmp_path)
    ok = _run(tmp_path, path, key_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"VALID: evidence pack of workspace {WS}")
    assert _run(tmp_path, path, VKEY).returncode == 0  # the key itself, not a file
    content = members(path)
    cases: dict[str, tuple[dict[str, bytes], tuple[tuple[str, bytes], ...]]] = {
        "events.csv: size": (
            {**content, "events.csv": content["events.csv"].replace(b"user_3", b"user_4", 1)},
            (),
        ),
        "alerts.json: listed in the manifest, missing": (
            {k: v for k, v in content.items() if k != "alerts.json"},
            (),
        ),
        "extra.txt: in the zip, not listed": ({**content, "extra.txt": b"x"}, ()),
        "manifest.sig: not a valid signature": (
            {**content, "manifest.json": content["manifest.json"].replace(b"CC6", b"CC1")},
            (),
        ),
        "a file name appears twice": (content, (("README.txt", b"again"),)),
    }
    for expected, (changed, extra) in cases.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the duplicate name, on purpose
            bad = rezip(tmp_path / "bad.zip", changed, extra)
        done = _run(tmp_path, bad, key_file)
        assert done.returncode == 1, (expected, done.stdout + done.stderr)
        assert expected in done.stdout, (expected, done.stdout)
    other = build(tmp_path, private=parse_signer_key(generate_key(KEY_NAME)[0])[1])
    done = _run(tmp_path, other, key_file)
    assert done.returncode == 1 and "manifest.sig: not a valid signature" in done.stdout
    assert _run(tmp_path, path).returncode == 2
    assert json.loads(content["manifest.json"])["format"] == packformat.FORMAT
