"""RFC 9162 §2.1 Merkle tree hashes, proofs and their verification.

Pure standard library. The tree is the one of Certificate Transparency
(RFC 6962, restated as RFC 9162 §2.1) with SHA-256:

- ``MTH({}) = SHA-256()``, the hash of the empty string;
- ``MTH({d0}) = SHA-256(0x00 || d0)``, a leaf;
- ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` with ``k`` the
  largest power of two strictly smaller than ``n``.

For Chainlog, leaf ``i`` of a workspace's tree is the event with
``seq = i + 1`` and the leaf input is the 32 raw bytes of the event's
``hash`` (:func:`event_leaf_hash`).

Storage layout (``docs/merkle.md``): a *node* ``(level, index)`` is the root
of the perfect subtree over leaves ``[index * 2**level, (index + 1) *
2**level)``; level 0 holds the leaf hashes. :meth:`CompactRange.append`
returns every node that an appended leaf completes, so storing what it
returns stores every node of every perfect subtree, exactly once. Proofs
and historical roots are then served with ``get_node(level, index)`` in
O(log n) reads, from nodes that never change once written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

HASH_SIZE = 32

#: The root of the empty tree, ``SHA-256()``.
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``get_node(level, index)`` returns the stored hash of that perfect subtree.
GetNode = Callable[[int, int], bytes]

#: A newly completed node, as :meth:`CompactRange.append` returns it.
Node = tuple[int, int, bytes]


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def event_leaf_hash(event_hash: str | bytes) -> bytes:
    """The leaf hash of an event: ``SHA-256(0x00 || raw 32-byte event hash)``.

    ``event_hash`` is the 64-hex ``hash`` of the event or its raw bytes.
    """
    raw = bytes.fromhex(event_hash) if isinstance(event_hash, str) else event_hash
    if len(raw) != HASH_SIZE:
        raise ValueError("an event hash has 32 bytes")
    return leaf_hash(raw)


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes, computed level by level.

    At each level adjacent pairs are hashed and an unpaired last node moves
    up unchanged: this is the same tree as the recursive split at the
    largest power of two below ``n``.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _peaks(start: int, size: int) -> list[tuple[int, int]]:
    """The perfect subtrees, left to right, that make up ``[start, start + size)``.

    ``start`` must be a multiple of the largest of them, which holds for
    every range RFC 9162 hashes (a tree's prefix, or a right part of a split).
    """
    out = []
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The root over perfect-subtree roots of decreasing size, right to left."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def subtree_hash(start: int, size: int, get_node: GetNode) -> bytes:
    """MTH of leaves ``[start, start + size)`` from stored nodes (``size > 0``)."""
    return _fold([get_node(level, index) for level, index in _peaks(start, size)])


def root_at(size: int, get_node: GetNode) -> bytes:
    """The root of the tree of ``size`` leaves, in popcount(size) reads."""
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, get_node)


class CompactRange:
    """The right edge ("frontier") of a growing tree, O(log n) hashes.

    It holds the roots of the perfect subtrees that make up leaves
    ``[0, size)``: one per bit set in ``size``, largest first. This is what
    a consumer persists to resume appending (:meth:`to_bytes`,
    :meth:`to_json`), or rebuilds from storage (:meth:`from_nodes`).
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    @property
    def entries(self) -> list[tuple[int, bytes]]:
        """``(level, hash)`` of each perfect subtree, left to right."""
        levels = [level for level, _ in _peaks(0, self._size)]
        return list(zip(levels, self._hashes, strict=True))

    def append(self, leaf: bytes) -> list[Node]:
        """Add a leaf hash; returns the nodes ``(level, index, hash)`` it completes.

        The first is the leaf itself at level 0; each next one is its parent,
        as long as that parent's subtree is now complete.
        """
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash has 32 bytes")
        index = self._size
        level, h = 0, leaf
        done: list[Node] = [(0, index, leaf)]
        while index >> level & 1:
            h = node_hash(self._hashes.pop(), h)
            level += 1
            done.append((level, index >> level, h))
        self._hashes.append(h)
        self._size += 1
        return done

    def root(self) -> bytes:
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT

    def copy(self) -> CompactRange:
        other = CompactRange()
        other._size = self._size
        other._hashes = list(self._hashes)
        return other

    @classmethod
    def from_nodes(cls, size: int, get_node: GetNode) -> CompactRange:
        """The frontier at ``size`` from stored nodes, in popcount(size) reads."""
        if size < 0:
            raise ValueError("size must not be negative")
        rng = cls()
        rng._size = size
        rng._hashes = [get_node(level, index) for level, index in _peaks(0, size)]
        return rng

    def to_bytes(self) -> bytes:
        """8-byte big-endian size, then the subtree roots (levels follow from the size)."""
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        if len(data) < 8:
            raise ValueError("compact range too short")
        size = int.from_bytes(data[:8], "big")
        body = data[8:]
        if len(body) != HASH_SIZE * size.bit_count():
            raise ValueError("compact range length does not match its size")
        rng = cls()
        rng._size = size
        rng._hashes = [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)]
        return rng

    def to_json(self) -> str:
        """``{"size": n, "hashes": ["<hex>", ...]}``, hashes left to right."""
        return json.dumps({"size": self._size, "hashes": [h.hex() for h in self._hashes]})

    @classmethod
    def from_json(cls, text: str) -> CompactRange:
        doc = json.loads(text)
        size, hashes = doc["size"], doc["hashes"]
        if type(size) is not int or size < 0 or not isinstance(hashes, list):
            raise ValueError("malformed compact range")
        raw = [bytes.fromhex(h) for h in hashes]
        if len(raw) != size.bit_count() or any(len(h) != HASH_SIZE for h in raw):
            raise ValueError("compact range hashes do not match its size")
        rng = cls()
        rng._size = size
        rng._hashes = raw
        return rng

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


