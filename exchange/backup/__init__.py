"""Online backups of a deployment, and restores that refuse rather than guess.

``create_backup`` snapshots the database as of one transaction (SQLite's
online backup API, or ``pg_dump`` of an exported PostgreSQL snapshot), the
files of the data dir (private ones sealed under the master key) and, only
when asked, the master key, into a tar archive written 0600 and atomically,
with a signed RFC 8785 manifest. ``restore_backup`` puts one back into an
empty data dir only with the master key it was taken under, and only when
every member, the manifest's signature and the restored ledger check out.
See ``docs/adr/0009-backup-restore.md``.
"""

from exchange.backup._create import BACKUP_KEY, BackupSource, create_backup, write_private_file
from exchange.backup._manifest import (
    FORMAT,
    FORMAT_VERSION,
    ArchiveMember,
    BackupManifest,
    LedgerSnapshot,
    MemberKind,
)
from exchange.backup._restore import RestoreReport, read_manifest, restore_backup
from exchange.backup.errors import (
    ArchiveFormatError,
    ArchiveIntegrityError,
    BackupError,
    BackupTargetError,
    MasterKeyMismatchError,
    MasterKeyRequiredError,
    SnapshotVerificationError,
    UnsupportedDatabaseError,
)

__all__ = [
    "BACKUP_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "ArchiveFormatError",
    "ArchiveIntegrityError",
    "ArchiveMember",
    "BackupError",
    "BackupManifest",
    "BackupSource",
    "BackupTargetError",
    "LedgerSnapshot",
    "MasterKeyMismatchError",
    "MasterKeyRequiredError",
    "MemberKind",
    "RestoreReport",
    "SnapshotVerificationError",
    "UnsupportedDatabaseError",
    "create_backup",
    "read_manifest",
    "restore_backup",
    "write_private_file",
]
