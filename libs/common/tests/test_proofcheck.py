"""Checking signed checkpoints and proofs (libs/common/proofcheck.py) against
logs built in memory: a real hash chain, its tree's nodes, a real Ed25519
key. The docs' examples and standalone verifier: test_proofs_doc.py."""

from __future__ import annotations

import base64
import copy
import hashlib
from typing import Any

import pytest

from libs.common.chain import Head, canonical, link
from libs.common.checkpoint import (
    Checkpoint,
    NoteError,
    SignatureError,
    generate_key,
    parse_signer_key,
    sign_checkpoint,
    workspace_origin,
)
from libs.common.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    event_leaf_hash,
    inclusion_proof,
    root_at,
)
from libs.common.proofcheck import (
    OriginMismatch,
    check_checkpoint,
    check_consistency,
    check_inclusion,
    check_signed,
    decode_proof,
)

WS = "3f1c2b7e-8d4a-4c1e-9b2f-6a5d4e3c2b1a"
OTHER_WS = "0c4d5e6f-1a2b-4c3d-8e9f-000000000002"
KEY_NAME = "chainlog.local"
SIGNER, VKEY = generate_key(KEY_NAME)
#: Served next to the event and not hashed.
DERIVED = ("hash", "ip_country", "ip_city")
SYSTEM = ("workspace_id", "seq", "prev_hash")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Log:
    """A workspace's log as the server keeps it: chain, tree nodes, signing key."""

    def __init__(self, ws: str = WS, signer: str = SIGNER) -> None:
        self.ws = ws
        self.signer = signer
        self.head = Head()
        self.events: list[dict[str, Any]] = []  # as served: body, hash, ip_country, ip_city
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.tree = CompactRange()
        self.clock = 1768471200

    def add(self, n: int, action: str = "document.delete") -> Log:
        for _ in range(n):
            seq = self.head.seq + 1
            self.append(
                {
                    "id": f"019bc119-0101-7000-8000-{seq:012d}",
                    "received_at": f"2026-01-15T10:{seq // 60 % 60:02d}:{seq % 60:02d}.001123Z",
                    "actor_id": f"user_{seq % 5}",
                    "action": action,
                    "metadata": {"n": seq, "ratio": seq / 7, "why": "é 😀\n"},
                }
            )
        return self

    def append(self, fields: dict[str, Any]) -> None:
        event = copy.deepcopy(fields)
        _, digest = link(self.head, self.ws, event)
        event.update(hash=digest, ip_country="FR", ip_city="Paris")
        self.events.append(event)
        self.append_leaf(event_leaf_hash(digest))

    def append_leaf(self, leaf: bytes) -> None:
        for level, index, node in self.tree.append(leaf):
            self.nodes[(level, index)] = node

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]

    @property
    def size(self) -> int:
        return self.tree.size

    def checkpoint(self, size: int | None = None) -> str:
        """A signed note for the tree of ``size`` (the whole tree by default)."""
        size = self.size if size is None else size
        self.clock += 60
        cp = Checkpoint(
            workspace_origin(self.ws),
            size,
            root_at(size, self.get),
            (f"timestamp {self.clock}",),
        )
        name, private = parse_signer_key(self.signer)
        return sign_checkpoint(cp, name, private)

    def consistency(self, m: int, n: int) -> list[str]:
        return [b64(x) for x in consistency_proof(m, n, self.get)]

    def inclusion(self, seq: int, size: int) -> list[str]:
        return [b64(x) for x in inclusion_proof(seq - 1, size, self.get)]

    def served(self, seq: int) -> dict[str, Any]:
        return copy.deepcopy(self.events[seq - 1])

    def rebuilt(self, keep: int, change_seq: int | None = None, **change: Any) -> Log:
        """The log as a rewriter leaves it: the first ``keep`` events, one changed
        and all after it rehashed and relinked, the tree rebuilt, the same key."""
        other = Log(self.ws, self.signer)
        other.clock = self.clock
        for event in self.events[:keep]:
            fields = {k: v for k, v in event.items() if k not in (*SYSTEM, *DERIVED)}
            if event["seq"] == change_seq:
                fields.update(change)
            other.append(fields)
        return other


