"""The identity registry: tokens shown once, stored hashed, expiring and revocable."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from core.keys import Ed25519Signer
from exchange.identities import IdentityError, Role, Status
from exchange.runtime import Runtime
from tests.conftest import initialised
from tests.identities import register
from tests.in_process import Done, ibx


def test_token_authenticates_until_revoked(runtime: Runtime) -> None:
    issued = runtime.identities.create("acme", Role.ENTERPRISE, industry="lithium-battery")
    assert issued.token.startswith("ibx_")
    assert len(issued.token) >= 4 + 43  # 32 random bytes, base64url
    who = runtime.identities.authenticate(issued.token)
    assert who is not None
    assert (who.name, who.role, who.industry) == ("acme", Role.ENTERPRISE, "lithium-battery")
    runtime.identities.revoke("acme")
    assert runtime.identities.authenticate(issued.token) is None
    assert runtime.identities.get("acme").status is Status.REVOKED


def test_token_expires(runtime: Runtime) -> None:
    issued = register(runtime, "auditor-1", Role.AUDITOR)
    expires = issued.identity.token_expires_at
    assert runtime.identities.authenticate(issued.token, now=expires - timedelta(seconds=1))
    assert runtime.identities.authenticate(issued.token, now=expires) is None


@pytest.mark.parametrize(
    "token",
    ["", "ibx_", "ibx_" + "A" * 43, "not-a-token", "ibx_" + "x" * 500],
    ids=["empty", "prefix-only", "unknown", "no-prefix", "oversized"],
)
def test_unknown_tokens_are_refused(runtime: Runtime, token: str) -> None:
    runtime.identities.create("someone", Role.SUBBRAIN)
    assert runtime.identities.authenticate(token) is None


def test_only_the_hash_of_the_token_is_stored(runtime: Runtime, settings_path: Path) -> None:
    issued = register(runtime, "officer-3", Role.SECURITY_OFFICER)
    raw = settings_path.read_bytes()
    assert issued.token.encode() not in raw
    wal = settings_path.with_name(settings_path.name + "-wal")
    if wal.exists():
        assert issued.token.encode() not in wal.read_bytes()
    assert issued.token not in repr(issued)


@pytest.fixture
def settings_path(runtime: Runtime) -> Path:
    return runtime.data_dir / "ibx.db"


@pytest.mark.parametrize(
    ("name", "industry"),
    [
        ("", None),
        ("has space", None),
        ("-leading", None),
        ("ok", "bad industry"),
        ("x" * 129, None),
    ],
    ids=["empty", "space", "leading-dash", "bad-industry", "too-long"],
)
def test_malformed_names_are_refused(runtime: Runtime, name: str, industry: str | None) -> None:
    with pytest.raises(IdentityError):
        runtime.identities.create(name, Role.SUBBRAIN, industry=industry)


def test_duplicate_names_and_double_revocation_are_refused(runtime: Runtime) -> None:
    runtime.identities.create("dup", Role.SUBBRAIN)
    with pytest.raises(IdentityError):
        runtime.identities.create("dup", Role.SUBBRAIN)
    runtime.identities.revoke("dup")
    with pytest.raises(IdentityError):
        runtime.identities.revoke("dup")


def test_identity_changes_are_on_the_ledger_without_the_token(runtime: Runtime) -> None:
    key = Ed25519Signer.generate("acme").public_key
    issued = runtime.identities.create("acme", Role.ENTERPRISE, public_key=key)
    runtime.identities.revoke("acme")
    entries = runtime.ledger.entries(0, 100)
    kinds = [(e.type, e.payload.get("name")) for e in entries]
    assert ("identity.create", "acme") in kinds
    assert ("identity.revoke", "acme") in kinds
    for e in entries:
        assert issued.token.encode() not in e.leaf_input
    created = next(e for e in entries if e.type == "identity.create")
    assert created.payload["public_key"] == key.to_base64()


def _ibx(data: Path, *args: str) -> Done:
    """``ibx --data-dir DATA ARGS`` through its entry point in this process."""
    return ibx("--data-dir", str(data), *args)


def test_cli_prints_the_token_once_as_the_last_line(tmp_path: Path) -> None:
    data = initialised(tmp_path / "data")
    done = _ibx(data, "identity", "create", "--role", "subbrain", "--name", "lb-brain")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("ibx_")
    listing = _ibx(data, "identity", "list")
    assert "lb-brain\tsubbrain" in listing.stdout
    assert token not in listing.stdout
    con = sqlite3.connect(data / "ibx.db")
    (stored,) = con.execute("SELECT token_hash FROM exchange_identities").fetchone()
    con.close()
    assert token.encode() not in bytes(stored)
    revoked = _ibx(data, "identity", "revoke", "lb-brain")
    assert revoked.returncode == 0
    again = _ibx(data, "identity", "revoke", "lb-brain")
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "already revoked" in again.stderr


def test_cli_refuses_an_unknown_role_with_a_usage_error(tmp_path: Path) -> None:
    done = _ibx(
        initialised(tmp_path / "data"), "identity", "create", "--role", "king", "--name", "x"
    )
    assert done.returncode == 2
    assert "king" in done.stderr
