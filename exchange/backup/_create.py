"""``ibx backup``: an online snapshot of a deployment, written 0600 and atomically.

What goes in: the database as of one transaction (with every wrapped key it
holds), each file of the data dir (private ones, mode 0600, sealed under the
master key), and, only when asked, the master key. The master key file and
the live database files are never copied as files; MPC job scratch folders
are left out.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sqlalchemy.engine import make_url

import ledger
from core.keyring import KeyRing
from core.keys import Ed25519Signer, MasterKey
from exchange.backup._database import snapshot_database
from exchange.backup._manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    ArchiveMember,
    BackupManifest,
    LedgerSnapshot,
    MemberKind,
    sealed_file_aad,
)
from exchange.backup.errors import BackupError, BackupTargetError

__all__ = ["BACKUP_KEY", "BackupSource", "create_backup", "write_private_file"]

logger = logging.getLogger(__name__)

BACKUP_KEY = "backup"
"""The key-ring name of the Ed25519 key that signs manifests (wrapped under the master key)."""

_SKIPPED_NAMES = ("master.key",)
_SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal")
_CHUNK = 1 << 20

_Filler = Callable[[BinaryIO], None]


@dataclass(frozen=True, repr=False)
class BackupSource:
    """What a backup is taken from: the data dir, its database, its keys and ledger origin."""

    data_dir: Path
    database_url: str
    master: MasterKey
    master_key_text: str
    keyring: KeyRing
    ledger_origin: str

    def __post_init__(self) -> None:
        if MasterKey.from_text(self.master_key_text).fingerprint() != self.master.fingerprint():
            raise BackupError("the master key text is not the key in use")

    def __repr__(self) -> str:
        return f"BackupSource(data_dir={self.data_dir!s})"


def create_backup(
    source: BackupSource, out: Path, *, include_master_key: bool, now: datetime
) -> BackupManifest:
    """Snapshot ``source`` into the archive ``out`` (tar + gzip, mode 0600, atomic rename).

    Raises:
        BackupTargetError: ``out`` is inside the data dir or its folder does not exist.
        UnsupportedDatabaseError: a database kind ibx cannot snapshot (names the tool).
        BackupError: the snapshot failed.
    """
    out = out.expanduser().absolute()
    data_dir = source.data_dir.resolve()
    if out.resolve().is_relative_to(data_dir):
        raise BackupTargetError(
            f"{out} is inside the data dir {data_dir}; write it elsewhere", path=out
        )
    if not out.parent.is_dir():
        raise BackupTargetError(f"{out.parent} is not a directory", path=out)
    # Created before the snapshot, so the snapshot holds the key that signs its manifest.
    signer = source.keyring.get_or_create(BACKUP_KEY)
    staging = Path(tempfile.mkdtemp(prefix=".ibx-backup-", dir=out.parent))
    try:
        snap = snapshot_database(source.database_url, staging)
        members: list[tuple[ArchiveMember, Path | bytes]] = []
        members.append(
            (_member_of_file(MemberKind.DATABASE, snap.path.name, snap.path, 0o600), snap.path)
        )
        if include_master_key:
            logger.warning("the backup %s includes the master key; keep it apart", out)
            raw = (source.master_key_text.strip() + "\n").encode()
            members.append((_member_of_bytes(MemberKind.MASTER_KEY, "master.key", raw, 0o600), raw))
        skip = {snap.path.resolve(), *_database_files(source.database_url)}
        for path, rel, mode in _data_dir_files(data_dir, skip):
            content = path.read_bytes()
            if mode & 0o077:
                members.append((_member_of_bytes(MemberKind.FILE, rel, content, mode), content))
            else:
                sealed = source.master.encrypt(content, aad=sealed_file_aad(rel))
                members.append(
                    (_member_of_bytes(MemberKind.SEALED_FILE, rel, sealed, 0o600), sealed)
                )
        manifest = BackupManifest(
            created=now,
            database=snap.kind,
            ledger=_ledger_snapshot(snap.head, source.ledger_origin),
            master_key_fingerprint=source.master.fingerprint(),
            signer=signer.public_key,
            members=tuple(m for m, _ in members),
        )
        _write_archive(out, manifest, signer, members, now)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("backup %s: tree size %d, %d members", out, manifest.ledger.tree_size, len(members))
    return manifest


def _ledger_snapshot(head: ledger.TreeHead, origin: str) -> LedgerSnapshot:
    if head.checkpoint:
        signed = ledger.SignedNote.from_text(head.checkpoint)
        origin = ledger.Checkpoint.from_text(signed.text).origin
    return LedgerSnapshot(origin, head.size, head.root, head.checkpoint)


def _database_files(url: str) -> set[Path]:
    """The live database file and its journal files, when they are in the data dir."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return set()
    main = Path(parsed.database).resolve()
    return {main, *(main.with_name(main.name + s) for s in _SKIPPED_SUFFIXES)}


def _data_dir_files(data_dir: Path, skip: set[Path]) -> Iterator[tuple[Path, str, int]]:
    """Regular files of the data dir: path, relative POSIX path, mode."""
    for path in sorted(data_dir.rglob("*")):
        rel = PurePosixPath(path.relative_to(data_dir).as_posix())
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            if not stat.S_ISDIR(info.st_mode):
                logger.warning("backup leaves out %s: not a regular file", path)
            continue
        if path.resolve() in skip or str(rel) in _SKIPPED_NAMES:
            continue
        if rel.parts[:1] == ("mpc",) and "jobs" in rel.parts[1:-1]:
            continue  # per-job scratch of MPC parties: inputs in flight, logs
        yield path, str(rel), stat.S_IMODE(info.st_mode)


def _member_of_file(kind: MemberKind, rel: str, path: Path, mode: int) -> ArchiveMember:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return ArchiveMember(kind, rel, digest.hexdigest(), path.stat().st_size, mode)


def _member_of_bytes(kind: MemberKind, rel: str, content: bytes, mode: int) -> ArchiveMember:
    return ArchiveMember(kind, rel, hashlib.sha256(content).hexdigest(), len(content), mode)


def _write_archive(
    out: Path,
    manifest: BackupManifest,
    signer: Ed25519Signer,
    members: list[tuple[ArchiveMember, Path | bytes]],
    now: datetime,
) -> None:
    manifest_bytes = manifest.to_bytes()
    signature = signer.sign(manifest_bytes).hex().encode() + b"\n"
    mtime = int(now.timestamp())

    def add(tar: tarfile.TarFile, name: str, size: int, body: BinaryIO) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, mtime
        tar.addfile(info, body)

    def fill(handle: BinaryIO) -> None:
        with tarfile.open(fileobj=handle, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            add(tar, MANIFEST_NAME, len(manifest_bytes), io.BytesIO(manifest_bytes))
            add(tar, SIGNATURE_NAME, len(signature), io.BytesIO(signature))
            for member, body in members:
                if isinstance(body, bytes):
                    add(tar, member.name, len(body), io.BytesIO(body))
                else:
                    with body.open("rb") as file:
                        add(tar, member.name, member.size, file)

    write_private_file(out, fill)


def write_private_file(path: Path, fill: _Filler) -> None:
    """Write ``path`` through a temporary file (mode 0600) renamed over it, fsynced.

    Raises:
        OSError: the folder cannot be written.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