def log(n: int, ws: str = WS, signer: str = SIGNER) -> Log:
    return Log(ws, signer).add(n)


# ---------------------------------------------------------------------------
# Checkpoints


def test_check_checkpoint_opens_a_signed_note_and_pins_the_origin() -> None:
    lg = log(5)
    note = lg.checkpoint()
    cp = check_checkpoint(note, VKEY)
    assert (cp.origin, cp.size, cp.root) == (workspace_origin(WS), 5, lg.tree.root())
    assert check_checkpoint(note.encode(), VKEY, origin=f"chainlog.local/{WS}") == cp
    with pytest.raises(OriginMismatch, match=f"is of chainlog.local/{WS}"):
        check_checkpoint(note, VKEY, origin=f"chainlog.local/{OTHER_WS}")
    _, other_key = generate_key(KEY_NAME)
    with pytest.raises(SignatureError):
        check_checkpoint(note, other_key)
    with pytest.raises(SignatureError):  # the body changed under the signature
        check_checkpoint(note.replace("\n5\n", "\n6\n", 1), VKEY)
    with pytest.raises(NoteError):
        check_checkpoint("not a note\n", VKEY)
    result = check_signed(note, other_key)
    assert not result.ok and result.code == "bad_signature"
    assert check_signed(note, VKEY).ok and check_signed(note, VKEY).checkpoint == cp


