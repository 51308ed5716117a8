"""Full recomputation of a stored log: what ``ibx ledger verify`` runs.

Reads every entry and every stored node once, in index order, in large
batches; recomputes leaf hashes, every perfect subtree and the root; checks
the head and the signed checkpoint. Reports the first index that is wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ledger._checkpoint import Checkpoint, NoteVerifier, SignedNote
from ledger._merkle import EMPTY_ROOT, fold, frontier
from ledger.backends.base import LedgerBackend
from ledger.errors import CheckpointError, LedgerIntegrityError

__all__ = ["PROGRESS_EVERY", "IntegrityReport", "ProgressReport", "check_integrity"]

_BEYOND = 1 << 62
_INDEX_KEY = b',"index":'
PROGRESS_EVERY = 1 << 14
"""Entries between two progress reports (a report costs one call, not a read)."""

ProgressReport = Callable[[int, int], None]
"""``report(entries_checked, size)``: told how far a verification has got; it must not
raise (it draws a bar; the verification itself never depends on it)."""


@dataclass(frozen=True)
class IntegrityReport:
    """A log that verified: its size and root."""

    size: int
    root: bytes


def _claimed_index(leaf: bytes) -> int | None:
    """The ``index`` member of a canonical entry, found without a full JSON parse.

    In RFC 8785 order the entry starts with ``{"actor":"..."`` and the first
    unescaped ``,"index":`` follows the actor string (a JSON string cannot
    contain an unescaped quote).
    """
    if not leaf.startswith(b'{"actor":"'):
        return None
    at = leaf.find(_INDEX_KEY)
    if at < 0:
        return None
    start = at + len(_INDEX_KEY)
    end = leaf.find(b",", start)
    digits = leaf[start:end]
    return int(digits) if digits.isdigit() else None


def check_integrity(
    backend: LedgerBackend,
    verifier: NoteVerifier,
    origin: str,
    progress: ProgressReport | None = None,
) -> IntegrityReport:
    """Verify the whole stored log.

    ``progress``, if given, is told ``(entries_checked, size)`` every
    :data:`PROGRESS_EVERY` entries and once when every entry is read; it only
    observes (the tree levels that follow take a fraction of the time).

    A log that grows while it is read (a running exchange appends) is read
    again under its new head, up to :data:`_ATTEMPTS` times: only rows beyond a
    head that did not move are tampering.

    Raises:
        LedgerIntegrityError: the first problem found, with the index it concerns.
    """
    for _ in range(_ATTEMPTS - 1):
        try:
            return _check_once(backend, verifier, origin, progress)
        except _HeadMovedError:
            continue
    try:
        return _check_once(backend, verifier, origin, progress)
    except _HeadMovedError as moved:
        raise moved.error from None


_ATTEMPTS = 3


class _HeadMovedError(Exception):
    """Rows beyond the head were met, and the head has since grown: read again."""

    def __init__(self, error: LedgerIntegrityError) -> None:
        super().__init__(str(error))
        self.error = error


def _beyond(backend: LedgerBackend, size: int, error: LedgerIntegrityError) -> Exception:
    """``error`` for rows beyond a head of ``size``, or :class:`_HeadMovedError` if it grew."""
    return _HeadMovedError(error) if backend.head().size > size else error


def _check_once(
    backend: LedgerBackend,
    verifier: NoteVerifier,
    origin: str,
    progress: ProgressReport | None,
) -> IntegrityReport:
    head = backend.head()
    size = head.size
    _check_checkpoint(head.checkpoint, head.size, head.root, verifier, origin)

    sha = hashlib.sha256
    leaves: list[bytes] = []
    expected = 0
    for idx, leaf in backend.scan_entries(0, _BEYOND):
        if idx != expected:
            raise LedgerIntegrityError("entry is missing (a row was deleted)", index=expected)
        if idx >= size:
            raise _beyond(
                backend,
                size,
                LedgerIntegrityError(
                    f"entry exists beyond the checkpointed size {size} (a row was inserted)",
                    index=idx,
                ),
            )
        claimed = _claimed_index(leaf)
        if claimed != idx:
            raise LedgerIntegrityError(
                f"entry bytes claim index {claimed} (rows swapped or entry edited)"
                if claimed is not None
                else "entry bytes are not a canonical ledger entry (entry edited)",
                index=idx,
            )
        leaves.append(sha(b"\x00" + leaf).digest())
        expected += 1
        if progress is not None and expected % PROGRESS_EVERY == 0:
            progress(expected, size)
    if expected != size:
        raise LedgerIntegrityError(
            f"log holds {expected} entries but the checkpoint says {size} (rows deleted)",
            index=expected,
        )
    if progress is not None:
        progress(expected, size)

    level_hashes = leaves
    level = 0
    stored_frontier: dict[tuple[int, int], bytes] = {}
    while True:
        count = len(level_hashes)
        seen = 0
        for idx, stored in backend.scan_level(level):
            if idx >= count:
                raise _beyond(
                    backend,
                    size,
                    LedgerIntegrityError(
                        f"a stored tree node at level {level} lies beyond the log",
                        index=idx << level,
                    ),
                )
            if idx != seen:
                raise LedgerIntegrityError(
                    f"stored tree node at level {level} is missing", index=seen << level
                )
            if stored != level_hashes[idx]:
                what = (
                    "entry bytes do not match the stored leaf hash (entry or hash edited)"
                    if level == 0
                    else f"stored subtree hash at level {level} over entries "
                    f"{idx << level}..{((idx + 1) << level) - 1} does not match the entries"
                )
                raise LedgerIntegrityError(what, index=idx << level)
            seen += 1
        if seen != count:
            raise LedgerIntegrityError(
                f"stored tree node at level {level} is missing", index=seen << level
            )
        for key in frontier(size):
            if key[0] == level:
                stored_frontier[key] = level_hashes[key[1]]
        if count < 2:
            break
        level_hashes = [
            sha(b"\x01" + level_hashes[i] + level_hashes[i + 1]).digest()
            for i in range(0, count - 1, 2)
        ]
        level += 1

    root = fold([stored_frontier[k] for k in frontier(size)]) if size else EMPTY_ROOT
    if root != head.root:
        raise LedgerIntegrityError("recomputed root differs from the stored head (head edited)")
    return IntegrityReport(size, root)


def _check_checkpoint(
    note_text: str, size: int, root: bytes, verifier: NoteVerifier, origin: str
) -> None:
    if not note_text:
        if size == 0:
            return
        raise LedgerIntegrityError(f"log of size {size} has no signed checkpoint")
    try:
        note = SignedNote.from_text(note_text)
        note.verify(verifier)
        checkpoint = Checkpoint.from_text(note.text)
    except CheckpointError as exc:
        raise LedgerIntegrityError(f"latest checkpoint does not verify: {exc}") from exc
    if checkpoint.origin != origin:
        raise LedgerIntegrityError(
            f"checkpoint origin {checkpoint.origin!r} is not this ledger's {origin!r}"
        )
    if checkpoint.size != size or checkpoint.root != root:
        raise LedgerIntegrityError(
            f"stored head (size {size}) does not match the signed checkpoint "
            f"(size {checkpoint.size}); the head was edited"
        )
