"""Checking a checkpoint an auditor kept against the log as it stands now.

Like ``rekor-cli loginfo``: whoever keeps a signed checkpoint can later ask
the log to prove that the tree it signed then is a prefix of the tree now. A
log that was rolled back, forked or rewritten cannot: its current tree is
smaller, or no consistency proof joins the two roots. No I/O here; the
driver (:meth:`ledger.Ledger.verify_kept_checkpoint`) fetches the proof.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger._checkpoint import Checkpoint, NoteVerifier, SignedNote
from ledger._merkle import verify_consistency
from ledger.errors import CheckpointError, ConsistencyProofError, LedgerIntegrityError

__all__ = ["KeptCheckpoint", "check_kept_checkpoint"]


@dataclass(frozen=True)
class KeptCheckpoint:
    """A signed checkpoint kept by an auditor, parsed and signature-checked."""

    note: SignedNote
    checkpoint: Checkpoint

    @classmethod
    def parse(cls, text: str, verifier: NoteVerifier, origin: str) -> KeptCheckpoint:
        """Parse ``text`` and check it was signed by ``verifier`` for ``origin``.

        Raises:
            CheckpointError: malformed, not signed by this log's key, or another origin.
        """
        note = SignedNote.from_text(text)
        note.verify(verifier)
        checkpoint = Checkpoint.from_text(note.text)
        if checkpoint.origin != origin:
            raise CheckpointError(
                f"the checkpoint is for origin {checkpoint.origin!r}, this log is {origin!r}"
            )
        return cls(note, checkpoint)


def check_kept_checkpoint(
    kept: KeptCheckpoint, size: int, root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``kept`` signed is a prefix of the tree (``size``, ``root``).

    Raises:
        LedgerIntegrityError: the log is smaller than the kept checkpoint (rolled back),
            or the roots are not consistent (history rewritten or forked).
    """
    first = kept.checkpoint.size
    if size < first:
        raise LedgerIntegrityError(
            f"the log has {size} entries but a checkpoint it signed had {first}: it was rolled back"
        )
    if first == 0:
        return  # the empty tree is a prefix of every tree
    try:
        verify_consistency(first, size, kept.checkpoint.root, root, proof)
    except ConsistencyProofError as exc:
        raise LedgerIntegrityError(
            f"the tree of {first} entries the kept checkpoint signed is not a prefix of the "
            f"current tree of {size}: history was rewritten ({exc})"
        ) from exc