# ---------------------------------------------------------------------------
# Proofs (RFC 9162 §2.1.3.1 PATH and §2.1.4.1 PROOF / SUBPROOF), served from
# stored nodes. Each walks from the root down; at most one sibling is not a
# perfect subtree (the first right part passed on the way down), so a proof
# costs O(log n) reads.


def inclusion_proof(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """PATH(index, D[size]): the audit path of leaf ``index``, leaf side first."""
    if not 0 <= index < size:
        raise ValueError("need 0 <= index < size")
    path: list[bytes] = []
    start, n, m = 0, size, index
    while n > 1:
        k = _split(n)
        if m < k:
            path.append(subtree_hash(start + k, n - k, get_node))
            n = k
        else:
            path.append(subtree_hash(start, k, get_node))
            start, n, m = start + k, n - k, m - k
    path.reverse()
    return path


def consistency_proof(m: int, n: int, get_node: GetNode) -> list[bytes]:
    """PROOF(m, D[n]): shows the tree of size ``m`` is a prefix of that of ``n``.

    Empty when ``m == 0`` or ``m == n``.
    """
    if not 0 <= m <= n:
        raise ValueError("need 0 <= m <= n")
    if m == 0 or m == n:
        return []
    path: list[bytes] = []
    start, size, mm, whole = 0, n, m, True
    while mm != size:
        k = _split(size)
        if mm <= k:
            path.append(subtree_hash(start + k, size - k, get_node))
            size = k
        else:
            path.append(subtree_hash(start, k, get_node))
            start, size, mm, whole = start + k, size - k, mm - k, False
    if not whole:
        path.append(subtree_hash(start, size, get_node))
    path.reverse()
    return path


# ---------------------------------------------------------------------------
# Verification, RFC 9162 §2.1.3.2 and §2.1.4.2 step by step.


def _all_hashes(*hashes: bytes) -> bool:
    return all(len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when ``proof`` shows leaf ``index`` of the tree of ``size`` is ``leaf_hash``."""
    if not 0 <= index < size or not _all_hashes(leaf_hash, root, *proof):
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` shows the tree ``(m, root_m)`` is a prefix of ``(n, root_n)``.

    RFC 9162 defines the check for ``0 < m < n``. Outside it: ``m == n``
    holds with an empty proof and equal roots, ``m == 0`` with an empty proof
    and ``root_m`` the empty tree's root; anything else fails.
    """
    if not 0 <= m <= n or not _all_hashes(root_m, root_n, *proof):
        return False
    if m == n:
        return not proof and root_m == root_n
    if m == 0:
        return not proof and root_m == EMPTY_ROOT
    # 1. An empty consistency path fails.
    if not proof:
        return False
    path = list(proof)
    # 2. If first is an exact power of 2, prepend first_hash.
    if m & (m - 1) == 0:
        path.insert(0, root_m)
    # 3.-4.
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    return sn == 0 and fr == root_m and sr == root_n
