"""``ibx restore``: put a backup back into an empty data dir, or refuse and write nothing.

Order of checks, each before anything is written to the target:

1. the archive is an ibx backup of this format version (manifest first);
2. a master key was supplied (or the archive carries one) whose fingerprint is
   the manifest's; never a new key;
3. every member's SHA-256 and size match the manifest, and nothing else is in it;
4. the snapshot's wrapped ``backup`` key opens under the master key and its
   signature over the manifest verifies (so a rewritten manifest is refused too);
5. the restored ledger verifies, at exactly the manifest's tree size and root.

The restore is built in a private folder beside the target and renamed onto it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

import ledger
from core.db import Database
from core.errors import ConfigurationError, KeyDecryptionError
from core.keyring import KeyRing
from core.keys import MasterKey, verify_ed25519
from exchange.backup._create import BACKUP_KEY
from exchange.backup._database import check_restore_target, restore_database
from exchange.backup._manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    ArchiveMember,
    BackupManifest,
    MemberKind,
    sealed_file_aad,
)
from exchange.backup.errors import (
    ArchiveFormatError,
    ArchiveIntegrityError,
    BackupTargetError,
    MasterKeyMismatchError,
    MasterKeyRequiredError,
    SnapshotVerificationError,
)

__all__ = ["RestoreReport", "read_manifest", "restore_backup"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_MAX_MANIFEST = 16 << 20


@dataclass(frozen=True)
class RestoreReport:
    """What was restored: the manifest, the data dir, the database URL, the key's fate."""

    manifest: BackupManifest
    data_dir: Path
    database_url: str
    master_key_written: bool


def read_manifest(archive: Path) -> BackupManifest:
    """The manifest of ``archive`` (its signature is checked only by a restore).

    Raises:
        ArchiveFormatError: not an ibx backup.
    """
    with _open(archive) as tar:
        return _manifest_and_signature(tar)[0]


