"""Append-only verifiable log: RFC 9162 Merkle tree, C2SP signed checkpoints.

The ledger stores opaque canonical bytes; the packages that write entries
(``consent``, ``policies``, ``mpc``, ``edge_tls`` through the event recorder)
define their payload schemas.
"""

from typing import TYPE_CHECKING

from ledger._batch import LedgerBatch
from ledger._checkpoint import Checkpoint, NoteSignature, NoteVerifier, SignedNote, sign_note
from ledger._cosignature import (
    COSIGNATURE_V1,
    CosignatureVerifier,
    cosign,
    cosignature_message,
    cosignature_timestamp,
    count_cosignatures,
    verify_cosignature,
    with_cosignatures,
)
from ledger._entry import MAX_PAYLOAD_BYTES, LedgerEntry
from ledger._fetched import FetchedLog
from ledger._integrity import IntegrityReport
from ledger._kept import KeptCheckpoint, check_kept_checkpoint
from ledger._ledger import ConsistencyProof, InclusionProof, Ledger, LedgerConfig
from ledger._merkle import (
    EMPTY_ROOT,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from ledger.backends.base import LedgerBackend, StoredEntry, SubjectHit, TreeHead
from ledger.backends.memory import MemoryLedgerBackend
from ledger.errors import (
    CheckpointError,
    ConsistencyProofError,
    EntryTooLargeError,
    InclusionProofError,
    InvalidEntryError,
    LedgerError,
    LedgerIntegrityError,
    ProofError,
    TreeSizeError,
)

if TYPE_CHECKING:
    from ledger.backends.checkpoint_store import CheckpointStore, StoredCosignature
    from ledger.backends.sql import MIGRATIONS, SqlLedgerBackend


def __getattr__(name: str) -> object:
    """The SQL backend and checkpoint store load on first use (PEP 562): a client that only verifies
    checkpoints and proofs loads no SQLAlchemy.

    Raises:
        AttributeError: not a name of this package.
    """
    if name in ("MIGRATIONS", "SqlLedgerBackend"):
        from ledger.backends import sql  # noqa: PLC0415 -- the database layer on demand

        return getattr(sql, name)
    if name in ("CheckpointStore", "StoredCosignature"):
        from ledger.backends import checkpoint_store  # noqa: PLC0415 -- the database layer on demand

        return getattr(checkpoint_store, name)
    raise AttributeError(f"module 'ledger' has no attribute {name!r}")


__all__ = [
    "COSIGNATURE_V1",
    "EMPTY_ROOT",
    "MAX_PAYLOAD_BYTES",
    "MIGRATIONS",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "ConsistencyProof",
    "ConsistencyProofError",
    "CosignatureVerifier",
    "EntryTooLargeError",
    "FetchedLog",
    "InclusionProof",
    "InclusionProofError",
    "IntegrityReport",
    "InvalidEntryError",
    "KeptCheckpoint",
    "Ledger",
    "LedgerBackend",
    "LedgerBatch",
    "LedgerConfig",
    "LedgerEntry",
    "LedgerError",
    "LedgerIntegrityError",
    "MemoryLedgerBackend",
    "NoteSignature",
    "NoteVerifier",
    "ProofError",
    "SignedNote",
    "SqlLedgerBackend",
    "StoredCosignature",
    "StoredEntry",
    "SubjectHit",
    "TreeHead",
    "TreeSizeError",
    "check_kept_checkpoint",
    "cosign",
    "cosignature_message",
    "cosignature_timestamp",
    "count_cosignatures",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "sign_note",
    "verify_consistency",
    "verify_cosignature",
    "verify_inclusion",
    "with_cosignatures",
]
