"""``ibx policy`` end to end, acting as the identities of --token: on a real data dir
(the API in-process) and against a real ``ibx serve`` over TLS (``--exchange URL``,
administrators with their client certificates); the same output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.clock import utcnow
from exchange.access import ADMIN_ROLES as CERTIFIED
from exchange.cli import app
from exchange.deployment_ca import ensure_deployment_ca
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import BASELINE_PACK, PolicyInputError
from tests.conftest import initialised
from tests.identities import register_all, write_key_file
from tests.in_process import Done, ibx
from tests.server import ExchangeUrl, running_exchange
from tests.zygote import ibx_argv

runner = CliRunner()

FOUR_EYES = "policies.errors.FourEyesError"
TESTS_FAILED = "policies.errors.PolicyTestsFailedError"


class Cli:
    """``ibx`` as its users run it: locally on the data dir, or remotely with ``remote``."""

    def __init__(self, data_dir: Path, remote: ExchangeUrl | None = None) -> None:
        self.data_dir = data_dir
        self.remote = remote
        self.certs = data_dir.parent / "certs"
        self.tokens: dict[str, str] = {}
        self.keys: dict[str, Path] = {}

    def invoke(self, *args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["--data-dir", str(self.data_dir), *args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    def run(self, *args: str) -> str:
        code, output = self.invoke(*args)
        assert code == 0, output
        return output

    def as_(self, name: str, *args: str) -> list[str]:
        """``args`` acting as ``name``: its token, and remotely the exchange and its certificate."""
        out = [*args, "--token", self.tokens[name]]
        if self.remote is not None:
            out += self.remote.cli_args()
            cert = self.certs / f"{name}.crt"
            if cert.exists():
                out += ["--client-cert", str(cert), "--client-key", str(cert.with_suffix(".key"))]
        return out

    def process(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real ``ibx`` in its own process, as a user runs it."""
        env = {k: v for k, v in os.environ.items() if k not in ("IBX_TOKEN", "IBX_OPA_URL")}
        return subprocess.run(
            [*ibx_argv(), "--data-dir", str(self.data_dir), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def entry(self, *args: str) -> Done:
        """``ibx`` through its console entry point in this process (one-line errors, exit
        codes), without a real process's start-up."""
        return ibx("--data-dir", str(self.data_dir), *args)

    def register(self, identities: dict[str, tuple[Role, str | None]]) -> None:
        """Register ``identities`` as the exchange requires (the first two officers as the
        bootstrap officers, the other administrators with an officer's signed duty); each
        administrator gets a client certificate, each officer a key file."""
        runtime = Runtime(Settings(data_dir=self.data_dir))
        try:
            ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
            for name, issued in register_all(runtime, identities).items():
                self.tokens[name] = issued.token
                if issued.identity.role in CERTIFIED:
                    runtime.admin_certificates.issue(name, actor="sysadmin", now=utcnow()).write(
                        self.certs
                    )
                if issued.identity.role is Role.SECURITY_OFFICER:
                    self.keys[name] = write_key_file(self.data_dir.parent, name)
        finally:
            runtime.close()

    def signed(self, name: str, *args: str) -> list[str]:
        """:meth:`as_` with ``name``'s officer key file (``--key``)."""
        return self.as_(name, *args, "--key", str(self.keys[name]))


def _refused(cli: Cli, code: str, *args: str) -> RemoteRefusalError:
    with pytest.raises(RemoteRefusalError) as caught:
        cli.run(*args)
    assert caught.value.code == code, caught.value
    return caught.value


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("IBX_TOKEN", raising=False)
    monkeypatch.delenv("IBX_OPA_URL", raising=False)
    monkeypatch.delenv("IBX_EXCHANGE", raising=False)
    return initialised(tmp_path / "data")


@pytest.fixture(params=["local", "remote"])
def cli(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[Cli]:
    if request.param == "local":
        yield Cli(data_dir)
        return
    with running_exchange(data_dir) as url:
        yield Cli(data_dir, url)


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
    cli.register(
        {
            "officer-a": (Role.SECURITY_OFFICER, None),
            "officer-b": (Role.SECURITY_OFFICER, None),
            "ops": (Role.SYSADMIN, None),
            "aud": (Role.AUDITOR, None),
            "li-brain": (Role.SUBBRAIN, "lithium-battery"),
        }
    )
    cli.keys["ops"] = write_key_file(cli.data_dir.parent, "ops")

    # the pack decides who may call: separation of duties, the rule named
    refused = _refused(
        cli, "exchange.error_table.ForbiddenError",
        *cli.signed("ops", "policy", "propose", str(BASELINE_PACK)),
    )  # fmt: skip
    assert refused.status == 403
    assert "ops (sysadmin) may not policy_propose policy:*: casbin: denied by " in str(refused)
    out = cli.run(*cli.signed("officer-a", "policy", "propose", str(BASELINE_PACK)))
    version = out.split()[1]
    assert len(version) == 64 and "by officer-a" in out
    short = version[:12]

    _refused(cli, TESTS_FAILED, *cli.signed("officer-b", "policy", "approve", short))
    tested = cli.run(*cli.signed("officer-b", "policy", "test", short))
    assert "PASS  data.ibx.authz_test.test_core_needs_he_or_mpc" in tested
    assert tested.strip().endswith("passed") and " 0/" not in tested
    _refused(cli, FOUR_EYES, *cli.signed("officer-a", "policy", "approve", short))
    cli.run(*cli.signed("officer-b", "policy", "approve", short))
    _refused(cli, FOUR_EYES, *cli.signed("officer-a", "policy", "activate", short))
    assert "activated " + version in cli.run(*cli.signed("officer-b", "policy", "activate", short))
    listing = cli.run(*cli.as_("aud", "policy", "list"))
    assert listing.startswith(version[:16] + "\tactive\tofficer-a\tpassed\tofficer-b\tofficer-b")
    _refused(cli, "exchange.error_table.ForbiddenError", *cli.as_("ops", "policy", "list"))
    shown = json.loads(cli.run(*cli.as_("aud", "policy", "show", short, "--json")))
    assert shown == json.loads(cli.run(*cli.as_("aud", "policy", "list", "--json")))[0]

    args = ["policy", "decide", "--subject", "li-brain", "--action", "compute"]
    allowed = cli.run(
        *cli.as_("officer-a", *args, "--resource", "dataset:cell", "--context", CONTEXT)
    )
    assert allowed.startswith("ALLOW  casbin: allowed by 'p, subbrain, lithium-battery")
    code, denied = cli.invoke(*cli.as_(
        "officer-a", "policy", "decide", "--subject", "li-brain", "--action", "raw_export",
        "--resource", "dataset:cell", "--context", CONTEXT, "--json",
    ))  # fmt: skip
    assert code == 3
    body = json.loads(denied)
    assert body["effect"] == "deny" and body["version"] == version
    assert "rego: raw export of core data is never allowed" in body["reasons"]

    requests = tmp_path / "requests.json"
    sample = json.loads((BASELINE_PACK / "requests.json").read_text())[:2]
    requests.write_text(json.dumps(sample))
    diff = cli.run(*cli.as_("officer-a", "policy", "diff", short, "--requests", str(requests)))
    assert diff.strip().endswith("0 of 2 decisions differ from the active version")

    # a CLI error is one line and a non-zero exit, the same locally and remotely
    done = cli.process(*cli.signed("officer-a", "policy", "approve", short))
    assert done.returncode == 3
    err = done.stderr.strip()
    assert err.count("\n") == 0
    assert err.startswith("ibx: four-eyes rule violated: officer-a proposed version")

    # a step signed with another officer's key file is refused before anything happens
    forged = _refused(
        cli, "core.duty.DutyError",
        *cli.as_("officer-b", "policy", "test", short, "--key", str(cli.keys["officer-a"])),
    )  # fmt: skip
    assert forged.status == 403
    assert "does not verify under officer-b's ledgered key" in str(forged)
    code, output = cli.invoke(*cli.as_("officer-b", "policy", "test", short))
    assert code == 2 and "--key" in output


def test_bad_directory_and_bad_context(data_dir: Path, tmp_path: Path) -> None:
    cli = Cli(data_dir)
    cli.register(
        {"officer-a": (Role.SECURITY_OFFICER, None), "officer-b": (Role.SECURITY_OFFICER, None)}
    )
    a = cli.tokens["officer-a"]
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("model.conf", "policy.csv", "data.json", "authz.rego"):
        (bad / name).write_text((BASELINE_PACK / name).read_text())
    (bad / "policy.csv").write_text("p, root, lithium-battery, dataset, compute, allow\n")
    done = cli.entry(
        "policy", "propose", str(bad), "--token", a, "--key", str(cli.keys["officer-a"])
    )
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
    unknown = cli.entry(
        "policy", "decide", "--subject", "nobody", "--action", "compute",
        "--resource", "dataset:x", "--token", a,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("ibx: invalid policy input: subject: ")
    anonymous = cli.entry("policy", "list")
    assert anonymous.returncode == 4
    assert anonymous.stderr.startswith("ibx: authentication required: a bearer token is required")
