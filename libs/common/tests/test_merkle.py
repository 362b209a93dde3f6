"""RFC 9162 Merkle tree: known answers from Certificate Transparency, proofs
served from the nodes CompactRange.append returns, and RFC verification."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from libs.common.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    event_leaf_hash,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_at,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

# ---------------------------------------------------------------------------
# Known answers. Leaf inputs, node hashes, roots and compact trees from
# transparency-dev/merkle testonly/constants.go (commit 582a6ad1); inclusion
# and consistency proofs from transparency-dev/merkle proof/verify_test.go
# (commit 02194e9a), the vectors Trillian and certificate-transparency-go
# carried before. Inclusion vectors there name the leaf 1-based.

LEAF_INPUTS = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243")] + [
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]

NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

ROOTS = [  # by tree size, from 0
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

NH = NODE_HASHES
# CompactTrees() by tree size: "2.0 1.2" is {nh[2][0], nh[1][2]}.
_CT = ["", "0.0", "1.0", "1.0 0.2", "2.0", "2.0 0.4", "2.0 1.2", "2.0 1.2 0.6", "3.0"]
COMPACT_TREES = [[(int(x[0]), NH[int(x[0])][int(x[2])]) for x in t.split()] for t in _CT]

# Proof hashes by the first 8 hex digits verify_test.go writes them with; each
# names one node hash above (checked in test_leaf_and_node_hashes).
_BY_PREFIX = {x.hex()[:8]: x for row in NODE_HASHES for x in row}


def _p(prefixes: str) -> list[bytes]:
    return [_BY_PREFIX[x] for x in prefixes.split()]


INCLUSION_VECTORS = [  # (1-based leaf, size, proof)
    (1, 1, _p("")),
    (1, 8, _p("96a296d2 5f083f0a 6b47aaf2")),
    (6, 8, _p("bc1a0643 ca854ea1 d37ee418")),
    (3, 3, _p("fac54203")),
    (2, 5, _p("6e340b9c 5f083f0a bc1a0643")),
]
CONSISTENCY_VECTORS = [  # (size1, size2, proof)
    (1, 1, _p("")),
    (1, 8, _p("96a296d2 5f083f0a 6b47aaf2")),
    (6, 8, _p("0ebc5d34 ca854ea1 d37ee418")),
    (2, 5, _p("5f083f0a bc1a0643")),
    (6, 7, _p("0ebc5d34 b08693ec d37ee418")),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


class Store:
    """The node table: what CompactRange.append returns, read back by get_node."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.reads = 0
        self.frontier = CompactRange()

    def append(self, leaf: bytes) -> None:
        for level, index, digest in self.frontier.append(leaf):
            assert (level, index) not in self.nodes, "a node is written once"
            self.nodes[(level, index)] = digest

    def get(self, level: int, index: int) -> bytes:
        self.reads += 1
        return self.nodes[(level, index)]


def build(leaves: Sequence[bytes]) -> Store:
    store = Store()
    for leaf in leaves:
        store.append(leaf)
    return store


def kat_store() -> Store:
    return build([leaf_hash(x) for x in LEAF_INPUTS])


def distinct_leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


