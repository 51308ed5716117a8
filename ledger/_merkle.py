"""RFC 9162 §2.1 Merkle tree hashing, proofs and proof verification; no I/O.

The tree is stored as its *perfect subtrees*: node ``(level, index)`` is the
hash of leaves ``[index * 2**level, (index + 1) * 2**level)``. Every subtree
that RFC 9162's recursion visits is either perfect or a right edge ``[a, n)``
whose hash folds at most ``log2(n)`` perfect nodes, so a proof needs
``O(log n)`` stored nodes, fetched in one batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from ledger.errors import ConsistencyProofError, InclusionProofError, TreeSizeError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "NodeKey",
    "append_nodes",
    "consistency_ranges",
    "fold",
    "frontier",
    "hash_range",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "nodes_for_ranges",
    "perfect_cover",
    "root_from_inclusion_proof",
    "root_from_nodes",
    "verify_consistency",
    "verify_inclusion",
]

NodeKey = tuple[int, int]
"""``(level, index)`` of a perfect subtree."""

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf_input: bytes) -> bytes:
    """``SHA-256(0x00 || leaf_input)``."""
    return hashlib.sha256(b"\x00" + leaf_input).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_cover(start: int, end: int) -> list[NodeKey]:
    """The perfect subtrees whose fold is ``MTH(D[start:end])``, left to right.

    ``[start, end)`` must be a range that RFC 9162's recursion visits: ``start``
    is a multiple of the largest power of two not above ``end - start``.
    """
    keys: list[NodeKey] = []
    pos = start
    remaining = end - start
    while remaining:
        level = remaining.bit_length() - 1
        keys.append((level, pos >> level))
        pos += 1 << level
        remaining -= 1 << level
    return keys


def frontier(size: int) -> list[NodeKey]:
    """The perfect subtrees that make up a tree of ``size`` leaves (its compact range)."""
    return perfect_cover(0, size)


def fold(hashes: Sequence[bytes]) -> bytes:
    """Right fold of perfect-subtree hashes, as RFC 9162 combines a right edge."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def hash_range(start: int, end: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """``MTH(D[start:end])`` from stored perfect nodes (see :func:`perfect_cover`)."""
    if start == end:
        return EMPTY_ROOT
    return fold([nodes[key] for key in perfect_cover(start, end)])


def root_from_nodes(size: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """The root of a tree of ``size`` leaves."""
    return hash_range(0, size, nodes)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtree ranges whose hashes form ``PATH(index, D[0:size])``, leaf first.

    Raises:
        TreeSizeError: ``index`` is not in ``[0, size)``.
    """
    if not 0 <= index < size:
        raise TreeSizeError(f"index {index} is not in a tree of size {size}", tree_size=size)
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The subtree ranges whose hashes form ``PROOF(first, D[0:second])`` (RFC 9162 §2.1.4.1).

    Raises:
        TreeSizeError: unless ``0 < first <= second``.
    """
    if not 0 < first <= second:
        raise TreeSizeError(
            f"a consistency proof needs 0 < first <= second, got first={first} second={second}",
            tree_size=second,
        )
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, second, first, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def nodes_for_ranges(ranges: Iterable[tuple[int, int]]) -> set[NodeKey]:
    """Every stored node needed to hash ``ranges``."""
    return {key for start, end in ranges for key in perfect_cover(start, end)}


def append_nodes(
    size: int, leaf_hashes: Sequence[bytes], known: Mapping[NodeKey, bytes]
) -> dict[NodeKey, bytes]:
    """The perfect nodes created by appending ``leaf_hashes`` to a tree of ``size`` leaves.

    ``known`` must hold the old tree's :func:`frontier`. The result includes
    the new leaves (level 0) and every node they complete.
    """
    new: dict[NodeKey, bytes] = {}

    def lookup(key: NodeKey) -> bytes:
        return new[key] if key in new else known[key]

    for offset, leaf in enumerate(leaf_hashes):
        level, idx, acc = 0, size + offset, leaf
        new[(0, idx)] = acc
        while idx & 1:
            acc = node_hash(lookup((level, idx - 1)), acc)
            level, idx = level + 1, idx >> 1
            new[(level, idx)] = acc
    return new


def _decompose_inclusion(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _check_hashes(hashes: Iterable[bytes], error: type[Exception], what: str) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise error(f"{what} has length {len(h)}, not {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2).

    Raises:
        InclusionProofError: the proof has the wrong shape for ``index`` and ``size``.
    """
    if not 0 <= index < size:
        raise InclusionProofError(f"index {index} is beyond tree size {size}")
    _check_hashes([leaf], InclusionProofError, "leaf hash")
    _check_hashes(proof, InclusionProofError, "a proof hash")
    inner, border = _decompose_inclusion(index, size)
    if len(proof) != inner + border:
        raise InclusionProofError(
            f"proof has {len(proof)} hashes, expected {inner + border} for index {index} "
            f"in a tree of size {size}"
        )
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise InclusionProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InclusionProofError("proof is shorter than the path to the root")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is at ``index`` in the tree of ``size`` with ``root``.

    Raises:
        InclusionProofError: the proof does not verify.
    """
    _check_hashes([root], InclusionProofError, "root hash")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise InclusionProofError("calculated root differs from the expected root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``first`` leaves is a prefix of the tree of ``second`` leaves.

    Follows RFC 9162 §2.1.4.2. A consistency check from the empty tree proves
    nothing and is refused.

    Raises:
        ConsistencyProofError: the proof does not verify.
    """
    if second < first:
        raise ConsistencyProofError(f"second size {second} is smaller than first size {first}")
    if first == 0:
        raise ConsistencyProofError("a consistency check from the empty tree proves nothing")
    if first == second:
        if proof:
            raise ConsistencyProofError("sizes are equal but the proof is not empty")
        if first_root != second_root:
            raise ConsistencyProofError("sizes are equal but the roots differ")
        return
    if not proof:
        raise ConsistencyProofError("sizes differ but the proof is empty")
    _check_hashes(proof, ConsistencyProofError, "a proof hash")
    _check_hashes([first_root, second_root], ConsistencyProofError, "a root hash")
    path = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root is the first node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ConsistencyProofError("proof is longer than expected")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ConsistencyProofError("proof is shorter than expected")
    if fr != first_root:
        raise ConsistencyProofError("calculated first root differs from the given first root")
    if sr != second_root:
        raise ConsistencyProofError("calculated second root differs from the given second root")
