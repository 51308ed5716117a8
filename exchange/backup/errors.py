"""Errors of backup and restore.

::

    IbxError
    └── BackupError                   a backup or restore that cannot be done as asked
        ├── BackupTargetError         --out inside the data dir, a non-empty restore target
        ├── UnsupportedDatabaseError  a database kind ibx cannot snapshot (names the tool to use)
        ├── ArchiveFormatError        not an ibx backup: no manifest, unknown version, stray member
        ├── ArchiveIntegrityError     a member whose bytes or signature do not match the manifest
        ├── MasterKeyRequiredError    restore without the master key that opens the snapshot
        ├── MasterKeyMismatchError    restore with another master key
        └── SnapshotVerificationError the restored log does not verify or differs from the manifest
"""

from __future__ import annotations

from pathlib import Path

from core.errors import IbxError

__all__ = [
    "ArchiveFormatError",
    "ArchiveIntegrityError",
    "BackupError",
    "BackupTargetError",
    "MasterKeyMismatchError",
    "MasterKeyRequiredError",
    "SnapshotVerificationError",
    "UnsupportedDatabaseError",
]


class BackupError(IbxError):
    """Root of backup and restore errors."""

    title = "backup refused"


class BackupTargetError(BackupError):
    """A target that must not be written: ``--out`` in the data dir, a non-empty dir or database.

    ``path`` is the file or folder refused (None for a database).
    """

    title = "backup target refused"

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class UnsupportedDatabaseError(BackupError):
    """A database URL whose kind ibx cannot snapshot itself."""

    title = "database cannot be backed up"

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(message)
        self.backend = backend


class ArchiveFormatError(BackupError):
    """A file that is not an ibx backup this version reads."""

    title = "not an ibx backup"

    def __init__(self, message: str, *, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


class ArchiveIntegrityError(BackupError):
    """A member whose bytes differ from the manifest, or a manifest whose signature fails."""

    title = "backup archive was modified"

    def __init__(self, message: str, *, member: str) -> None:
        super().__init__(message)
        self.member = member


class MasterKeyRequiredError(BackupError):
    """Restore was given no master key; ibx never makes a new one for a snapshot."""

    title = "master key required"

    def __init__(self, message: str, *, fingerprint: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class MasterKeyMismatchError(BackupError):
    """The master key given is not the one the snapshot's keys are wrapped under."""

    title = "wrong master key"

    def __init__(self, message: str, *, expected: str, given: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.given = given


class SnapshotVerificationError(BackupError):
    """The restored ledger does not verify, or its size or root differ from the manifest."""

    title = "restored snapshot does not verify"

    def __init__(self, message: str, *, tree_size: int | None = None) -> None:
        super().__init__(message)
        self.tree_size = tree_size
