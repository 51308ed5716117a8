"""The RFC 9162 tree rebuilt from an export's leaves, in one pass; no I/O.

The leaves are hashed in the order the export lists them and folded into a
compact range (the perfect-subtree hashes of the tree so far, at most
``log2(n) + 1`` of them), so ``n`` entries cost ``2n`` SHA-256 calls and
``O(log n)`` memory. The root is taken at every size a checkpoint names and at
the end. The position of each line is checked on the way: an entry line whose
``index`` is not the one after the line before (an entry deleted, repeated or
moved) and a leaf whose own ``index`` member is not its line's (two entries
swapped, an entry edited) are findings naming the index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from audit._export import ExportedEntry
from audit._findings import Finding
from ledger import EMPTY_ROOT, node_hash

__all__ = ["CompactRange", "RebuiltTree", "rebuild_tree"]

_INDEX_KEY: Final = b',"index":'
_ACTOR_START: Final = b'{"actor":"'


class CompactRange:
    """The perfect-subtree hashes of a tree being built leaf by leaf (largest first)."""

    def __init__(self) -> None:
        self.size = 0
        self._hashes: list[bytes] = []

    def add(self, leaf_hash: bytes) -> None:
        """Append a leaf hash (``SHA-256(0x00 || leaf input)``)."""
        acc, n = leaf_hash, self.size
        hashes = self._hashes
        while n & 1:
            acc = node_hash(hashes.pop(), acc)
            n >>= 1
        hashes.append(acc)
        self.size += 1

    def root(self) -> bytes:
        """``MTH`` of the leaves added so far (RFC 9162 §2.1.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc


@dataclass(frozen=True)
class RebuiltTree:
    """The tree the export's leaves make: its size and root, the root at each size asked
    for (sizes beyond the leaves are absent), and where lines are out of place."""

    size: int
    root: bytes
    roots: Mapping[int, bytes]
    findings: tuple[Finding, ...]


def claimed_index(leaf: bytes) -> int | None:
    """The ``index`` member of a ledger entry's bytes (None: no integer index there).

    An RFC 8785 entry starts ``{"actor":"...","index":N,`` (keys in code point
    order), and a JSON string holds no unescaped quote, so the first
    ``,"index":`` is the member; anything else is parsed in full.
    """
    if leaf.startswith(_ACTOR_START):
        at = leaf.find(_INDEX_KEY)
        if at >= 0:
            start = at + len(_INDEX_KEY)
            end = leaf.find(b",", start)
            digits = leaf[start:end]
            if digits.isdigit() and (digits == b"0" or not digits.startswith(b"0")):
                return int(digits)
    try:
        obj = json.loads(leaf)
    except (ValueError, UnicodeDecodeError):
        return None
    value = obj.get("index") if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def rebuild_tree(entries: Iterable[ExportedEntry], sizes: Collection[int]) -> RebuiltTree:
    """Hash the leaves in export order; take the root at each of ``sizes`` and at the end.

    Never raises on content: whatever is out of place is a finding.
    """
    wanted = {s for s in sizes if s >= 0}
    roots: dict[int, bytes] = {}
    if 0 in wanted:
        roots[0] = EMPTY_ROOT
    findings: list[Finding] = []
    tree = CompactRange()
    sha = hashlib.sha256
    previous = -1
    for entry in entries:
        position = tree.size
        index = entry.index
        if index != previous + 1:
            findings.append(_out_of_place(index, previous, position))
        previous = index
        claimed = claimed_index(entry.leaf)
        if claimed is not None and claimed != index:
            findings.append(
                Finding(
                    "entry.index",
                    index,
                    f"the entry listed at index {index} is entry {claimed} by its own bytes "
                    "(entries swapped or moved, or the index edited)",
                )
            )
        tree.add(sha(b"\x00" + entry.leaf).digest())
        if tree.size in wanted:
            roots[tree.size] = tree.root()
    return RebuiltTree(tree.size, tree.root(), roots, tuple(findings))


def _out_of_place(index: int, previous: int, position: int) -> Finding:
    expected = previous + 1
    if index > expected:
        missing = (
            f"entry {expected} is"
            if index == expected + 1
            else f"entries {expected}..{index - 1} are"
        )
        return Finding(
            "entry.missing",
            expected,
            f"{missing} missing: the export lists entry {index} after entry {previous} "
            "(an entry was deleted)",
        )
    return Finding(
        "entry.order",
        index,
        f"the export lists entry {index} again at position {position}, after entry "
        f"{previous} (an entry repeated or out of order)",
    )
