"""``ibx policy`` end to end on a real data dir, acting as the identities of --token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange.cli import app
from policies import (
    BASELINE_PACK,
    FourEyesError,
    OfficerRequiredError,
    PolicyInputError,
    PolicyTestsFailedError,
)
from tests.conftest import initialised

runner = CliRunner()


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def invoke(self, *args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["--data-dir", str(self.data_dir), *args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    def run(self, *args: str) -> str:
        code, output = self.invoke(*args)
        assert code == 0, output
        return output

    def process(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real ``ibx`` in its own process, as a user runs it."""
        env = {k: v for k, v in os.environ.items() if k not in ("IBX_TOKEN", "IBX_OPA_URL")}
        return subprocess.run(
            [sys.executable, "-m", "exchange.cli", "--data-dir", str(self.data_dir), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def token(self, role: str, name: str, *extra: str) -> str:
        out = self.run("identity", "create", "--role", role, "--name", name, *extra)
        return out.strip().splitlines()[-1]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv("IBX_TOKEN", raising=False)
    monkeypatch.delenv("IBX_OPA_URL", raising=False)
    return Cli(initialised(tmp_path / "data"))


CONTEXT = json.dumps(
    {
        "domain": "lithium-battery",
        "classification": "core",
        "purpose": "risk_warning",
        "engine": "mpc",
        "operation": "mean",
        "cohort": 7,
    }
)


def test_officers_change_policy_and_decisions_follow(cli: Cli, tmp_path: Path) -> None:
    a = cli.token("security_officer", "officer-a")
    b = cli.token("security_officer", "officer-b")
    ops = cli.token("sysadmin", "ops")
    cli.token("subbrain", "li-brain", "--industry", "lithium-battery")

    with pytest.raises(OfficerRequiredError):
        cli.run("policy", "propose", str(BASELINE_PACK), "--token", ops)
    out = cli.run("policy", "propose", str(BASELINE_PACK), "--token", a)
    version = out.split()[1]
    assert len(version) == 64 and "by officer-a" in out
    short = version[:12]

    with pytest.raises(PolicyTestsFailedError):
        cli.run("policy", "approve", short, "--token", b)
    tested = cli.run("policy", "test", short, "--token", b)
    assert "PASS  data.ibx.authz_test.test_core_needs_he_or_mpc" in tested
    assert tested.strip().endswith("passed") and " 0/" not in tested
    with pytest.raises(FourEyesError):
        cli.run("policy", "approve", short, "--token", a)
    cli.run("policy", "approve", short, "--token", b)
    with pytest.raises(FourEyesError):
        cli.run("policy", "activate", short, "--token", a)
    assert "activated " + version in cli.run("policy", "activate", short, "--token", b)
    listing = cli.run("policy", "list", "--token", ops)
    assert listing.startswith(version[:16] + "\tactive\tofficer-a\tpassed\tofficer-b\tofficer-b")

    args = ["policy", "decide", "--subject", "li-brain", "--action", "compute"]
    allowed = cli.run(*args, "--resource", "dataset:cell", "--context", CONTEXT, "--token", ops)
    assert allowed.startswith("ALLOW  casbin: allowed by 'p, subbrain, lithium-battery")
    code, denied = cli.invoke(
        "policy", "decide", "--subject", "li-brain", "--action", "raw_export",
        "--resource", "dataset:cell", "--context", CONTEXT, "--token", ops, "--json",
    )  # fmt: skip
    assert code == 3
    body = json.loads(denied)
    assert body["effect"] == "deny" and body["version"] == version
    assert "rego: raw export of core data is never allowed" in body["reasons"]

    requests = tmp_path / "requests.json"
    sample = json.loads((BASELINE_PACK / "requests.json").read_text())[:2]
    requests.write_text(json.dumps(sample))
    diff = cli.run("policy", "diff", short, "--requests", str(requests), "--token", a)
    assert diff.strip().endswith("0 of 2 decisions differ from the active version")

    # a CLI error is one line and a non-zero exit
    done = cli.process("policy", "approve", short, "--token", a)
    assert done.returncode == 3
    err = done.stderr.strip()
    assert err.count("\n") == 0
    assert err.startswith("ibx: four-eyes rule violated: officer-a proposed version")


def test_bad_directory_and_bad_context(cli: Cli, tmp_path: Path) -> None:
    a = cli.token("security_officer", "officer-a")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("model.conf", "policy.csv", "data.json", "authz.rego"):
        (bad / name).write_text((BASELINE_PACK / name).read_text())
    (bad / "policy.csv").write_text("p, root, lithium-battery, dataset, compute, allow\n")
    done = cli.process("policy", "propose", str(bad), "--token", a)
    assert done.returncode == 2
    err = done.stderr.strip()
    assert err == (
        "ibx: invalid Casbin policy line: policy.csv:1: unknown role 'root' in "
        "'p, root, lithium-battery, dataset, compute, allow'"
    )
    with pytest.raises(PolicyInputError, match="--context: expected a JSON object"):
        cli.invoke(
            "policy", "decide", "--subject", "officer-a", "--action", "compute",
            "--resource", "dataset:x", "--context", "[1]", "--token", a,
        )  # fmt: skip
