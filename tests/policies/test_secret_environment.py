"""The second wall (issue 9 §3): no process that evaluates officer Rego holds a secret in its
environment, so even a built-in that slipped past the allowlist finds nothing to read.

``opa.runtime()`` is the built-in that reads the environment; propose refuses it, so
these tests compile a leaking version directly, as if it had slipped through, and run
it on the real evaluation paths: the sandbox child (dry runs, tests) and the server
process after ``create_app``; and they check that the CLI and the server take the
master key out of ``os.environ`` at start-up while the key still works.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.db import Database
from core.keyring import KeyRing
from core.keys import MasterKey
from exchange.app import create_app
from exchange.cli import app as cli_app
from exchange.settings import take_secret_environment
from policies import CompiledPolicy, PolicySource, run_sandbox
from tests.conftest import initialised
from tests.policies.conftest import CORE_COMPUTE, make_request

LEAK = 'deny contains sprintf("environment: %v", [opa.runtime().env])\n'


@pytest.fixture
def key_hex() -> str:
    return secrets.token_hex(32)


def _leaky(pack_copy: Path) -> PolicySource:
    authz = pack_copy / "authz.rego"
    authz.write_text(authz.read_text() + "\n" + LEAK)
    return PolicySource.from_dir(pack_copy)  # static checks only: as if it slipped through


def test_the_sandbox_child_runs_with_a_scrubbed_environment(
    pack_copy: Path, key_hex: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IBX_MASTER_KEY", key_hex)
    monkeypatch.setenv("IBX_DATABASE_URL", "postgresql://ibx:hunter2-db-password@db/ibx")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-not-for-rego")
    run = run_sandbox(
        "evaluate", _leaky(pack_copy), requests=[make_request("subbrain", "compute", CORE_COMPUTE)]
    )
    assert run.error is None
    reasons = " ".join(
        str(r) for s in run.steps if "decision" in s for r in s["decision"]["reasons"]
    )
    assert "environment: {" in reasons  # the leak ran and printed what it saw
    assert "PATH" in reasons
    for secret in (key_hex, "hunter2-db-password", "aws-secret-not-for-rego", "IBX_"):
        assert secret not in reasons


def test_server_start_takes_the_master_key_out_of_the_environment(
    tmp_path: Path, pack_copy: Path, key_hex: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IBX_MASTER_KEY", key_hex)
    monkeypatch.setenv("IBX_DATA_DIR", str(tmp_path / "data"))
    initialised(tmp_path / "data", master_key=key_hex)
    app = create_app()
    runtime = app.state.runtime
    try:
        assert "IBX_MASTER_KEY" not in os.environ
        # the key still works: it is the one in use (no key file was generated instead),
        # and what it encrypted opens with it
        assert not (tmp_path / "data" / "master.key").exists()
        signer = runtime.keyring.get_or_create("ledger")
        again = KeyRing(
            Database(runtime.settings.resolved_database_url()), MasterKey.from_text(key_hex)
        )
        opened = again.get("ledger")
        assert opened is not None and opened.seed() == signer.seed()
        # a leaking policy evaluated in the server process finds no key
        decision = CompiledPolicy.compile(_leaky(pack_copy)).decide(
            make_request("subbrain", "compute", CORE_COMPUTE)
        )
        text = " ".join(decision.reasons)
        assert "environment: {" in text
        assert key_hex not in text and "IBX_MASTER_KEY" not in text
    finally:
        runtime.close()


def test_the_cli_takes_the_master_key_out_of_the_environment(
    tmp_path: Path, key_hex: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = initialised(tmp_path / "data", master_key=key_hex)
    monkeypatch.setenv("IBX_MASTER_KEY", key_hex)
    result = CliRunner().invoke(
        cli_app,
        [
            *("--data-dir", str(data), "identity", "create", "--role", "enterprise"),
            *("--name", "ent-a", "--industry", "lithium-battery"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "IBX_MASTER_KEY" not in os.environ
    assert not (data / "master.key").exists()  # the environment's key was used
    ring = KeyRing(Database(f"sqlite:///{data / 'ibx.db'}"), MasterKey.from_text(key_hex))
    assert ring.get("ledger") is not None  # sealed under that key, opens with it


def test_take_secret_environment_only_takes_secrets() -> None:
    env = {"IBX_MASTER_KEY": "k", "IBX_DATABASE_URL": "u", "IBX_DATA_DIR": "/d", "PATH": "/bin"}
    assert take_secret_environment(env) == {"master_key": "k", "database_url": "u"}
    assert env == {"IBX_DATA_DIR": "/d", "PATH": "/bin"}
