"""The backup manifest: what an archive holds, and the state of the log it was taken at.

The manifest is RFC 8785 canonical JSON (``manifest.json``), signed with the
deployment's ``backup`` key (``manifest.sig``, Ed25519 over the manifest's
bytes). The signing key is itself in the snapshot, wrapped under the master
key, so only the holder of the master key can open it and nobody without it
can make a manifest that restore accepts.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from core.canonical import canonical_bytes, parse_json_object
from core.clock import format_rfc3339, parse_rfc3339, require_aware
from core.errors import CanonicalJsonError
from core.keys import Ed25519PublicKey
from exchange.backup.errors import ArchiveFormatError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "ArchiveMember",
    "BackupManifest",
    "LedgerSnapshot",
    "MemberKind",
    "check_relative_path",
    "sealed_file_aad",
]

logger = logging.getLogger(__name__)

FORMAT = "ibx-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"

_HEX64 = re.compile(r"[0-9a-f]{64}")


class MemberKind(Enum):
    """What a member is, and so where it goes back on restore."""

    DATABASE = "database"
    """The database snapshot (a SQLite file, or a pg_dump archive)."""
    FILE = "file"
    """A file of the data dir, as it was (configuration, certificates, public keys)."""
    SEALED_FILE = "sealed-file"
    """A private file of the data dir (mode 0600), AES-256-GCM under the master key."""
    MASTER_KEY = "master-key"
    """The master key itself: only in archives made with ``--include-master-key``."""

    @property
    def prefix(self) -> str:
        """The archive folder of members of this kind."""
        return {
            MemberKind.DATABASE: "database/",
            MemberKind.FILE: "files/",
            MemberKind.SEALED_FILE: "sealed/",
            MemberKind.MASTER_KEY: "",
        }[self]


def check_relative_path(path: str) -> str:
    """``path`` if it is a plain relative POSIX path that stays inside its folder.

    Raises:
        ArchiveFormatError: absolute, empty, ``.``/``..`` parts, backslashes or control characters.
    """
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path)
    ):
        raise ArchiveFormatError(f"unsafe path {path!r} in backup", member=path)
    return path


@dataclass(frozen=True)
class ArchiveMember:
    """One member: where it is restored, its SHA-256 and size in the archive, its file mode."""

    kind: MemberKind
    path: str
    sha256: str
    size: int
    mode: int

    def __post_init__(self) -> None:
        check_relative_path(self.path)
        if not _HEX64.fullmatch(self.sha256):
            raise ArchiveFormatError("sha256 must be 64 lowercase hex digits", member=self.path)
        if self.size < 0 or not 0 <= self.mode <= 0o777:
            raise ArchiveFormatError("member size or mode out of range", member=self.path)
        if self.kind in (MemberKind.SEALED_FILE, MemberKind.MASTER_KEY) and self.mode & 0o077:
            raise ArchiveFormatError("a private member must have mode 0600", member=self.path)

    @property
    def name(self) -> str:
        """The member's name inside the archive."""
        return self.kind.prefix + self.path

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "kind": self.kind.value,
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, data: object) -> ArchiveMember:
        """Parse the JSON form.

        Raises:
            ArchiveFormatError: a missing or mistyped field.
        """
        if not isinstance(data, dict):
            raise ArchiveFormatError("a manifest member must be an object")
        try:
            return cls(
                MemberKind(data["kind"]),
                _typed(data["path"], str),
                _typed(data["sha256"], str),
                _typed(data["size"], int),
                _typed(data["mode"], int),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ArchiveFormatError(f"malformed manifest member: {exc}") from exc


@dataclass(frozen=True)
class LedgerSnapshot:
    """The log's head inside the snapshot: origin, tree size, root hash and signed checkpoint."""

    origin: str
    tree_size: int
    root_hash: bytes
    checkpoint: str

    def __post_init__(self) -> None:
        if not self.origin or any(c.isspace() for c in self.origin):
            raise ArchiveFormatError("ledger origin must be one token")
        if self.tree_size < 0 or len(self.root_hash) != 32:
            raise ArchiveFormatError("ledger tree size or root hash out of range")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (root hash in standard base64, as in checkpoints)."""
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_dict(cls, data: object) -> LedgerSnapshot:
        """Parse the JSON form.

        Raises:
            ArchiveFormatError: a missing or mistyped field.
        """
        if not isinstance(data, dict):
            raise ArchiveFormatError("manifest 'ledger' must be an object")
        try:
            root = base64.b64decode(_typed(data["root_hash"], str), validate=True)
            return cls(
                _typed(data["origin"], str),
                _typed(data["tree_size"], int),
                root,
                _typed(data["checkpoint"], str),
            )
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            raise ArchiveFormatError(f"malformed manifest 'ledger': {exc}") from exc


@dataclass(frozen=True)
class BackupManifest:
    """Everything a restore checks before it writes the target data dir."""

    created: datetime
    database: str
    ledger: LedgerSnapshot
    master_key_fingerprint: str
    signer: Ed25519PublicKey
    members: tuple[ArchiveMember, ...]

    def __post_init__(self) -> None:
        require_aware(self.created, what="backup creation time")
        if self.database not in ("sqlite", "postgresql"):
            raise ArchiveFormatError(f"unknown database kind {self.database!r}")
        if not _HEX64.fullmatch(self.master_key_fingerprint):
            raise ArchiveFormatError("master key fingerprint must be 64 lowercase hex digits")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names) or {MANIFEST_NAME, SIGNATURE_NAME} & set(names):
            raise ArchiveFormatError("manifest lists a member twice or a reserved name")
        kinds = [m.kind for m in self.members]
        if kinds.count(MemberKind.DATABASE) != 1 or kinds.count(MemberKind.MASTER_KEY) > 1:
            raise ArchiveFormatError("a backup holds exactly one database and at most one key")

    @property
    def database_member(self) -> ArchiveMember:
        """The database snapshot's member."""
        return next(m for m in self.members if m.kind is MemberKind.DATABASE)

    @property
    def includes_master_key(self) -> bool:
        """Whether the archive carries the master key itself."""
        return any(m.kind is MemberKind.MASTER_KEY for m in self.members)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": format_rfc3339(self.created),
            "database": self.database,
            "ledger": self.ledger.to_dict(),
            "master_key": {
                "fingerprint": self.master_key_fingerprint,
                "included": self.includes_master_key,
            },
            "signer": self.signer.to_base64(),
            "members": [m.to_dict() for m in self.members],
        }

    def to_bytes(self) -> bytes:
        """RFC 8785 canonical bytes: what is hashed, signed and stored.

        Raises:
            CanonicalJsonError: a value with no canonical form (cannot happen for valid fields).
        """
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes) -> BackupManifest:
        """Parse ``manifest.json``; it must be in canonical form.

        Raises:
            ArchiveFormatError: not JSON, not canonical, another format or version, bad fields.
        """
        try:
            data = parse_json_object(raw, what=MANIFEST_NAME)
        except (CanonicalJsonError, ValueError) as exc:
            raise ArchiveFormatError(f"{MANIFEST_NAME} is not JSON: {exc}") from exc
        if data.get("format") != FORMAT:
            raise ArchiveFormatError(f"{MANIFEST_NAME} is not an {FORMAT} manifest")
        if data.get("version") != FORMAT_VERSION:
            raise ArchiveFormatError(
                f"backup format version {data.get('version')!r} is not {FORMAT_VERSION}; "
                "restore it with the ibx release that made it"
            )
        try:
            key = data["master_key"]
            members = data["members"]
            if not isinstance(key, dict) or not isinstance(members, list):
                raise TypeError("'master_key' must be an object and 'members' a list")
            manifest = cls(
                parse_rfc3339(_typed(data["created"], str)),
                _typed(data["database"], str),
                LedgerSnapshot.from_dict(data["ledger"]),
                _typed(key["fingerprint"], str),
                Ed25519PublicKey.from_base64(_typed(data["signer"], str)),
                tuple(ArchiveMember.from_dict(m) for m in members),
            )
            included = key["included"]
        except ArchiveFormatError:
            raise
        except (KeyError, ValueError, TypeError) as exc:
            raise ArchiveFormatError(f"malformed {MANIFEST_NAME}: {exc}") from exc
        if included is not manifest.includes_master_key or manifest.to_bytes() != raw:
            raise ArchiveFormatError(f"{MANIFEST_NAME} is not in canonical form")
        return manifest


def _typed(value: object, kind: type[Any]) -> Any:
    """``value`` if it is exactly of ``kind`` (no bool for int)."""
    if type(value) is not kind:
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def sealed_file_aad(path: str) -> bytes:
    """The AES-GCM associated data of a sealed member: binds its bytes to its path."""
    return f"ibx/backup/v{FORMAT_VERSION}/sealed-file/{path}".encode()
