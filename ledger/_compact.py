"""The RFC 9162 compact range of a log: its right frontier, O(log n) hashes.

A tree of ``size`` leaves is the fold of its perfect subtrees
(:func:`ledger._merkle.frontier`): one hash per set bit of ``size``, largest
first. Appending a leaf merges equal-sized subtrees from the right, so a
verifier that keeps only the frontier can extend the log and recompute its
root without the entries (the Fabric chaincode keeps exactly this on the
channel). Pure and deterministic: no I/O, clocks or floating point.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger._merkle import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash

__all__ = ["CompactRange"]


@dataclass(frozen=True)
class CompactRange:
    """``size`` and the hashes of its perfect subtrees, left (largest) to right."""

    size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("a compact range's size must not be negative")
        if len(self.hashes) != self.size.bit_count():
            raise ValueError(
                f"a compact range of size {self.size} holds {self.size.bit_count()} hashes, "
                f"not {len(self.hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise ValueError("compact range hashes are 32-byte SHA-256 hashes")

    @classmethod
    def empty(cls) -> CompactRange:
        """The range of the empty log."""
        return cls(0, ())

    def append_hashes(self, leaf_hashes: Iterable[bytes]) -> CompactRange:
        """The range after appending leaves with these RFC 9162 leaf hashes."""
        size = self.size
        stack = list(self.hashes)
        for leaf in leaf_hashes:
            node = leaf
            # Each trailing one bit of ``size`` is a perfect subtree of the new
            # leaf's size at that level: merge it in from the right.
            bits = size
            while bits & 1:
                node = node_hash(stack.pop(), node)
                bits >>= 1
            stack.append(node)
            size += 1
        return CompactRange(size, tuple(stack))

    def append(self, leaf_inputs: Sequence[bytes]) -> CompactRange:
        """The range after appending these leaf inputs (entries as stored)."""
        return self.append_hashes(leaf_hash(leaf) for leaf in leaf_inputs)

    def root(self) -> bytes:
        """``MTH`` of the log: the frontier folded right to left (RFC 9162 §2.1.1)."""
        if not self.hashes:
            return EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = node_hash(left, node)
        return node