# ---------------------------------------------------------------------------
# Reference: RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 as written (recursive).


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if len(d) <= 1:
        return d[0] if d else EMPTY_ROOT
    k = _k(len(d))
    return node_hash(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


# ---------------------------------------------------------------------------
# Known-answer tests


def test_leaf_and_node_hashes() -> None:
    for i, x in enumerate(LEAF_INPUTS):
        assert leaf_hash(x) == NH[0][i]
    assert node_hash(NH[0][0], NH[0][1]) == NH[1][0]
    assert node_hash(NH[1][0], NH[1][1]) == NH[2][0]
    assert ROOTS[0] == EMPTY_ROOT
    assert len(_BY_PREFIX) == len({x for row in NODE_HASHES for x in row}) == 15


def test_known_roots_every_size() -> None:
    leaves = [leaf_hash(x) for x in LEAF_INPUTS]
    rng = CompactRange()
    assert root([]) == rng.root() == ROOTS[0]
    for n in range(1, 9):
        rng.append(leaves[n - 1])
        assert root(leaves[:n]) == ROOTS[n]
        assert rng.root() == ROOTS[n]
        assert rng.entries == COMPACT_TREES[n]
    want = {(lv, i): x for lv, row in enumerate(NODE_HASHES) for i, x in enumerate(row)}
    assert kat_store().nodes == want  # append returned every node, once


def test_append_returns_completed_nodes_in_order() -> None:
    rng = CompactRange()
    leaves = [leaf_hash(x) for x in LEAF_INPUTS]
    for leaf in leaves[:7]:
        rng.append(leaf)
    done = rng.append(leaves[7])
    assert [(lv, i) for lv, i, _ in done] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    assert all(x == NH[lv][i] for lv, i, x in done)


def _garbled(proof: list[bytes], extra: bytes, bit: int) -> list[list[bytes]]:
    """Proofs one change away: each element with one bit flipped, garbage
    or ``extra`` added at either end, the last element removed, and a hash
    inserted (after corruptInclusionProof / corruptConsistencyProof in
    transparency-dev/merkle proof/verify_test.go)."""
    out = [[*proof[:i], bytes([x[0] ^ bit]) + x[1:], *proof[i + 1 :]] for i, x in enumerate(proof)]
    out += [[*proof, b""], [*proof, extra], [b"", *proof], [extra, *proof], [*proof, SOME_HASH]]
    if proof:
        out += [proof[:-1], [proof[0], *proof]]
    if len(proof) > 1:
        out.append([proof[0], SOME_HASH, *proof[1:]])
    return out


def check_inclusion_tamper(i: int, n: int, proof: list[bytes], rt: bytes, lf: bytes) -> None:
    for j, s in [(i - 1, n), (i + 1, n), (i ^ 2, n), (i, n * 2), (i, n // 2)]:
        assert not verify_inclusion(lf, j, s, proof, rt), (j, s)
    for x, r in [(b"WrongLeaf", rt), (SOME_HASH, rt), (lf, EMPTY_ROOT), (lf, SOME_HASH)]:
        assert not verify_inclusion(x, i, n, proof, r)
    for bad in _garbled(proof, rt, 8):
        assert not verify_inclusion(lf, i, n, bad, rt), bad


def check_consistency_tamper(m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes]) -> None:
    for a, b in [(m - 1, n), (m + 1, n), (m ^ 2, n), (m, n * 2), (m, n // 2)]:
        assert not verify_consistency(a, b, r1, r2, proof), (a, b)
    for x, y in [(b"WrongRoot", r2), (r1, b"Wrong"), (r2, r1), (SOME_HASH, r2), (r1, SOME_HASH)]:
        assert not verify_consistency(m, n, x, y, proof)
    for bad in [[], [r2, *proof], *_garbled(proof, r1, 16)]:
        assert not verify_consistency(m, n, r1, r2, bad), bad


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_VECTORS)
def test_known_inclusion_proofs(leaf: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(leaf - 1, size, kat_store().get) == proof
    assert verify_inclusion(NH[0][leaf - 1], leaf - 1, size, proof, ROOTS[size])
    check_inclusion_tamper(leaf - 1, size, proof, ROOTS[size], NH[0][leaf - 1])


@pytest.mark.parametrize(("m", "n", "proof"), CONSISTENCY_VECTORS)
def test_known_consistency_proofs(m: int, n: int, proof: list[bytes]) -> None:
    assert consistency_proof(m, n, kat_store().get) == proof
    assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof)
    if proof:  # verify_test.go corrupts the non-trivial ones
        check_consistency_tamper(m, n, ROOTS[m], ROOTS[n], proof)


def test_inclusion_edge_cases() -> None:
    # TestVerifyInclusionSingleEntry and TestVerifyInclusion of verify_test.go.
    one = leaf_hash(b"data")
    assert verify_inclusion(one, 0, 1, [], one)
    assert not verify_inclusion(b"", 0, 1, [], one)
    assert not verify_inclusion(one, 0, 1, [], b"")
    for index, size in [(0, 0), (0, 1), (1, 0), (2, 1)]:
        assert not verify_inclusion(SOME_HASH, index, size, [], b"")
        assert not verify_inclusion(b"", index, size, [], EMPTY_ROOT)
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    with pytest.raises(ValueError):
        inclusion_proof(8, 8, kat_store().get)


def test_consistency_edge_cases() -> None:
    # After TestVerifyConsistency of verify_test.go. One deliberate difference:
    # a tree of size 0 must have the empty root (Go does not look at it).
    r1, r2 = SOME_HASH, ROOTS[3]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert verify_consistency(1, 1, r2, r2, [])
    assert not verify_consistency(0, 1, r1, r2, [])  # not the empty root
    assert not verify_consistency(0, 0, r1, r2, [])
    assert not verify_consistency(1, 1, r1, r2, [])
    assert not verify_consistency(1, 0, r1, r2, [])  # time travel
    assert not verify_consistency(2, 1, r1, r2, [])
    assert not verify_consistency(1, 2, r1, r2, [])  # empty proof
    for m, n in [(0, 0), (0, 1), (1, 1)]:  # roots fit but the proof is not empty
        assert not verify_consistency(m, n, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    store = kat_store()
    assert consistency_proof(0, 8, store.get) == consistency_proof(8, 8, store.get) == []
    with pytest.raises(ValueError):
        consistency_proof(5, 4, store.get)


# ---------------------------------------------------------------------------
# Against the RFC's recursive definitions, and properties over random trees


def test_iterative_forms_match_the_rfc_recursion_and_verify() -> None:
    leaves = distinct_leaves(100)
    store = build(leaves)
    roots = [root_at(n, store.get) for n in range(101)]
    for n in range(1, 101):
        assert root(leaves[:n]) == ref_mth(leaves[:n]) == roots[n]
        for i in range(n):
            proof = inclusion_proof(i, n, store.get)
            assert proof == ref_path(i, leaves[:n])
            assert verify_inclusion(leaves[i], i, n, proof, roots[n])
        for m in range(0, n + 1):
            proof = consistency_proof(m, n, store.get)
            assert 0 < m < n or proof == []
            assert 0 in (m, n - m) or proof == ref_subproof(m, leaves[:n], True)
            assert verify_consistency(m, n, roots[m], roots[n], proof), (m, n)


@pytest.mark.parametrize("seed", range(6))
def test_random_trees_proofs_verify_and_tampering_fails(seed: int) -> None:
    rnd = random.Random(seed)
    size = rnd.randint(2, 300)
    leaves = distinct_leaves(size)
    store = build(leaves)
    rt = store.frontier.root()
    for i in range(size):
        store.reads = 0
        proof = inclusion_proof(i, size, store.get)
        assert store.reads <= 2 * size.bit_length(), "O(log n) reads"
        assert verify_inclusion(leaves[i], i, size, proof, rt)
        check_inclusion_tamper(i, size, proof, rt, leaves[i])
        for j in rnd.sample(range(size), min(size, 4)):
            assert j == i or not verify_inclusion(leaves[i], j, size, proof, rt)
    for m in range(1, size):
        store.reads = 0
        proof = consistency_proof(m, size, store.get)
        assert store.reads <= 2 * size.bit_length(), "O(log n) reads"
        rm = root_at(m, store.get)
        assert verify_consistency(m, size, rm, rt, proof)
        check_consistency_tamper(m, size, rm, rt, proof)
        bad_m = rnd.randint(1, size)
        assert bad_m == m or not verify_consistency(bad_m, size, rm, rt, proof)


# ---------------------------------------------------------------------------
# The frontier as a consumer persists it


def test_frontier_root_serialisation_and_rebuild_at_every_size() -> None:
    leaves = distinct_leaves(300)
    store = Store()
    for n in range(301):
        rng = store.frontier
        assert rng.size == n and rng.root() == root(leaves[:n])
        assert CompactRange.from_bytes(rng.to_bytes()) == rng
        assert CompactRange.from_json(rng.to_json()) == rng
        assert CompactRange.from_nodes(n, store.get) == rng
        assert len(rng.to_bytes()) == 8 + 32 * n.bit_count()
        if n < 300:
            store.append(leaves[n])
    resumed = CompactRange.from_bytes(build(leaves[:37]).frontier.to_bytes())
    for leaf in leaves[37:]:
        resumed.append(leaf)
    assert resumed.root() == root(leaves)
    other = resumed.copy()
    other.append(SOME_HASH)
    assert (resumed.size, other.size) == (300, 301) and resumed != other


def test_frontier_rejects_malformed_input() -> None:
    one = f'["{"00" * 32}"]'
    for size, hashes in [(3, "[]"), (-1, "[]"), ("true", one), (1, '["00"]'), (2, '"x"')]:
        with pytest.raises(ValueError):
            CompactRange.from_json(f'{{"size": {size}, "hashes": {hashes}}}')
    with pytest.raises(ValueError):
        CompactRange.from_bytes(b"\x00" * 7)
    with pytest.raises(ValueError):
        CompactRange.from_bytes((3).to_bytes(8, "big") + b"\x00" * 32)
    with pytest.raises(ValueError):
        CompactRange().append(b"short")


def test_event_leaf_hash_over_the_chain_vectors() -> None:
    """Leaf i is the event with seq i + 1: SHA-256(0x00 || raw event hash)."""
    doc = json.loads((Path(__file__).parents[3] / "docs" / "hash-chain-vectors.json").read_text())
    hashes = [v["hash"] for v in sorted(doc["vectors"], key=lambda v: v["seq"])]
    assert event_leaf_hash(hashes[0]) == leaf_hash(bytes.fromhex(hashes[0]))
    assert event_leaf_hash(bytes.fromhex(hashes[0])) == event_leaf_hash(hashes[0])
    store = build([event_leaf_hash(x) for x in hashes])
    rt = store.frontier.root()
    for i, x in enumerate(hashes):
        assert verify_inclusion(
            event_leaf_hash(x), i, len(hashes), inclusion_proof(i, len(hashes), store.get), rt
        )
    with pytest.raises(ValueError):
        event_leaf_hash("00" * 31)
