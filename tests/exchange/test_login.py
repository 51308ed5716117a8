"""``ibx login``: a profile with a pinned CA and the token, never the token in argv."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import register
from tests.in_process import ibx
from tests.server import running_exchange
from tests.zygote import ibx_argv


def _ibx(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ibx_argv(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A running exchange: its URL, its CA's fingerprint and its data dir."""
    data = initialised(tmp_path_factory.mktemp("login") / "data")
    assert ibx("--data-dir", str(data), "pki", "init").returncode == 0
    fingerprint = ibx("--data-dir", str(data), "pki", "fingerprint").stdout.strip()
    with running_exchange(data) as base:
        yield base, fingerprint, data


@pytest.fixture(scope="module")
def exchange(served: tuple[str, str, Path]) -> tuple[str, str]:
    base, fingerprint, _ = served
    return base, fingerprint


def _registered(data: Path, name: str, role: Role) -> str:
    """Register ``name`` in the deployment at ``data`` (an administrator with an officer's
    signed duty); its token."""
    runtime = Runtime(Settings(data_dir=data))
    try:
        industry = "lithium-battery" if role is Role.ENTERPRISE else None
        return register(runtime, name, role, industry).token
    finally:
        runtime.close()


def _token_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_text("ibx-test-token-not-real\n")
    path.chmod(mode)
    return path


def test_login_pins_the_ca_by_fingerprint_and_stores_a_private_profile(
    exchange: tuple[str, str], tmp_path: Path
) -> None:
    base, fingerprint = exchange
    assert len(fingerprint) == 64
    env = {"IBX_CONFIG_DIR": str(tmp_path / "config")}
    done = _ibx(
        "login",
        "--exchange",
        base,
        "--ca-fingerprint",
        fingerprint.upper(),
        "--token-file",
        str(_token_file(tmp_path)),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    profile = tmp_path / "config" / "profiles" / "default.json"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    assert stat.S_IMODE(profile.parent.stat().st_mode) == 0o700
    stored = json.loads(profile.read_text())
    assert stored["exchange"] == base and stored["ca_fingerprint"] == fingerprint
    assert stored["token"] == "ibx-test-token-not-real"
    assert "BEGIN CERTIFICATE" in stored["ca_bundle_pem"]
    assert "ibx-test-token" not in done.stdout + done.stderr


def test_login_reads_the_token_from_stdin(exchange: tuple[str, str], tmp_path: Path) -> None:
    base, fingerprint = exchange
    env = {"IBX_CONFIG_DIR": str(tmp_path / "c")}
    done = _ibx(
        "login",
        "--exchange",
        base,
        "--ca-fingerprint",
        fingerprint,
        "--profile",
        "ops",
        env=env,
        stdin="from-stdin\n",
    )
    assert done.returncode == 0, done.stderr
    stored = json.loads((tmp_path / "c" / "profiles" / "ops.json").read_text())
    assert stored["token"] == "from-stdin"


def test_a_wrong_fingerprint_is_refused_and_nothing_is_stored(
    exchange: tuple[str, str], tmp_path: Path
) -> None:
    base, fingerprint = exchange
    wrong = ("0" if fingerprint[0] != "0" else "1") + fingerprint[1:]
    env = {"IBX_CONFIG_DIR": str(tmp_path / "config")}
    done = _ibx(
        "login",
        "--exchange",
        base,
        "--ca-fingerprint",
        wrong,
        "--token-file",
        str(_token_file(tmp_path)),
        env=env,
    )
    assert done.returncode == 1
    assert "refusing to trust it" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "config").exists()


def test_a_token_file_others_can_read_is_refused(exchange: tuple[str, str], tmp_path: Path) -> None:
    base, fingerprint = exchange
    env = {"IBX_CONFIG_DIR": str(tmp_path / "config")}
    done = _ibx(
        "login",
        "--exchange",
        base,
        "--ca-fingerprint",
        fingerprint,
        "--token-file",
        str(_token_file(tmp_path, 0o644)),
        env=env,
    )
    assert done.returncode == 1
    assert "chmod 600" in done.stderr


def test_token_file_and_profile_act_as_the_identity_without_argv(
    served: tuple[str, str, Path], tmp_path: Path
) -> None:
    base, fingerprint, served_data = served
    data = initialised(tmp_path / "data")
    token = _registered(data, "aud", Role.AUDITOR)
    token_file = tmp_path / "aud.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    env = {"IBX_CONFIG_DIR": str(tmp_path / "config")}

    by_file = _ibx("--data-dir", str(data), "--token-file", str(token_file), "consent", "list",
                   env=env)  # fmt: skip
    assert by_file.returncode == 0, by_file.stderr
    by_env = _ibx("--data-dir", str(data), "consent", "list",
                  env={**env, "IBX_TOKEN_FILE": str(token_file)})  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr

    token_file.chmod(0o640)  # the refusals and the login: ibx's entry point in this process
    shared = ibx("--data-dir", str(data), "--token-file", str(token_file), "consent", "list",
                 env=env)  # fmt: skip
    assert shared.returncode == 1 and "chmod 600" in shared.stderr
    token_file.chmod(0o600)

    # A profile is an exchange and a token: its commands act at that exchange, as an
    # identity registered there (an enterprise: it needs no client certificate).
    remote_token = tmp_path / "ent.token"
    remote_token.write_text(_registered(served_data, "ent-login", Role.ENTERPRISE) + "\n")
    remote_token.chmod(0o600)
    login = ibx("login", "--exchange", base, "--ca-fingerprint", fingerprint, "--profile",
                "ent", "--token-file", str(remote_token), env=env)  # fmt: skip
    assert login.returncode == 0, login.stderr
    by_profile = _ibx("--data-dir", str(data), "--profile", "ent", "consent", "list", env=env)
    assert by_profile.returncode == 0, by_profile.stderr
    as_aud = ibx("--data-dir", str(data), "--profile", "ent", "--token-file", str(token_file),
                 "consent", "list", env=env)  # fmt: skip
    assert as_aud.returncode == 4, as_aud.stderr  # aud is not an identity of that exchange
    missing = ibx("--data-dir", str(data), "--profile", "nobody", "consent", "list", env=env)
    assert missing.returncode == 1 and "ibx login" in missing.stderr
    nothing = ibx("--data-dir", str(data), "consent", "list", env=env)
    assert nothing.returncode == 4 and "--token-file" in nothing.stderr