def test_decode_proof_requires_32_byte_base64_hashes() -> None:
    assert decode_proof([b64(b"\x01" * 32)]) == [b"\x01" * 32]
    for bad in (["AAAA"], ["not base64!"], [b64(b"\x01" * 33)], "abc", [None]):
        with pytest.raises(ValueError, match="base64"):
            decode_proof(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Consistency


@pytest.mark.parametrize(("m", "n"), [(1, 2), (1, 8), (3, 7), (4, 8), (6, 8), (7, 12), (13, 64)])
def test_a_consistent_extension_passes(m: int, n: int) -> None:
    lg = log(m)
    old = lg.checkpoint()
    lg.add(n - m)
    result = check_consistency(old, lg.checkpoint(), lg.consistency(m, n), VKEY)
    assert result.ok and result.code == "consistent", result.reason
    assert result.reason == f"size {n} extends size {m}"
    assert result.old is not None and result.old.size == m
    assert result.checkpoint is not None and result.checkpoint.size == n
    assert result.as_dict()["checkpoint"]["root_hash"] == b64(lg.tree.root())
    assert result.report().startswith(f"CONSISTENT: size {n} extends size {m}\n  chainlog.local/")


def test_every_pair_of_sizes_is_consistent_and_no_other_proof_is() -> None:
    lg = log(20)
    notes = [lg.checkpoint(s) for s in range(21)]
    for m in range(21):
        for n in range(m, 21):
            assert check_consistency(notes[m], notes[n], lg.consistency(m, n), VKEY).ok, (m, n)
            if 0 < m < n:  # a proof for another pair does not pass
                wrong = lg.consistency(m - 1, n) if m > 1 else lg.consistency(m, n - 1)
                assert not check_consistency(notes[m], notes[n], wrong, VKEY).ok, (m, n)


def test_same_size_and_root_is_consistent_with_no_proof() -> None:
    lg = log(9)
    first, later = lg.checkpoint(), lg.checkpoint()  # a heartbeat: a newer timestamp
    assert first != later
    result = check_consistency(first, later, [], VKEY)
    assert result.ok and result.reason == "same size 9 and root"


def test_deleted_newest_events_are_detected() -> None:
    lg = log(100)
    old = lg.checkpoint()
    cut = lg.rebuilt(90)  # the last ten rows deleted, the tree rebuilt, signed later
    result = check_consistency(old, cut.checkpoint(), [], VKEY)
    assert not result.ok and result.code == "shrunk"
    assert result.reason.startswith(
        "the log is smaller than a size it signed: 90 < 100 (events deleted?)"
    )
    # Growing past the old size again, with other events, does not hide it.
    cut.add(15, action="user.login")
    new = cut.checkpoint()
    result = check_consistency(old, new, cut.consistency(100, 105), VKEY)
    assert not result.ok and result.code == "inconsistent"


@pytest.mark.parametrize("changed", [1, 37, 64, 99])
def test_rewritten_history_fails_consistency(changed: int) -> None:
    honest = log(100)
    old = honest.checkpoint()
    forged = honest.rebuilt(100, changed, actor_id="mallory")
    assert forged.events[changed - 1]["hash"] != honest.events[changed - 1]["hash"]
    forged.add(20)  # and the log goes on
    new = forged.checkpoint()
    for proof in (forged.consistency(100, 120), honest.add(20).consistency(100, 120), []):
        result = check_consistency(old, new, proof, VKEY)
        assert not result.ok and result.code == "inconsistent"
        assert result.reason.startswith(
            "the tree of size 120 does not extend the signed tree of size 100"
        )


def test_a_fork_at_the_same_size_is_detected() -> None:
    honest = log(50)
    forged = honest.rebuilt(50, 50, action="document.view")
    result = check_consistency(honest.checkpoint(), forged.checkpoint(), [], VKEY)
    assert not result.ok and result.code == "fork"
    assert result.reason.startswith("fork: two different roots signed for size 50")


def test_a_wrong_key_is_refused() -> None:
    lg = log(10)
    old = lg.checkpoint()
    lg.add(5)
    other_signer, other_key = generate_key(KEY_NAME)
    impostor = Log(WS, other_signer).add(15)
    for o, n, key, which in [
        (old, lg.checkpoint(), other_key, "the old checkpoint"),
        (old, impostor.checkpoint(), VKEY, "the new checkpoint"),
    ]:
        result = check_consistency(o, n, lg.consistency(10, 15), key)
        assert not result.ok and result.code == "bad_signature"
        assert result.reason.startswith(f"{which}: no signature by key {KEY_NAME}+")
    result = check_consistency(old, "garbage", [], VKEY)
    assert not result.ok and result.code == "malformed_checkpoint"


def test_another_workspace_under_the_same_key_is_refused() -> None:
    """One key signs every workspace: only the origin tells them apart."""
    mine, theirs = log(10), log(30, OTHER_WS)
    result = check_consistency(mine.checkpoint(), theirs.checkpoint(), [], VKEY)
    assert not result.ok and result.code == "origin_mismatch"
    assert OTHER_WS in result.reason
    result = check_consistency(
        mine.checkpoint(), mine.checkpoint(), [], VKEY, origin=workspace_origin(OTHER_WS)
    )
    assert not result.ok and result.code == "origin_mismatch"


def test_a_malformed_proof_is_reported_as_such() -> None:
    lg = log(8)
    old = lg.checkpoint(5)
    result = check_consistency(old, lg.checkpoint(), ["AAAA"], VKEY)
    assert not result.ok and result.code == "malformed_proof"


# ---------------------------------------------------------------------------
# Inclusion


def test_every_event_is_included_at_every_size() -> None:
    lg = log(17)
    for size in range(1, 18):
        note = lg.checkpoint(size)
        for seq in range(1, size + 1):
            event = lg.served(seq)
            result = check_inclusion(event, seq, lg.inclusion(seq, size), note, VKEY)
            assert result.ok and result.code == "included", (seq, size, result.reason)
            by_hash = check_inclusion(event["hash"], seq, lg.inclusion(seq, size), note, VKEY)
            assert by_hash.ok
            if size > 1:
                other = seq % size + 1
                assert not check_inclusion(event, seq, lg.inclusion(other, size), note, VKEY).ok, (
                    seq,
                    size,
                )


def test_inclusion_takes_seq_from_the_body_and_reports_it() -> None:
    lg = log(12)
    result = check_inclusion(lg.served(5), None, lg.inclusion(5, 12), lg.checkpoint(), VKEY)
    assert result.ok and result.reason == "event seq 5 is in the signed tree of size 12"
    assert result.report().startswith("INCLUDED: event seq 5")


def test_a_changed_event_body_is_detected() -> None:
    lg = log(12)
    note, path = lg.checkpoint(), lg.inclusion(5, 12)
    event = lg.served(5)
    event["actor_id"] = "mallory"
    result = check_inclusion(event, 5, path, note, VKEY)
    assert not result.ok and result.code == "hash_mismatch"
    assert result.reason.startswith("the event does not hash to its hash")
    # Its hash recomputed too: not the event the log signed.
    event["hash"] = hashlib.sha256(
        canonical({k: v for k, v in event.items() if k not in DERIVED})
    ).hexdigest()
    result = check_inclusion(event, 5, path, note, VKEY)
    assert not result.ok and result.code == "not_included"
    # The derived, unhashed fields may change: they are not part of the proof.
    event = lg.served(5) | {"ip_country": "DE", "ip_city": None}
    assert check_inclusion(event, 5, path, note, VKEY).ok


def test_an_event_served_from_a_rewritten_log_is_not_in_the_kept_tree() -> None:
    honest = log(40)
    kept = honest.checkpoint()
    forged = honest.rebuilt(40, 12, action="document.view")
    for seq in (12, 13, 40):
        event = forged.served(seq)
        result = check_inclusion(event, seq, forged.inclusion(seq, 40), kept, VKEY)
        assert not result.ok and result.code == "not_included", seq
    # An event before the change is the same event, proven by the true tree only.
    assert forged.served(11) == honest.served(11)
    assert not check_inclusion(forged.served(11), 11, forged.inclusion(11, 40), kept, VKEY).ok
    assert check_inclusion(forged.served(11), 11, honest.inclusion(11, 40), kept, VKEY).ok


def test_inclusion_refusals() -> None:
    lg = log(12)
    note, path = lg.checkpoint(10), lg.inclusion(5, 10)
    cases: list[tuple[Any, int | None, list[str], str, str]] = [
        (lg.served(5), 6, path, VKEY, "seq_mismatch"),
        (lg.served(11), 11, path, VKEY, "not_covered"),
        (lg.served(5), 5, path, generate_key(KEY_NAME)[1], "bad_signature"),
        (lg.served(5), 5, ["%%%"], VKEY, "malformed_proof"),
        (lg.served(5), 5, [*path, path[0]], VKEY, "not_included"),
        (lg.served(5) | {"metadata": {"x": float("nan")}}, 5, path, VKEY, "malformed_event"),
        ("ab" * 31, 5, path, VKEY, "malformed_event"),
        (lg.served(5)["hash"], 11, path, VKEY, "not_covered"),
    ]
    for event, seq, proof, key, code in cases:
        result = check_inclusion(event, seq, proof, note, key)
        assert not result.ok and result.code == code, (code, result.reason)
    theirs = log(12, OTHER_WS)
    result = check_inclusion(theirs.served(5), 5, theirs.inclusion(5, 12), note, VKEY)
    assert not result.ok and result.code == "origin_mismatch"
    with pytest.raises(ValueError, match="seq is needed"):
        check_inclusion(lg.served(5)["hash"], None, path, note, VKEY)


def test_an_empty_tree_is_extended_by_any_tree() -> None:
    lg = Log()
    empty = lg.checkpoint()
    assert check_checkpoint(empty, VKEY).root == EMPTY_ROOT
    lg.add(3)
    assert check_consistency(empty, lg.checkpoint(), [], VKEY).ok
    assert not check_consistency(empty, lg.checkpoint(), lg.consistency(1, 3), VKEY).ok
