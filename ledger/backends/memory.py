"""An in-memory ledger backend: the same contract as SQL, for tests and dry runs."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ledger._merkle import NodeKey
from ledger.backends.base import StoredEntry, SubjectHit, TreeHead

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["MemoryLedgerBackend"]


class _MemoryWriter:
    def __init__(self, backend: MemoryLedgerBackend) -> None:
        self._backend = backend
        self.pending: tuple[Sequence[StoredEntry], Mapping[NodeKey, bytes], TreeHead] | None = None

    def head(self) -> TreeHead:
        return self._backend.head()

    def nodes(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        return self._backend.nodes(keys)

    def write(
        self, entries: Sequence[StoredEntry], nodes: Mapping[NodeKey, bytes], head: TreeHead
    ) -> None:
        self.pending = (entries, nodes, head)


class MemoryLedgerBackend:
    """Keeps everything in dictionaries; thread-safe; lost when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: list[StoredEntry] = []
        self._nodes: dict[NodeKey, bytes] = {}
        self._head = TreeHead.empty()
        self._subjects: dict[str, list[SubjectHit]] = {}

    @contextmanager
    def writer(self, session: Session | None = None) -> Iterator[_MemoryWriter]:
        """Take the lock; apply the batch only if the block succeeds."""
        del session  # memory has no transaction to join
        with self._lock:
            writer = _MemoryWriter(self)
            yield writer
            if writer.pending is not None:
                entries, nodes, head = writer.pending
                self._entries.extend(entries)
                for entry in entries:
                    for subject in dict.fromkeys(entry.subjects):
                        hit = SubjectHit(subject, entry.index, entry.type)
                        self._subjects.setdefault(subject, []).append(hit)
                self._nodes.update(nodes)
                self._head = head

    def head(self) -> TreeHead:
        """The latest head."""
        return self._head

    def nodes(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        """Stored hashes for the keys that exist."""
        return {k: self._nodes[k] for k in keys if k in self._nodes}

    def nodes_with_size(self, keys: Iterable[NodeKey]) -> tuple[int, dict[NodeKey, bytes]]:
        """The size and the hashes for ``keys``, under the lock."""
        with self._lock:
            return self._head.size, self.nodes(keys)

    def entries(self, start: int, stop: int) -> list[StoredEntry]:
        """Entries in ``[start, stop)``."""
        return self._entries[start:stop]

    def find(
        self,
        subjects: Sequence[str],
        types: Sequence[str] | None = None,
        *,
        session: Session | None = None,
    ) -> list[SubjectHit]:
        """Entries indexed under any of ``subjects`` (of ``types``), in index order."""
        del session  # memory has no transaction to read in
        with self._lock:
            hits = [h for s in dict.fromkeys(subjects) for h in self._subjects.get(s, [])]
        if types is not None:
            hits = [h for h in hits if h.type in types]
        return sorted(hits, key=lambda h: (h.index, h.subject))

    def count(
        self, subjects: Sequence[str], types: Sequence[str], *, session: Session | None = None
    ) -> dict[str, int]:
        """How many entries of ``types`` are indexed under each of ``subjects``."""
        counts: dict[str, int] = {}
        for hit in self.find(subjects, types, session=session):
            counts[hit.subject] = counts.get(hit.subject, 0) + 1
        return counts

    def scan_entries(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """``(index, leaf_input)`` rows."""
        for entry in self._entries[start:stop]:
            yield entry.index, entry.leaf_input

    def scan_level(self, level: int) -> Iterator[tuple[int, bytes]]:
        """``(index, hash)`` rows of one level, in index order."""
        keys = sorted(k for k in self._nodes if k[0] == level)
        for key in keys:
            yield key[1], self._nodes[key]

    # Test hooks to simulate tampering with storage (used by the contract suite).
    def tamper_entry(self, index: int, leaf_input: bytes) -> None:
        """Overwrite a stored entry's bytes, as an attacker with storage access could."""
        old = self._entries[index]
        self._entries[index] = StoredEntry(old.index, old.type, old.actor, old.time, leaf_input)
