"""The storage interface every ledger backend implements (memory, SQL, later Fabric).

A backend stores opaque leaf inputs and perfect-subtree hashes; it never
interprets payloads. Appends go through :meth:`LedgerBackend.writer`, which
holds the backend's append lock for the whole batch, so indices are dense and
appends are serialized across threads and processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ledger._merkle import EMPTY_ROOT, NodeKey

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["LedgerBackend", "LedgerWriter", "StoredEntry", "SubjectHit", "TreeHead"]


@dataclass(frozen=True)
class TreeHead:
    """Size, root and the latest signed checkpoint note ("" before the first append)."""

    size: int
    root: bytes
    checkpoint: str

    @classmethod
    def empty(cls) -> TreeHead:
        """The head of an empty log."""
        return cls(0, EMPTY_ROOT, "")


@dataclass(frozen=True)
class SubjectHit:
    """An entry indexed under a subject: the subject, the entry's index and type."""

    subject: str
    index: int
    type: str


@dataclass(frozen=True)
class StoredEntry:
    """One row of the entry table: the leaf input plus columns kept for indexed queries."""

    index: int
    type: str
    actor: str
    time: str
    leaf_input: bytes
    subjects: tuple[str, ...] = ()
    """What the entry is about (:attr:`core.events.Event.subjects`): indexed, not hashed."""


class LedgerWriter(Protocol):
    """Inside the append lock: read the head and frontier, then write one batch."""

    def head(self) -> TreeHead:
        """The head as of the lock."""
        ...

    def nodes(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        """Stored perfect-subtree hashes for ``keys`` (missing keys are absent)."""
        ...

    def write(
        self, entries: Sequence[StoredEntry], nodes: Mapping[NodeKey, bytes], head: TreeHead
    ) -> None:
        """Store a batch of entries, their new nodes and the new head, atomically."""
        ...


class LedgerBackend(Protocol):
    """Durable storage of the log."""

    def writer(self, session: Session | None = None) -> AbstractContextManager[LedgerWriter]:
        """Take the append lock; commit on success, roll back on error.

        With ``session`` (SQL backends on the same database), write inside the
        caller's transaction; the caller commits.
        """
        ...

    def head(self) -> TreeHead:
        """The latest committed head."""
        ...

    def nodes(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        """Stored perfect-subtree hashes for ``keys``, in one read."""
        ...

    def nodes_with_size(self, keys: Iterable[NodeKey]) -> tuple[int, dict[NodeKey, bytes]]:
        """The committed size and the hashes for ``keys``, from one snapshot."""
        ...

    def entries(self, start: int, stop: int) -> list[StoredEntry]:
        """Entries with ``start <= index < stop``, in index order."""
        ...

    def scan_entries(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """Raw ``(index, leaf_input)`` rows in index order, as stored (for verify)."""
        ...

    def scan_level(self, level: int) -> Iterator[tuple[int, bytes]]:
        """Raw ``(index, hash)`` rows of one tree level, in index order (for verify)."""
        ...

    def find(
        self,
        subjects: Sequence[str],
        types: Sequence[str] | None = None,
        *,
        session: Session | None = None,
    ) -> list[SubjectHit]:
        """Entries indexed under any of ``subjects`` (of ``types``, if given), by index.

        With ``session``, read in the caller's transaction (it sees its own
        uncommitted entries and the rows it holds locked).
        """
        ...

    def count(
        self, subjects: Sequence[str], types: Sequence[str], *, session: Session | None = None
    ) -> dict[str, int]:
        """How many entries of ``types`` are indexed under each of ``subjects`` (absent: none).

        With ``session``, read in the caller's transaction.
        """
        ...
