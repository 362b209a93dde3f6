"""docs/proofs.md: its examples are real, and its standalone verifier (Python
and `cryptography` only) checks good logs and refuses tampered ones, run as a
program against files, as a reader would run it."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import subprocess
from pathlib import Path
from typing import Any

from libs.common.chain import canonical
from libs.common.checkpoint import generate_key, verifier_key, workspace_origin
from libs.common.merkle import (
    consistency_proof,
    event_leaf_hash,
    inclusion_proof,
    root_at,
    verify_consistency,
    verify_inclusion,
)
from libs.common.proofcheck import check_checkpoint, check_consistency, check_inclusion
from libs.common.tests.docscripts import check_short_and_self_contained, doc_script, run_script
from libs.common.tests.test_chain import _event, _float, _value
from libs.common.tests.test_merkle import (
    CONSISTENCY_VECTORS,
    INCLUSION_VECTORS,
    NH,
    ROOTS,
    distinct_leaves,
)
from libs.common.tests.test_proofcheck import (
    KEY_NAME,
    OTHER_WS,
    VKEY,
    WS,
    Log,
    b64,
    log,
)

ROOT = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------------------
# docs/proofs.md: its examples are real


DOCS = ROOT / "docs" / "proofs.md"
EXAMPLE_SEED = hashlib.sha256(b"chainlog docs/proofs.md example key").digest()


def _example(name: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(rf"<!-- example: {name} -->\n```\w+\n(.*?)```\n", text, re.S)
    assert block is not None, name
    return block[1]


def _vector_log() -> Log:
    """The log of docs/hash-chain-vectors.json, from its published hashes."""
    doc = json.loads((ROOT / "docs" / "hash-chain-vectors.json").read_text(encoding="utf-8"))
    lg = Log(doc["workspace_id"])
    for v in sorted(doc["vectors"], key=lambda v: v["seq"]):
        lg.append_leaf(event_leaf_hash(v["hash"]))
    return lg


def test_the_docs_examples_verify() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = _example("verifier-key").strip()
    assert key == verifier_key(
        KEY_NAME, Ed25519PrivateKey.from_private_bytes(EXAMPLE_SEED).public_key()
    )
    lg = _vector_log()
    old, new = _example("checkpoint-7"), _example("checkpoint-12")
    assert check_checkpoint(old, key).root == root_at(7, lg.get)
    assert check_checkpoint(new, key, origin=workspace_origin(WS)).root == lg.tree.root()
    consistency = json.loads(_example("consistency-7-12"))
    assert consistency["proof"] == lg.consistency(7, 12)
    assert consistency["first_root"] == b64(root_at(7, lg.get))
    assert consistency["second_root"] == b64(lg.tree.root())
    assert check_consistency(old, new, consistency["proof"], key).ok
    event = json.loads(_example("event-1"))
    inclusion = json.loads(_example("inclusion-1-12"))
    assert inclusion["audit_path"] == lg.inclusion(1, 12)
    assert inclusion["event_hash"] == event["hash"] and inclusion["root_hash"] == b64(
        lg.tree.root()
    )
    assert check_inclusion(event, inclusion["seq"], inclusion["audit_path"], new, key).ok


# ---------------------------------------------------------------------------
# The standalone verifier of docs/proofs.md


def _standalone_code() -> str:
    return doc_script(DOCS, "standalone-proof-verifier")


def _standalone() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "standalone"}
    exec(compile(_standalone_code(), str(DOCS), "exec"), namespace)
    return namespace


def _run(tmp: Path, *args: Path | str) -> subprocess.CompletedProcess[str]:
    return run_script(tmp, _standalone_code(), "verify_proof.py", *args)


def _files(tmp: Path, **docs: str | dict[str, Any] | list[str]) -> dict[str, Path]:
    out = {}
    for name, doc in docs.items():
        path = tmp / name
        if isinstance(doc, str):
            path.write_bytes(doc.encode("utf-8"))
        else:
            path.write_text(json.dumps(doc), encoding="utf-8")
        out[name] = path
    return out


def test_standalone_is_short_and_needs_only_cryptography() -> None:
    check_short_and_self_contained(_standalone_code(), 180)


def test_standalone_rfc9162_known_answers_and_random_trees() -> None:
    ns = _standalone()
    for number, size, proof in INCLUSION_VECTORS:  # the leaf's number is 1-based
        assert ns["verify_inclusion"](NH[0][number - 1], number - 1, size, proof, ROOTS[size])
        assert not ns["verify_inclusion"](NH[0][number - 1], number, size, proof, ROOTS[size])
    for m, n, proof in CONSISTENCY_VECTORS:
        if m < n:
            assert ns["verify_consistency"](m, n, ROOTS[m], ROOTS[n], proof)
            assert not ns["verify_consistency"](m, n, ROOTS[m], ROOTS[n], proof[:-1])
    # Agrees with the library on proofs good and bad, over random trees.
    rng = random.Random(9162)
    for _ in range(40):
        size = rng.randint(1, 70)
        lg = Log()
        for leaf_hash in distinct_leaves(size):
            lg.append_leaf(leaf_hash)
        i, m = rng.randrange(size), rng.randint(1, size)
        path, cproof = inclusion_proof(i, size, lg.get), consistency_proof(m, size, lg.get)
        leaf, rt, rm = lg.get(0, i), lg.tree.root(), root_at(m, lg.get)
        assert ns["verify_inclusion"](leaf, i, size, path, rt)
        if path:
            bad = [*path]
            bad[rng.randrange(len(path))] = b"\x07" * 32
            assert not ns["verify_inclusion"](leaf, i, size, bad, rt)
            assert not verify_inclusion(leaf, i, size, bad, rt)
        if m < size:
            assert ns["verify_consistency"](m, size, rm, rt, cproof)
            bad = [*cproof]
            bad[rng.randrange(len(cproof))] = b"\x07" * 32
            assert not ns["verify_consistency"](m, size, rm, rt, bad)
            assert not verify_consistency(m, size, rm, rt, bad)


def test_standalone_jcs_matches_chain_canonical() -> None:
    jcs = _standalone()["jcs"]
    rng = random.Random(8785)
    values: list[Any] = [1e21, 1e-7, 1e-6, 1e-4, 9.99999999999999e-07, 0.1, -0.0, 1.0, 5e-324]
    values += [1e16, 3.311161497014911e17, 2**53 - 1, 0, '\x00\x1f\x7f\u2028/"\\é😀', True, None]
    values += [rng.choice([-1, 1]) * 10 ** rng.uniform(-330, 308) for _ in range(3000)]
    values += [_float(rng) for _ in range(2000)] + [_value(rng, 0, True) for _ in range(2000)]
    values += [{"😀k": 1, "ａ": 2, "z": 3, "é": {"\U0010ffff": 0, "\uffff": 1}}]
    for v in values:
        assert jcs({"v": v}).encode("utf-8") == canonical({"v": v}), v
    for _ in range(1000):
        ev = _event(rng)
        assert jcs(ev).encode("utf-8") == canonical(copy.deepcopy(ev)), ev


def test_standalone_on_the_docs_examples(tmp_path: Path) -> None:
    f = _files(
        tmp_path,
        key=_example("verifier-key"),
        old=_example("checkpoint-7"),
        new=_example("checkpoint-12"),
        consistency=_example("consistency-7-12"),
        event=_example("event-1"),
        inclusion=_example("inclusion-1-12"),
    )
    done = _run(tmp_path, "consistency", f["key"], f["old"], f["new"], f["consistency"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"CONSISTENT: size 12 extends size 7 of chainlog.local/{WS}")
    done = _run(tmp_path, "inclusion", f["key"], f["new"], f["event"], f["inclusion"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("INCLUDED: event seq 1 (88bb99b6")


def test_standalone_consistency_good_and_bad(tmp_path: Path) -> None:
    honest = log(100)
    old = honest.checkpoint()
    forged = honest.rebuilt(100, 40, actor_id="mallory").add(20)
    cut = honest.rebuilt(90)
    honest.add(20)
    new = honest.checkpoint()
    latest = {"size": 120, "root_hash": b64(honest.tree.root()), "checkpoint": new}
    f = _files(
        tmp_path,
        key=VKEY + "\n",
        old=old,
        new=new,
        latest=latest,
        proof={"first": 100, "second": 120, "proof": honest.consistency(100, 120)},
        forged=forged.checkpoint(),
        forged_proof={"proof": forged.consistency(100, 120)},
        cut=cut.checkpoint(),
        fork=honest.rebuilt(100, 100, action="x").checkpoint(),
        other_key=generate_key(KEY_NAME)[1],
        altered=new.replace("\n120\n", "\n121\n", 1),
        theirs=log(120, OTHER_WS).checkpoint(),
    )
    for new_file in ("new", "latest"):
        done = _run(tmp_path, "consistency", f["key"], f["old"], f[new_file], f["proof"])
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("CONSISTENT: size 120 extends size 100")
    assert _run(tmp_path, "consistency", VKEY, f["old"], f["old"]).returncode == 0
    failures = [
        ((f["key"], f["old"], f["forged"], f["forged_proof"]), "size 120 does not extend size 100"),
        ((f["key"], f["old"], f["cut"]), "the log is smaller than a size it signed: 90 < 100"),
        ((f["key"], f["old"], f["fork"]), "fork: two different roots signed for size 100"),
        ((f["other_key"], f["old"], f["new"], f["proof"]), "not signed by chainlog.local+"),
        ((f["key"], f["old"], f["altered"], f["proof"]), "does not verify"),
        ((f["key"], f["old"], f["theirs"], f["proof"]), "the checkpoints are of two logs"),
    ]
    for args, reason in failures:
        done = _run(tmp_path, "consistency", *args)
        assert done.returncode == 1 and done.stderr.startswith("FAILED: "), done.stderr
        assert reason in done.stderr and "CONSISTENT" not in done.stdout
    done = _run(tmp_path, "consistency", f["key"], f["old"], f["new"], tmp_path / "missing.json")
    assert done.returncode == 2 and "usage" in done.stderr


def test_standalone_inclusion_good_and_bad(tmp_path: Path) -> None:
    lg, theirs = log(30), log(30, OTHER_WS)
    note = lg.checkpoint()
    changed = lg.served(17) | {"actor_id": "mallory"}
    f = _files(
        tmp_path,
        key=VKEY,
        cp=note,
        event=lg.served(17),
        proof={"seq": 17, "tree_size": 30, "audit_path": lg.inclusion(17, 30)},
        changed=changed,
        other_proof={"audit_path": lg.inclusion(18, 30)},
        old=lg.checkpoint(10),
        theirs=theirs.served(17),
        their_proof={"audit_path": theirs.inclusion(17, 30)},
    )
    done = _run(tmp_path, "inclusion", f["key"], f["cp"], f["event"], f["proof"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"INCLUDED: event seq 17 ({lg.events[16]['hash']})")
    failures = [
        (f["changed"], f["proof"], f["cp"], "does not hash to its hash"),
        (f["event"], f["other_proof"], f["cp"], "is not in the signed tree of size 30"),
        (f["event"], f["proof"], f["old"], "seq 17 is not in the tree of size 10"),
        (f["theirs"], f["their_proof"], f["cp"], f"the event is of workspace {OTHER_WS}"),
    ]
    for event, proof, cp, reason in failures:
        done = _run(tmp_path, "inclusion", f["key"], cp, event, proof)
        assert done.returncode == 1 and reason in done.stderr, done.stderr
