"""``ibx backup`` / ``ibx restore``: online snapshots under load, and restores that refuse.

Real processes and real SQLite files: a separate process appends to the ledger
while a real ``ibx serve`` runs and an ``ibx backup`` process snapshots the data
dir; the archive is restored by ``ibx restore`` and checked by ``ibx ledger
verify``, each a process. The refusals run ``ibx`` through its entry point in
process; the attack tests tamper with real archives and real keys.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import secrets
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from core.clock import utcnow
from core.events import Event
from core.keys import MasterKey
from exchange.backup import (
    ArchiveFormatError,
    ArchiveIntegrityError,
    BackupManifest,
    BackupTargetError,
    MasterKeyMismatchError,
    MemberKind,
    read_manifest,
    restore_backup,
)
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.in_process import Done, ibx
from tests.server import running_exchange
from tests.zygote import ibx_argv

ORIGIN = "backup.test.ibx.localhost/ledger"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    env["IBX_LEDGER_ORIGIN"] = ORIGIN
    env.update(extra)
    return env


def _process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``ibx`` in its own process (the snapshots under load)."""
    return subprocess.run(
        [*ibx_argv(), *args],
        env=env if env is not None else _env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ibx(*args: str, env: dict[str, str] | None = None) -> Done:
    """``ibx`` through its entry point in this process (``IBX_LEDGER_ORIGIN`` set, or ``env``)."""
    extra = {k: v for k, v in (env if env is not None else _env()).items() if k.startswith("IBX_")}
    return ibx(*args, env=extra)


def _make_deployment(data: Path, entries: int = 20) -> None:
    """A data dir with ledger entries, identities and an MPC deployment (private key files)."""
    import mpc

    runtime = Runtime.initialise(Settings(data_dir=data, ledger_origin=ORIGIN))
    try:
        runtime.ledger.append([Event("backup.test", "tester", {"i": i}) for i in range(entries)])
        runtime.identities.create("ent-a", Role.ENTERPRISE)
    finally:
        runtime.close()
    mpc.MpcDeployment.create(data / "mpc", parties=3, now=utcnow())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("deployment") / "data"
    _make_deployment(data)
    return data


@pytest.fixture(scope="module")
def archive(deployment: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("archive") / "backup.tar.gz"
    done = _ibx("--data-dir", str(deployment), "backup", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def _key_text(data: Path) -> str:
    return (data / "master.key").read_text()


# -- the online snapshot under load -------------------------------------------------------


class _Acks:
    """Reads the appender's acknowledged indexes as they are printed."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._lock = threading.Lock()
        self._seen: list[int] = []
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip().isdigit():
                with self._lock:
                    self._seen.append(int(line))

    def now(self) -> list[int]:
        with self._lock:
            return list(self._seen)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.now()) < count:
            assert self._proc.poll() is None, "the appender died"
            assert time.monotonic() < deadline, f"fewer than {count} acknowledgements"
            time.sleep(0.02)

    def join(self) -> None:
        self._thread.join(timeout=30)


def test_backup_under_concurrent_appends_restores_every_acknowledged_entry(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _make_deployment(data, entries=1)
    out = tmp_path / "snap.tar.gz"
    with running_exchange(data, env=_env()):  # the server runs throughout
        appender = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.appender", str(data)],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        try:
            assert appender.stdout is not None
            assert appender.stdout.readline().strip() == "ready"
            acks = _Acks(appender)
            acks.wait_for(300)
            before = acks.now()  # acknowledged before the backup started
            done = _process("--data-dir", str(data), "backup", "--out", str(out))
            assert done.returncode == 0, done.stderr
            during = len(acks.now())
            acks.wait_for(during + 100)  # the appender went on after the snapshot
        finally:
            appender.kill()
            appender.wait(timeout=30)
            acks.join()
            assert appender.stdout is not None
            appender.stdout.close()
    manifest = read_manifest(out)
    assert during > len(before), "nothing was appended while the backup ran"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    restored = tmp_path / "restored"
    done = _process(
        "restore",
        "--from",
        str(out),
        "--data-dir",
        str(restored),
        "--master-key-file",
        str(data / "master.key"),
    )
    assert done.returncode == 0, done.stderr
    verified = _process("--data-dir", str(restored), "ledger", "verify")
    assert verified.returncode == 0, verified.stderr
    size = manifest.ledger.tree_size
    root = base64.b64encode(manifest.ledger.root_hash).decode()
    assert verified.stdout.split() == ["ok", "size", str(size), "root", root]

    assert before and max(before) < size, "an entry acknowledged before the backup is missing"
    runtime = Runtime(Settings(data_dir=restored, ledger_origin=ORIGIN))
    try:
        acked = set(before)
        found = {
            e.index
            for start in range(0, size, 1000)
            for e in runtime.ledger.entries(start, 1000)
            if e.type == "crash.test"
        }
        assert acked <= found
        assert runtime.identities.list()  # the registry came back too
    finally:
        runtime.close()
    live = Runtime(Settings(data_dir=data, ledger_origin=ORIGIN))
    try:
        assert live.ledger.size() > size  # the snapshot is of a moment, not of the end
        assert live.ledger.root_at(size) == manifest.ledger.root_hash
    finally:
        live.close()
    for path in sorted((data / "mpc").rglob("*")):
        if path.is_file() and "jobs" not in path.parts:
            twin = restored / path.relative_to(data)
            assert twin.read_bytes() == path.read_bytes(), path
            assert stat.S_IMODE(twin.stat().st_mode) == stat.S_IMODE(path.stat().st_mode)


# -- what is (not) in the archive ---------------------------------------------------------


def _archive_bytes(archive: Path) -> bytes:
    return gzip.decompress(archive.read_bytes())


def _key_forms(text: str) -> list[bytes]:
    raw = bytes.fromhex(text.strip())
    return [
        raw,
        raw.hex().encode(),
        raw.hex().upper().encode(),
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    ]


def test_the_master_key_is_never_in_an_archive_made_without_the_flag(
    deployment: Path, archive: Path, tmp_path: Path
) -> None:
    body = _archive_bytes(archive)
    assert not [form for form in _key_forms(_key_text(deployment)) if form in body]
    # Nor are the MPC parties' private keys: they travel sealed under the master key.
    for key in (deployment / "mpc").rglob("party_*.key"):
        assert key.read_bytes() not in body
    members = {m.kind for m in read_manifest(archive).members}
    assert MemberKind.SEALED_FILE in members and MemberKind.MASTER_KEY not in members

    with_key = tmp_path / "with-key.tar.gz"
    done = _ibx(
        "--data-dir", str(deployment), "backup", "--out", str(with_key), "--include-master-key"
    )
    assert done.returncode == 0, done.stderr
    assert _key_text(deployment).strip().encode() in _archive_bytes(with_key)  # the control
    report = restore_backup(with_key, tmp_path / "r", master_key_text=None, write_master_key=True)
    assert (tmp_path / "r" / "master.key").read_text() == _key_text(deployment)
    assert report.manifest.includes_master_key


def test_the_archive_is_mode_0600_and_written_atomically(archive: Path, deployment: Path) -> None:
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]  # no temp file left
    manifest = read_manifest(archive)
    assert (
        manifest.master_key_fingerprint == MasterKey.from_text(_key_text(deployment)).fingerprint()
    )
    with tarfile.open(archive) as tar:
        assert all(m.mode == 0o600 for m in tar.getmembers())


def test_backup_refuses_to_write_inside_the_data_dir(deployment: Path) -> None:
    done = _ibx("--data-dir", str(deployment), "backup", "--out", str(deployment / "b.tgz"))
    assert done.returncode == 1
    assert "inside the data dir" in done.stderr
    assert not (deployment / "b.tgz").exists()


def test_master_key_export_is_0600_and_never_overwrites(deployment: Path, tmp_path: Path) -> None:
    out = tmp_path / "master.key.saved"
    done = _ibx("--data-dir", str(deployment), "backup", "master-key", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert MasterKey.from_text(out.read_text()).fingerprint() in done.stdout
    again = _ibx("--data-dir", str(deployment), "backup", "master-key", "--out", str(out))
    assert again.returncode != 0
    assert "never written over" in again.stderr


# -- restore refuses ------------------------------------------------------------------------


def test_restore_without_the_master_key_is_refused_and_says_so(
    archive: Path, tmp_path: Path
) -> None:
    target = tmp_path / "restored"
    done = _ibx("restore", "--from", str(archive), "--data-dir", str(target))
    assert done.returncode == 1
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "needs the master key it was taken under" in message
    assert "IBX_MASTER_KEY" in message and "--master-key-file" in message
    assert read_manifest(archive).master_key_fingerprint[:16] in message
    assert not target.exists()  # nothing written, and no new master key made


def test_restore_with_a_wrong_master_key_is_refused(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "restored"
    other = secrets.token_hex(32)
    done = _ibx(
        "restore",
        "--from",
        str(archive),
        "--data-dir",
        str(target),
        env=_env(IBX_MASTER_KEY=other),
    )
    assert done.returncode == 1
    assert "wrong master key" in done.stderr
    assert not target.exists()
    with pytest.raises(MasterKeyMismatchError):
        restore_backup(archive, target, master_key_text=other, write_master_key=True)
    assert not target.exists()


def test_restore_refuses_a_non_empty_target(
    archive: Path, deployment: Path, tmp_path: Path
) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine\n")
    with pytest.raises(BackupTargetError):
        restore_backup(
            archive, target, master_key_text=_key_text(deployment), write_master_key=True
        )
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def _rewrite(
    archive: Path,
    out: Path,
    change: Callable[[str, bytes], bytes],
    *,
    fix_manifest: bool,
    extra: dict[str, bytes] | None = None,
) -> None:
    """Copy ``archive`` with ``change`` applied to each member (and the manifest re-hashed)."""
    with tarfile.open(archive) as tar:
        items = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    changed = [(name, change(name, body)) for name, body in items]
    if fix_manifest:
        manifest = BackupManifest.from_bytes(changed[0][1])
        bodies = dict(changed)
        members = tuple(
            replace(
                m,
                sha256=hashlib.sha256(bodies[m.name]).hexdigest(),
                size=len(bodies[m.name]),
            )
            for m in manifest.members
        )
        changed[0] = ("manifest.json", replace(manifest, members=members).to_bytes())
    with tarfile.open(out, "w:gz") as tar:
        for name, body in [*changed, *(extra or {}).items()]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))


def _flip(target: str) -> Callable[[str, bytes], bytes]:
    def change(name: str, body: bytes) -> bytes:
        if name != target:
            return body
        middle = len(body) // 2
        return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]

    return change


def _member_names(archive: Path) -> dict[MemberKind, str]:
    return {m.kind: m.name for m in read_manifest(archive).members}


@pytest.mark.parametrize(
    "kind", [MemberKind.DATABASE, MemberKind.FILE, MemberKind.SEALED_FILE], ids=lambda k: k.value
)
def test_a_tampered_member_is_refused_by_the_manifest_hash(
    archive: Path, deployment: Path, tmp_path: Path, kind: MemberKind
) -> None:
    name = _member_names(archive)[kind]
    bad = tmp_path / "bad.tar.gz"
    _rewrite(archive, bad, _flip(name), fix_manifest=False)
    target = tmp_path / "restored"
    with pytest.raises(ArchiveIntegrityError) as caught:
        restore_backup(bad, target, master_key_text=_key_text(deployment), write_master_key=True)
    assert caught.value.member == name
    assert "SHA-256" in str(caught.value)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar.gz"]  # no staging left behind


def test_a_rewritten_manifest_is_refused_by_its_signature(
    archive: Path, deployment: Path, tmp_path: Path
) -> None:
    """Swap a party's public box key (enterprises would seal shares to the attacker)."""
    attacker = secrets.token_bytes(32).hex()

    def swap(name: str, body: bytes) -> bytes:
        if name != "files/mpc/box_public_keys":
            return body
        return (attacker + body.decode()[64:]).encode()

    bad = tmp_path / "bad.tar.gz"
    _rewrite(archive, bad, swap, fix_manifest=True)
    target = tmp_path / "restored"
    with pytest.raises(ArchiveIntegrityError) as caught:
        restore_backup(bad, target, master_key_text=_key_text(deployment), write_master_key=True)
    assert caught.value.member == "manifest.sig"
    assert not target.exists()


@pytest.mark.parametrize(
    "name", ["files/../../escaped", "files/extra.txt", "manifest.json"], ids=str
)
def test_a_member_the_manifest_does_not_list_is_refused(
    archive: Path, deployment: Path, tmp_path: Path, name: str
) -> None:
    bad = tmp_path / "bad.tar.gz"
    _rewrite(archive, bad, lambda _n, body: body, fix_manifest=False, extra={name: b"x"})
    with pytest.raises(ArchiveFormatError):
        restore_backup(
            bad, tmp_path / "r", master_key_text=_key_text(deployment), write_master_key=True
        )
    assert not (tmp_path / "r").exists()
    assert not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("keep", [0.5, 0.02], ids=["half", "start"])
def test_a_truncated_archive_is_refused(
    archive: Path, deployment: Path, tmp_path: Path, keep: float
) -> None:
    cut = tmp_path / "cut.tar.gz"
    body = archive.read_bytes()
    cut.write_bytes(body[: int(len(body) * keep)])
    target = tmp_path / "restored"
    with pytest.raises(ArchiveFormatError):
        restore_backup(cut, target, master_key_text=_key_text(deployment), write_master_key=True)
    assert not target.exists()
    done = _ibx(
        "restore",
        "--from",
        str(cut),
        "--data-dir",
        str(target),
        "--master-key-file",
        str(deployment / "master.key"),
    )
    assert done.returncode == 1
    assert done.stderr.startswith("ibx: not an ibx backup:")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not target.exists()


def test_not_a_backup_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    with pytest.raises(ArchiveFormatError):
        read_manifest(junk)


# -- PostgreSQL: pg_dump of an exported snapshot, pg_restore into an empty database -----------


def _empty_database(server: str) -> str:
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    host, port = server.split(":")
    with psycopg.connect(
        f"host={host} port={port} user=ibx dbname=postgres", autocommit=True
    ) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://ibx@{server}/{name}"


@pytest.mark.postgres
def test_postgresql_backup_under_concurrent_appends_restores_into_an_empty_database(
    tmp_path: Path, postgres_server: str
) -> None:
    source_url, target_url = _empty_database(postgres_server), _empty_database(postgres_server)
    data = tmp_path / "data"
    env = _env(IBX_DATABASE_URL=source_url)
    Runtime.initialise(
        Settings(data_dir=data, ledger_origin=ORIGIN, database_url=source_url)
    ).close()
    out = tmp_path / "pg.tar.gz"
    appender = subprocess.Popen(
        [sys.executable, "-m", "tests.ledger.appender", str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert appender.stdout is not None
        assert appender.stdout.readline().strip() == "ready"
        acks = _Acks(appender)
        acks.wait_for(50)
        before = acks.now()
        done = _process("--data-dir", str(data), "backup", "--out", str(out), env=env)
        assert done.returncode == 0, done.stderr
        acks.wait_for(len(acks.now()) + 20)
    finally:
        appender.kill()
        appender.wait(timeout=30)
        assert appender.stdout is not None
        appender.stdout.close()
    manifest = read_manifest(out)
    assert manifest.database == "postgresql"
    assert max(before) < manifest.ledger.tree_size

    restored = tmp_path / "restored"
    target_env = _env(IBX_DATABASE_URL=target_url)
    done = _process(
        "restore",
        "--from",
        str(out),
        "--data-dir",
        str(restored),
        "--master-key-file",
        str(data / "master.key"),
        env=target_env,
    )
    assert done.returncode == 0, done.stderr
    verified = _process("--data-dir", str(restored), "ledger", "verify", env=target_env)
    assert verified.returncode == 0, verified.stderr
    root = base64.b64encode(manifest.ledger.root_hash).decode()
    assert verified.stdout.split() == ["ok", "size", str(manifest.ledger.tree_size), "root", root]
    # A second restore into the now-filled database is refused.
    again = _process(
        "restore",
        "--from",
        str(out),
        "--data-dir",
        str(tmp_path / "again"),
        "--master-key-file",
        str(data / "master.key"),
        env=target_env,
    )
    assert again.returncode == 1
    assert "restore into an empty database" in again.stderr
