"""Ledger errors.

::

    LedgerError
    ├── EntryTooLargeError        payload over the 64 KiB bound
    ├── InvalidEntryError         payload not a JSON object / not canonical-encodable
    ├── TreeSizeError             a size or index outside the current tree
    ├── ProofError                a proof does not verify
    │   ├── InclusionProofError
    │   └── ConsistencyProofError
    ├── CheckpointError           a signed note that does not parse or verify
    └── LedgerIntegrityError      stored state that does not recompute (verify)
"""

from __future__ import annotations

from core.errors import IbxError

__all__ = [
    "CheckpointError",
    "ConsistencyProofError",
    "EntryTooLargeError",
    "InclusionProofError",
    "InvalidEntryError",
    "LedgerError",
    "LedgerIntegrityError",
    "ProofError",
    "TreeSizeError",
]


class LedgerError(IbxError):
    """Root of every ledger error."""

    title = "ledger error"


class EntryTooLargeError(LedgerError):
    """An entry payload over the size bound; store large objects as hashes."""

    title = "ledger entry too large"

    def __init__(self, size: int, limit: int, *, line: int | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(
            f"{where}payload is {size} bytes of canonical JSON; the limit is {limit} "
            "(record large objects as their SHA-256 hash)"
        )
        self.size = size
        self.limit = limit
        self.line = line


class InvalidEntryError(LedgerError):
    """An entry that cannot be recorded as given."""

    title = "invalid ledger entry"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


class TreeSizeError(LedgerError):
    """An index or tree size outside what the log holds (or a malformed range)."""

    title = "tree size or index out of range"

    def __init__(self, message: str, *, tree_size: int | None = None) -> None:
        super().__init__(message)
        self.tree_size = tree_size


class ProofError(LedgerError):
    """A Merkle proof that does not verify."""

    title = "proof does not verify"


class InclusionProofError(ProofError):
    """An inclusion proof that does not verify."""

    title = "inclusion proof does not verify"


class ConsistencyProofError(ProofError):
    """A consistency proof that does not verify."""

    title = "consistency proof does not verify"


class CheckpointError(LedgerError):
    """A checkpoint or signed note that does not parse or whose signature fails."""

    title = "checkpoint does not verify"


class LedgerIntegrityError(LedgerError):
    """Stored ledger state that does not recompute; names the first bad index."""

    title = "ledger integrity check failed"

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(f"index {index}: {message}" if index is not None else message)
        self.index = index
        self.reason = message
