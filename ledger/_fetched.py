"""Recomputing a log fetched from an exchange one does not trust; no I/O here.

An auditor (or witness) downloads the signed checkpoint and then every entry,
page by page, and gives them to :class:`FetchedLog`. It checks the
checkpoint's signature with a key the auditor pinned, keeps the tree's
compact range (``O(log n)`` hashes) as entries arrive in index order, and at
the end checks that exactly the signed number of entries came and that their
Merkle root is the signed root. The driver that talks HTTP lives in
``exchange``; a kept checkpoint is checked with :func:`check_kept_checkpoint`.
"""

from __future__ import annotations

from ledger._checkpoint import Checkpoint, NoteVerifier, SignedNote
from ledger._entry import LedgerEntry
from ledger._integrity import IntegrityReport
from ledger._merkle import EMPTY_ROOT, fold, leaf_hash, node_hash
from ledger.errors import InvalidEntryError, LedgerIntegrityError

__all__ = ["FetchedLog"]


class FetchedLog:
    """A log as an outside verifier rebuilds it from the checkpoint and the entries served."""

    def __init__(self, note: SignedNote, checkpoint: Checkpoint) -> None:
        self.note = note
        self.checkpoint = checkpoint
        self._size = 0
        self._range: list[bytes] = []
        """The compact range: perfect-subtree hashes of the tree so far, largest first."""

    @classmethod
    def from_signed_checkpoint(cls, text: str, verifier: NoteVerifier) -> FetchedLog:
        """Start from checkpoint ``text``, which ``verifier`` (the pinned key) must have signed.

        Raises:
            CheckpointError: malformed, or not signed by the pinned key.
        """
        note = SignedNote.from_text(text)
        note.verify(verifier)
        return cls(note, Checkpoint.from_text(note.text))

    @property
    def size(self) -> int:
        """Entries added so far (the index the next one must have)."""
        return self._size

    @property
    def remaining(self) -> int:
        """Entries still to add to reach the checkpoint's size."""
        return self.checkpoint.size - self._size

    def add(self, index: int, leaf_input: bytes) -> None:
        """Add the entry served at ``index``; entries come in index order, none skipped.

        Raises:
            LedgerIntegrityError: a gap or repeat, an entry beyond the checkpoint's
                size, or bytes that are no ledger entry or claim another index.
        """
        if index != self._size:
            raise LedgerIntegrityError(
                f"the exchange served entry {index} where entry {self._size} belongs "
                "(an entry is missing or repeated)",
                index=self._size,
            )
        if index >= self.checkpoint.size:
            raise LedgerIntegrityError(
                f"the exchange served entry {index} beyond the signed size {self.checkpoint.size}",
                index=index,
            )
        try:
            claimed = LedgerEntry.from_leaf_input(leaf_input).index
        except InvalidEntryError as exc:
            raise LedgerIntegrityError(f"entry is not a ledger entry: {exc}", index=index) from exc
        if claimed != index:
            raise LedgerIntegrityError(
                f"entry bytes claim index {claimed} (entries swapped or edited)", index=index
            )
        acc, n = leaf_hash(leaf_input), self._size
        while n & 1:
            acc = node_hash(self._range.pop(), acc)
            n >>= 1
        self._range.append(acc)
        self._size += 1

    def root(self) -> bytes:
        """The Merkle root of the entries added so far."""
        return fold(self._range) if self._range else EMPTY_ROOT

    def verify(self) -> IntegrityReport:
        """Check that the entries added are the whole signed tree.

        Raises:
            LedgerIntegrityError: fewer entries than the checkpoint's size, or a
                recomputed root that is not the signed one.
        """
        if self._size != self.checkpoint.size:
            raise LedgerIntegrityError(
                f"the exchange served {self._size} entries but its checkpoint signs "
                f"{self.checkpoint.size}",
                index=self._size,
            )
        root = self.root()
        if root != self.checkpoint.root:
            raise LedgerIntegrityError(
                f"the root recomputed from the {self._size} entries served is not the root "
                "the checkpoint signs (an entry was changed)"
            )
        return IntegrityReport(self._size, root)