def restore_backup(
    archive: Path,
    data_dir: Path,
    *,
    master_key_text: str | None,
    write_master_key: bool,
    database_url: str | None = None,
) -> RestoreReport:
    """Restore ``archive`` into the empty (or absent) folder ``data_dir``.

    ``master_key_text`` is the master key that opens the snapshot's keys; it may
    be None only when the archive carries the key. With ``write_master_key`` the
    key is written to ``<data_dir>/master.key`` (mode 0600) for the restored
    deployment to use; otherwise it must keep being supplied (``IBX_MASTER_KEY``).

    Raises:
        BackupTargetError: ``data_dir`` is not empty, or a PostgreSQL target is missing or used.
        ArchiveFormatError: not an ibx backup of this version, or a member it does not list.
        MasterKeyRequiredError: no master key given, and the archive does not carry one.
        MasterKeyMismatchError: the key given is not the one the snapshot was taken under.
        ArchiveIntegrityError: a member or the manifest's signature does not match.
        SnapshotVerificationError: the restored log does not verify or is not the manifest's.
        BackupError: the database could not be put back.
    """
    target = data_dir.expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupTargetError(
            f"{target} is not empty; restore into a new or empty folder", path=target
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
    try:
        with _open(archive) as tar:
            manifest, signature = _manifest_and_signature(tar)
            given = _given_key(manifest, master_key_text)
            check_restore_target(manifest.database, database_url)
            incoming = staging / ".incoming"
            incoming.mkdir()
            raw = _extract(tar, manifest, incoming)
        master, key_text = _master_key(manifest, given, master_key_text, raw)
        url = restore_database(
            manifest.database, raw[manifest.database_member.name], staging, database_url
        )
        _check_snapshot(manifest, signature, url, master)
        _place_files(manifest, raw, staging, master)
        shutil.rmtree(incoming)
        written = False
        if write_master_key:
            _write_key(staging / "master.key", key_text)
            written = True
        staging.chmod(0o700)
        if target.exists():
            target.rmdir()  # empty, checked above
        staging.rename(target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("restored %s into %s (tree size %d)", archive, target, manifest.ledger.tree_size)
    return RestoreReport(manifest, target, url, written)


_DAMAGED = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
"""What a truncated or corrupted tar or gzip stream raises while it is read."""


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r|*")
    except _DAMAGED as exc:
        raise ArchiveFormatError(f"{archive} is not a backup archive: {exc}") from exc


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, limit: int) -> bytes:
    if not info.isreg() or info.size > limit:
        raise ArchiveFormatError(
            f"{info.name} is not a regular file of sane size", member=info.name
        )
    handle = tar.extractfile(info)
    assert handle is not None  # a regular file always has one
    try:
        return handle.read()
    except _DAMAGED as exc:
        raise ArchiveFormatError(f"the archive is damaged: {exc}", member=info.name) from exc


def _next(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except _DAMAGED as exc:
        raise ArchiveFormatError(f"the archive is damaged: {exc}") from exc


def _manifest_and_signature(tar: tarfile.TarFile) -> tuple[BackupManifest, bytes]:
    first = _next(tar)
    if first is None or first.name != MANIFEST_NAME:
        raise ArchiveFormatError(f"the archive does not start with {MANIFEST_NAME}")
    manifest = BackupManifest.from_bytes(_read_member(tar, first, _MAX_MANIFEST))
    second = _next(tar)
    if second is None or second.name != SIGNATURE_NAME:
        raise ArchiveFormatError(f"{SIGNATURE_NAME} does not follow {MANIFEST_NAME}")
    try:
        signature = bytes.fromhex(_read_member(tar, second, 1024).decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArchiveFormatError(f"{SIGNATURE_NAME} is not hex", member=SIGNATURE_NAME) from exc
    return manifest, signature


def _given_key(manifest: BackupManifest, text: str | None) -> MasterKey | None:
    """The supplied key, checked by fingerprint before anything is extracted."""
    expected = manifest.master_key_fingerprint
    if text is None:
        if manifest.includes_master_key:
            return None
        raise MasterKeyRequiredError(
            f"restoring this backup needs the master key it was taken under "
            f"(fingerprint {expected[:16]}…): set IBX_MASTER_KEY or pass --master-key-file; "
            "ibx never makes a new master key for a snapshot",
            fingerprint=expected,
        )
    try:
        key = MasterKey.from_text(text)
    except ConfigurationError as exc:
        raise MasterKeyMismatchError(
            f"the master key given is not usable ({exc}); this backup needs fingerprint "
            f"{expected[:16]}…",
            expected=expected,
            given="",
        ) from exc
    _same_key(key, expected, "given")
    return key


def _same_key(key: MasterKey, expected: str, source: str) -> None:
    if (given := key.fingerprint()) != expected:
        raise MasterKeyMismatchError(
            f"the master key {source} (fingerprint {given[:16]}…) is not the one this "
            f"backup's keys are wrapped under (fingerprint {expected[:16]}…)",
            expected=expected,
            given=given,
        )


def _extract(tar: tarfile.TarFile, manifest: BackupManifest, into: Path) -> dict[str, Path]:
    """Every listed member into ``into``, hashed on the way; refuses anything else."""
    listed = {m.name: m for m in manifest.members}
    seen: dict[str, Path] = {}
    while (info := _next(tar)) is not None:
        member = listed.get(info.name)
        if member is None or info.name in seen:
            raise ArchiveFormatError(
                f"the archive holds {info.name!r}, which its manifest does not list once",
                member=info.name,
            )
        if not info.isreg():
            raise ArchiveFormatError(f"{info.name} is not a regular file", member=info.name)
        path = into / str(len(seen))
        _copy_checked(tar, info, member, path)
        seen[info.name] = path
    missing = sorted(set(listed) - set(seen))
    if missing:
        raise ArchiveIntegrityError(f"the archive lacks {missing[0]}", member=missing[0])
    return seen


def _copy_checked(
    tar: tarfile.TarFile, info: tarfile.TarInfo, member: ArchiveMember, path: Path
) -> None:
    source = tar.extractfile(info)
    assert source is not None
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        try:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if size > member.size:
                    break  # longer than the manifest says: refuse without reading the rest
                out.write(chunk)
        except _DAMAGED as exc:
            raise ArchiveFormatError(f"the archive is damaged: {exc}", member=member.name) from exc
    if size != member.size or digest.hexdigest() != member.sha256:
        raise ArchiveIntegrityError(
            f"{member.name} does not match the SHA-256 in the manifest", member=member.name
        )


def _master_key(
    manifest: BackupManifest, given: MasterKey | None, text: str | None, raw: dict[str, Path]
) -> tuple[MasterKey, str]:
    carried = next((m for m in manifest.members if m.kind is MemberKind.MASTER_KEY), None)
    if carried is not None:
        carried_text = raw[carried.name].read_text(encoding="ascii").strip()
        try:
            carried_key = MasterKey.from_text(carried_text)
        except ConfigurationError as exc:
            raise ArchiveIntegrityError(
                "the archive's master key is malformed", member=carried.name
            ) from exc
        _same_key(carried_key, manifest.master_key_fingerprint, "in the archive")
        if given is None:
            return carried_key, carried_text
    assert given is not None and text is not None  # checked by _given_key
    return given, text.strip()


def _check_snapshot(
    manifest: BackupManifest, signature: bytes, url: str, master: MasterKey
) -> None:
    db = Database(url)
    try:
        keyring = KeyRing(db, master)
        try:
            signer = keyring.get(BACKUP_KEY)
            ledger_key = keyring.get("ledger")
        except KeyDecryptionError as exc:
            raise ArchiveIntegrityError(
                "the snapshot's wrapped keys do not open under the master key",
                member=manifest.database_member.name,
            ) from exc
        except SQLAlchemyError as exc:
            raise ArchiveIntegrityError(
                f"the snapshot's database does not open: {type(exc).__name__}",
                member=manifest.database_member.name,
            ) from exc
        if signer is None or signer.public_key != manifest.signer:
            raise ArchiveIntegrityError(
                "the snapshot does not hold the key that signed the manifest", member=SIGNATURE_NAME
            )
        if not verify_ed25519(signer.public_key, manifest.to_bytes(), signature):
            raise ArchiveIntegrityError(
                "the manifest's signature does not verify", member=SIGNATURE_NAME
            )
        want = manifest.ledger
        if ledger_key is None:
            if want.tree_size:
                raise SnapshotVerificationError("the snapshot has no ledger key", tree_size=0)
            return
        log = ledger.Ledger(
            ledger.SqlLedgerBackend(db), ledger_key, ledger.LedgerConfig(origin=want.origin)
        )
        try:
            report = log.verify()
        except ledger.LedgerError as exc:
            raise SnapshotVerificationError(f"the restored ledger does not verify: {exc}") from exc
        if report.size != want.tree_size or report.root != want.root_hash:
            raise SnapshotVerificationError(
                f"the restored ledger has size {report.size}, the manifest says {want.tree_size}",
                tree_size=report.size,
            )
    finally:
        db.dispose()


def _place_files(
    manifest: BackupManifest, raw: dict[str, Path], root: Path, master: MasterKey
) -> None:
    for member in manifest.members:
        if member.kind not in (MemberKind.FILE, MemberKind.SEALED_FILE):
            continue
        dest = root / member.path
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if member.kind is MemberKind.FILE:
            raw[member.name].replace(dest)
            dest.chmod(member.mode)
            continue
        try:
            content = master.decrypt(
                raw[member.name].read_bytes(), aad=sealed_file_aad(member.path)
            )
        except KeyDecryptionError as exc:
            raise ArchiveIntegrityError(f"{member.name} does not open", member=member.name) from exc
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, member.mode)
        with os.fdopen(fd, "wb") as out:
            out.write(content)


def _write_key(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text.strip() + "\n")
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
