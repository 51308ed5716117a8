"""``ibx consent`` and ``ibx dataset`` end to end on a real data dir."""

from __future__ import annotations

import contextlib
import json
import stat
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consent import (
    ConsentKeyError,
    ConsentRevokedError,
    ForeignKeyError,
    RequestTimeSkewError,
)
from core.clock import format_rfc3339, utcnow
from exchange.cli import app, main
from exchange.error_table import ForbiddenError, RemoteRefusalError

runner = CliRunner()


@contextlib.contextmanager
def refused(error: type[Exception], status: int) -> Iterator[None]:
    """The command is refused by the exchange with ``error`` (its code) and ``status``."""
    with pytest.raises(RemoteRefusalError) as info:
        yield
    assert (info.value.status, info.value.code) == (
        status, f"{error.__module__}.{error.__qualname__}",
    )  # fmt: skip


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def run(self, *args: str) -> str:
        result = runner.invoke(app, ["--data-dir", str(self.data_dir), *args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return result.output

    def token(self, *args: str) -> str:
        return self.run("identity", "create", *args).strip().splitlines()[-1]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("IBX_LEDGER_ORIGIN", "cli.ibx.localhost/ledger")
    monkeypatch.delenv("IBX_TOKEN", raising=False)
    cli = Cli(tmp_path / "data")
    cli.run("init")
    return cli


def test_consent_lifecycle(cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "ent-a.key"
    public = cli.run("consent", "keygen", "--out", str(key)).strip().splitlines()[-1]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "seed" in key.read_text()
    with pytest.raises(ConsentKeyError):
        cli.run("consent", "keygen", "--out", str(key))
    ent = cli.token("--role", "enterprise", "--name", "ent-a", "--industry", "lithium-battery")
    assert len(public) == 44
    sb = cli.token("--role", "subbrain", "--name", "sb-1", "--industry", "lithium-battery")
    aud_key = tmp_path / "aud.key"
    aud_public = cli.run("identity", "keygen", "--out", str(aud_key)).strip().splitlines()[-1]
    auditor = cli.token(
        "--role", "auditor", "--name", "aud", "--public-key", aud_public,
        "--key", str(cli.data_dir / "bootstrap" / "officer-1.key"),
    )  # fmt: skip
    cli.run("consent", "register-key", "--key", str(key), "--token", ent)
    assert "ent-a.energy" in cli.run(
        "dataset", "register", "--id", "ent-a.energy", "--field", "energy_kwh",
        "--field", "output_units", "--classification", "important", "--token", ent,
    )  # fmt: skip
    assert "ent-a.energy\tent-a\timportant" in cli.run("dataset", "list", "--token", sb)
    with refused(ForbiddenError, 403):  # the pack lets enterprises register, not sub-brains
        cli.run("dataset", "register", "--id", "x", "--field", "f", "--token", sb)

    grant = [
        "consent", "grant", "--key", str(key), "--dataset", "ent-a.energy:energy_kwh",
        "--requester-group", "subbrain:lithium-battery", "--purpose", "benchmarking",
        "--operation", "mean", "--min-cohort", "1",
    ]  # fmt: skip
    receipt_file = tmp_path / "receipt.json"
    out = cli.run(*grant, "--out", str(receipt_file), "--token", ent)
    consent_id = out.split()[1]
    assert json.loads(receipt_file.read_text())["receipt"]["consent_id"] == consent_id
    # Only an enterprise grants (the pack decides).
    with refused(ForbiddenError, 403):
        cli.run(*grant, "--token", sb)

    listing = cli.run("consent", "list", "--token", ent)
    assert consent_id in listing and "active" in listing
    with refused(ForbiddenError, 403):  # sub-brains read no consents
        cli.run("consent", "list", "--enterprise", "ent-a", "--token", sb)
    assert consent_id in cli.run("consent", "list", "--token", auditor)
    shown = json.loads(cli.run("consent", "show", consent_id, "--token", ent))
    assert shown["receipt"]["enterprise"] == "ent-a"

    request = json.dumps(
        {
            "purpose": "benchmarking",
            "operation": "mean",
            "engine": "he",
            "datasets": ["ent-a.energy"],
            "fields": ["energy_kwh"],
        }
    )
    assert f"covered by {consent_id}" in cli.run(
        "consent", "check", "--request", request, "--token", sb
    )
    report = json.loads(cli.run("consent", "check", "--request", request, "--json", "--token", sb))
    assert report["included"] == ["ent-a"]

    cli.run("consent", "revoke", consent_id, "--key", str(key), "--token", ent)
    after = cli.run("consent", "check", "--request", request, "--token", sb)
    assert "refused (revoked)" in after
    with refused(ConsentRevokedError, 422):
        cli.run("consent", "revoke", consent_id, "--key", str(key), "--token", ent)
    usage = cli.run("consent", "usage", "--enterprise", "ent-a", "--token", ent)
    assert consent_id in usage and "revoked" in usage

    # A new key file for ent-a that is not registered: the exchange refuses what it signs.
    stray = tmp_path / "stray.key"
    cli.run("consent", "keygen", "--out", str(stray))
    with refused(ForeignKeyError, 422):
        cli.run(*grant, "--key", str(stray), "--token", ent)

    # The console entry point: one line on stderr and a non-zero exit.
    argv = ["ibx", "--data-dir", str(cli.data_dir), "consent", "revoke", consent_id,
            "--key", str(key), "--token", ent]  # fmt: skip
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            main()
    assert exit_info.value.code == 3  # denied: the consent is revoked
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ibx: consent revoked:")


def test_check_judges_at_the_exchange_clock_not_the_stated_time(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A consent valid only from tomorrow cannot be reached by stating tomorrow's time."""
    key = tmp_path / "ent-a.key"
    cli.run("consent", "keygen", "--out", str(key))
    ent = cli.token("--role", "enterprise", "--name", "ent-a", "--industry", "lithium-battery")
    sb = cli.token("--role", "subbrain", "--name", "sb-1", "--industry", "lithium-battery")
    cli.run("consent", "register-key", "--key", str(key), "--token", ent)
    cli.run("dataset", "register", "--id", "ent-a.energy", "--field", "energy_kwh", "--token", ent)
    now = utcnow()
    cli.run(
        "consent", "grant", "--key", str(key), "--dataset", "ent-a.energy:energy_kwh",
        "--requester-group", "subbrain:lithium-battery", "--purpose", "benchmarking",
        "--operation", "mean", "--min-cohort", "1",
        "--valid-from", format_rfc3339(now + timedelta(days=1)),
        "--valid-until", format_rfc3339(now + timedelta(days=10)),
        "--token", ent,
    )  # fmt: skip
    ask = {
        "purpose": "benchmarking",
        "operation": "mean",
        "engine": "he",
        "datasets": ["ent-a.energy"],
        "fields": ["energy_kwh"],
    }
    postdated = json.dumps({**ask, "time": format_rfc3339(now + timedelta(days=2))})
    with refused(RequestTimeSkewError, 400):
        cli.run("consent", "check", "--request", postdated, "--token", sb)
    argv = ["ibx", "--data-dir", str(cli.data_dir), "consent", "check",
            "--request", postdated, "--token", sb]  # fmt: skip
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            main()
    assert exit_info.value.code == 2  # invalid input: a stated time off the clock
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exchange's clock" in err[0]
    # Within the skew the stated time is accepted, and the consent is judged not yet valid.
    honest = json.dumps({**ask, "time": format_rfc3339(utcnow())})
    assert "refused (not_yet_valid)" in cli.run(
        "consent", "check", "--request", honest, "--token", sb
    )
    assert "refused (not_yet_valid)" in cli.run(
        "consent", "check", "--request", json.dumps(ask), "--token", sb
    )
