"""Master key handling and signing keys encrypted at rest."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core.db import Database
from core.errors import ConfigurationError, KeyDecryptionError
from core.keyring import KeyRing
from core.keys import MasterKey


def test_master_key_file_is_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    first = MasterKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = MasterKey.load_or_create(path)
    blob = first.encrypt(b"secret", aad=b"a")
    assert second.decrypt(blob, aad=b"a") == b"secret"
    assert "redacted" in repr(first)


def test_a_world_readable_master_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    MasterKey.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="0600"):
        MasterKey.load_or_create(path)


@pytest.mark.parametrize(
    "text",
    ["changeme", "00" * 32, "abc", "A" * 44],
    ids=["placeholder", "all-zero", "short", "low-variety"],
)
def test_weak_or_malformed_master_keys_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError):
        MasterKey.from_text(text)


def test_ciphertext_is_bound_to_its_aad_and_key() -> None:
    key = MasterKey(os.urandom(32))
    blob = key.encrypt(b"private", aad=b"ledger")
    with pytest.raises(KeyDecryptionError):
        key.decrypt(blob, aad=b"other")
    with pytest.raises(KeyDecryptionError):
        MasterKey(os.urandom(32)).decrypt(blob, aad=b"ledger")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(KeyDecryptionError):
        key.decrypt(tampered, aad=b"ledger")


def test_keyring_stores_only_ciphertext_and_reopens(db: Database, tmp_path: Path) -> None:
    master = MasterKey(os.urandom(32))
    ring = KeyRing(db, master)
    signer = ring.get_or_create("ledger")
    again = KeyRing(db, master).get_or_create("ledger")
    assert again.public_key == signer.public_key
    assert again.sign(b"m") == signer.sign(b"m")
    raw = (tmp_path / "test.db").read_bytes()
    wal = tmp_path / "test.db-wal"
    content = raw + (wal.read_bytes() if wal.exists() else b"")
    assert signer.seed() not in content
    with pytest.raises(KeyDecryptionError):
        KeyRing(db, MasterKey(os.urandom(32))).get_or_create("ledger")
