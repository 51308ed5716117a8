"""CLI output: ``--json`` documents with stable fields, tables on a terminal, plain lines in pipes.

Every command runs against a real initialised data dir (SQLite, ledger, CA);
the terminal form is drawn by a real Rich console told it is a terminal.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from typer.testing import CliRunner

from core.clock import utcnow
from edge_tls import build_csr
from exchange.cli import app
from exchange.cli._output import Table, emit_table
from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import BASELINE_PACK
from tests.conftest import initialised
from tests.identities import admin_signer, write_key_file
from tests.identities import bootstrap as bootstrap_officers
from tests.in_process import Done, ibx
from tests.zygote import ibx_argv

runner = CliRunner()
ORIGIN = "output.ibx.localhost/ledger"


def _terminal(width: int = 200) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


def _pipe() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=200)


# --- the renderer -------------------------------------------------------------------------


def test_a_terminal_gets_a_table_with_headers() -> None:
    console = _terminal()
    emit_table(
        Table.build(("name", "role"), [("ent-a", "enterprise"), ("ops", "security_officer")]),
        console=console,
    )
    text = console.file.getvalue()  # type: ignore[attr-defined]
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].split() == ["name", "role"]
    assert "\t" not in text
    assert any(line.split() == ["ent-a", "enterprise"] for line in lines)
    assert any(line.split() == ["ops", "security_officer"] for line in lines)


def test_a_pipe_gets_the_plain_lines_without_headers() -> None:
    console = _pipe()
    table = Table.build(("name", "role"), [("ent-a", "enterprise"), ("b", "auditor")])
    emit_table(table, console=console)
    assert console.file.getvalue() == "ent-a\tenterprise\nb\tauditor\n"  # type: ignore[attr-defined]


def test_a_pipe_gets_a_commands_own_line_form() -> None:
    console = _pipe()
    table = Table.build(("id", "uses"), [("c1", "0/-")], plain=["c1 (uses 0/-)"])
    emit_table(table, console=console)
    assert console.file.getvalue() == "c1 (uses 0/-)\n"  # type: ignore[attr-defined]


def test_cells_are_data_never_rich_markup() -> None:
    console = _terminal()
    emit_table(Table.build(("note",), [("[bold]ent[/bold]",)]), console=console)
    assert "[bold]ent[/bold]" in console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "rows", "plain"),
    [((), [], None), (("a", "b"), [("1",)], None), (("a",), [("1",), ("2",)], ["only one"])],
    ids=["no-headers", "short-row", "plain-mismatch"],
)
def test_a_malformed_table_is_refused(
    headers: tuple[str, ...], rows: list[tuple[str, ...]], plain: list[str] | None
) -> None:
    with pytest.raises(ValueError, match=r"header|cells|plain"):
        Table.build(headers, rows, plain)


# --- a deployment to list ----------------------------------------------------------------


@dataclass
class World:
    data_dir: Path
    enterprise: str
    officer: str
    auditor: str
    key_file: Path
    public_key: str
    consent_id: str
    receipt_file: Path

    def invoke(self, *args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["--data-dir", str(self.data_dir), *args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout

    def run(self, *args: str) -> str:
        code, out = self.invoke(*args)
        assert code == 0, out
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json"))

    def entry(self, *args: str) -> Done:
        """``ibx`` through its console entry point in this process (its real exit code)."""
        return ibx("--data-dir", str(self.data_dir), *args, env={"IBX_LEDGER_ORIGIN": ORIGIN})

    def process(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "IBX_TOKEN"}
        env["IBX_LEDGER_ORIGIN"] = ORIGIN
        return subprocess.run(
            [*ibx_argv(), "--data-dir", str(self.data_dir), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _token(data_dir: Path, *args: str) -> str:
    result = runner.invoke(app, ["--data-dir", str(data_dir), "identity", "create", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    mp = pytest.MonkeyPatch()
    mp.setenv("IBX_LEDGER_ORIGIN", ORIGIN)
    mp.delenv("IBX_TOKEN", raising=False)
    root = tmp_path_factory.mktemp("output")
    data_dir = initialised(root / "data", ledger_origin=ORIGIN)
    opened = Runtime(Settings(data_dir=data_dir, ledger_origin=ORIGIN))
    officer = bootstrap_officers(opened, "ops-a", "ops-b")[0].token
    officer_key = write_key_file(root, "ops-a")
    opened.close()
    ent = _token(
        data_dir, "--role", "enterprise", "--name", "ent-a", "--industry", "lithium-battery"
    )
    auditor = _token(
        data_dir, "--role", "auditor", "--name", "aud",
        "--public-key", admin_signer("aud").public_key.to_base64(),
        "--key", str(officer_key),
    )  # fmt: skip
    partial = World(data_dir, ent, officer, auditor, root / "ent.key", "", "", root / "r.json")
    public = partial.run("consent", "keygen", "--out", str(partial.key_file)).split()[-1]
    partial.run("consent", "register-key", "--key", str(partial.key_file), "--token", ent)
    partial.run(
        "dataset", "register", "--id", "ent-a.energy", "--field", "energy_kwh",
        "--classification", "important", "--token", ent,
    )  # fmt: skip
    granted = partial.run(
        "consent", "grant", "--key", str(partial.key_file), "--dataset", "ent-a.energy:energy_kwh",
        "--requester-group", "subbrain:lithium-battery", "--purpose", "benchmarking",
        "--operation", "mean", "--min-cohort", "1", "--out", str(partial.receipt_file),
        "--token", ent,
    )  # fmt: skip
    partial.run("pki", "init")
    bootstrap = partial.run(
        "edge", "token", "create", "--enterprise", "ent-a", "--device", "meter-1", "--token", ent
    ).split()[-1]
    device = Runtime(Settings(data_dir=data_dir, ledger_origin=ORIGIN))
    try:  # the EST enrolment itself, as the edge listener calls it
        csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "meter-1")
        device.edge_pki.enroll("meter-1", bootstrap, csr, now=utcnow())
    finally:
        device.close()
    partial.run(
        "policy", "propose", str(BASELINE_PACK), "--token", officer, "--key", str(officer_key)
    )
    mp.undo()
    return World(
        data_dir, ent, officer, auditor, partial.key_file, public, granted.split()[1],
        partial.receipt_file,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBX_LEDGER_ORIGIN", ORIGIN)
    monkeypatch.delenv("IBX_TOKEN", raising=False)


# --- pipes: what scripts read is unchanged ------------------------------------------------


def test_identity_list_in_a_pipe_is_the_tab_separated_lines(world: World) -> None:
    out = world.run("identity", "list")
    key = json.loads(world.run("identity", "list", "--json"))
    ent = next(i for i in key if i["name"] == "ent-a")
    expires = ent["token_expires_at"][:10]
    assert (
        f"ent-a\tenterprise\tlithium-battery\tactive\t{ent['key_fingerprint'][:16]}\t{expires}\n"
        in out
    )
    aud_key = admin_signer("aud").public_key.fingerprint()[:16]
    assert f"aud\tauditor\t-\tactive\t{aud_key}\t{expires}\n" in out
    assert out.count("\n") == 4  # ent-a, aud and the bootstrap officers ops-a, ops-b
    assert "name" not in out  # no header line for scripts to skip


def test_listings_in_a_pipe_keep_their_line_forms(world: World) -> None:
    assert world.run("dataset", "list", "--token", world.auditor) == (
        "ent-a.energy\tent-a\timportant\tenergy_kwh\n"
    )
    line = world.run("consent", "list", "--token", world.enterprise)
    assert line.startswith(
        f"{world.consent_id}\tent-a\tevery subbrain of lithium-battery\tent-a.energy:energy_kwh\t"
    )
    assert "\tbenchmarking\tmean\the,mpc\tcohort>=1\tuntil " in line
    assert line.endswith("\tuses 0/-\tactive\n")
    versions = world.run("policy", "list", "--token", world.auditor).splitlines()
    assert len(versions) == 1
    assert versions[0].split("\t")[1:5] == ["proposed", "ops-a", "untested", "-"]
    certs = world.run("pki", "list").splitlines()
    [cert] = certs
    assert cert.split("\t")[1:3] == ["device", "valid"]
    assert cert.endswith("\tspiffe://ibx.localhost/enterprise/ent-a/device/meter-1")


# --- --json: one document, stable fields ----------------------------------------------------


def test_identity_list_json(world: World) -> None:
    items = world.json("identity", "list")
    assert isinstance(items, list)
    assert [i["name"] for i in items] == ["aud", "ent-a", "ops-a", "ops-b"]
    ent = next(i for i in items if i["name"] == "ent-a")
    assert set(ent) == {
        "name", "role", "industry", "status", "public_key", "key_fingerprint",
        "created_at", "token_expires_at",
    }  # fmt: skip
    assert (ent["role"], ent["industry"], ent["status"]) == (
        "enterprise",
        "lithium-battery",
        "active",
    )
    assert ent["public_key"] == world.public_key
    assert all("token" not in i for i in items)  # a listing never carries a secret


def test_identity_create_json_carries_the_token_once(world: World, tmp_path: Path) -> None:
    data_dir = initialised(tmp_path / "d", ledger_origin=ORIGIN)
    out = runner.invoke(
        app, ["--data-dir", str(data_dir), "identity", "create", "--role", "subbrain",
              "--name", "aud-2", "--json"],
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["name"] == "aud-2"
    assert len(doc["token"]) > 30
    who = runner.invoke(app, ["--data-dir", str(data_dir), "identity", "list"])
    assert who.stdout.startswith("aud-2\tsubbrain\t")


def test_dataset_list_json(world: World) -> None:
    [item] = world.json("dataset", "list", "--token", world.auditor)
    assert item["dataset_id"] == "ent-a.energy"
    assert (item["owner"], item["classification"], item["fields"]) == (
        "ent-a", "important", ["energy_kwh"],
    )  # fmt: skip


def test_consent_list_and_usage_json(world: World) -> None:
    [item] = world.json("consent", "list", "--token", world.enterprise)
    assert item["consent_id"] == world.consent_id
    assert (item["status"], item["use_count"], item["revoked_at"]) == ("active", 0, None)
    assert (item["receipt"]["consent_id"], item["receipt"]["enterprise"]) == (
        world.consent_id, "ent-a",
    )  # fmt: skip
    assert isinstance(item["ledger_index"], int)
    [used] = world.json("consent", "usage", "--enterprise", "ent-a", "--token", world.auditor)
    assert (used["consent_id"], used["decisions"], used["entries"]) == (world.consent_id, 0, [])


def test_consent_verify_and_show_json(world: World) -> None:
    doc = world.json("consent", "verify", str(world.receipt_file), "--public-key", world.public_key)
    assert doc == {
        "ok": True,
        "kind": "receipt",
        "consent_id": world.consent_id,
        "enterprise": "ent-a",
        "origin": ORIGIN,
        "key_pinned": True,
        "sha256": doc["sha256"],
    }
    shown = world.json("consent", "show", world.consent_id, "--token", world.enterprise)
    assert shown == json.loads(world.receipt_file.read_text())


def test_policy_list_json(world: World) -> None:
    [version] = world.json("policy", "list", "--token", world.auditor)
    assert len(version["hash"]) == 64
    assert (version["state"], version["proposed_by"], version["tests"]) == (
        "proposed", "ops-a", "untested",
    )  # fmt: skip
    assert version["approved_by"] is None
    assert version["activated_at"] is None


def test_pki_list_and_fingerprint_json(world: World) -> None:
    certs = world.json("pki", "list")
    [cert] = certs
    assert (cert["kind"], cert["status"], cert["revoked_at"]) == ("device", "valid", None)
    assert cert["subject"] == "spiffe://ibx.localhost/enterprise/ent-a/device/meter-1"
    assert len(cert["sha256"]) == 64
    assert world.run("pki", "list").startswith(cert["serial"] + "\t")
    fingerprint = world.json("pki", "fingerprint")
    assert fingerprint == {"sha256": world.run("pki", "fingerprint").strip()}
    bundle = world.json("pki", "ca-bundle")
    assert bundle["chain_pem"] == world.run("pki", "ca-bundle")
    assert bundle["root_sha256"] == fingerprint["sha256"]


def test_ledger_checkpoint_verify_vkey_json(world: World, tmp_path: Path) -> None:
    head = world.json("ledger", "checkpoint")
    assert head["origin"] == ORIGIN
    assert head["note"] == world.run("ledger", "checkpoint")
    kept = tmp_path / "kept.note"
    kept.write_text(head["note"])
    verdict = world.json("ledger", "verify", "--checkpoint", str(kept))
    assert verdict == {
        "ok": True,
        "size": head["size"],
        "root": head["root"],
        "kept_checkpoint_size": head["size"],
    }
    assert world.json("ledger", "vkey") == {"vkey": world.run("ledger", "vkey").strip()}


def test_status_json(world: World) -> None:
    code, out = world.invoke("status", "--json")
    doc = json.loads(out)
    assert doc["origin"] == ORIGIN
    checks = {c["name"]: c for c in doc["checks"]}
    assert {"database", "ledger", "policy", "edge-ca"} <= set(checks)
    assert checks["ledger"]["ok"] is True
    assert checks["policy"]["ok"] is False  # nothing active yet: the deployment is not ready
    assert (doc["ok"], code) == (False, 1)


# --- exit codes and stderr are the same with --json (a real process, then the entry point) ---


def test_a_failed_verify_with_json_exits_5_with_one_line_on_stderr(
    world: World, tmp_path: Path
) -> None:
    forged = tmp_path / "forged.note"
    forged.write_text(f"{ORIGIN}\n1\n{'A' * 43}=\n\n— nobody AAAA\n")
    done = world.process("ledger", "verify", "--checkpoint", str(forged), "--json")
    assert done.returncode == 5, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_deny_with_json_exits_3_and_prints_the_decision(world: World) -> None:
    done = world.entry(
        "policy", "decide", "--subject", "ent-a", "--action", "raw_export",
        "--resource", "dataset:ent-a.energy", "--json", "--token", world.officer,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert json.loads(done.stdout)["effect"] == "deny"
    assert done.stdout.count("\n") == 1  # one line, as before


def test_an_error_with_json_is_one_line_on_stderr_and_nothing_on_stdout(
    world: World, tmp_path: Path
) -> None:
    done = world.entry("consent", "list", "--json", "--token", "not-a-token")
    assert done.returncode == 4, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1


def test_listing_in_a_pipe_does_not_load_rich_tables(world: World) -> None:
    probe = (
        "import sys\n"
        f"sys.argv = ['ibx', '--data-dir', {str(world.data_dir)!r}, 'identity', 'list']\n"
        "from exchange.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TABLE', 'rich.table' in sys.modules)\n"
    )
    env = {**os.environ, "IBX_LEDGER_ORIGIN": ORIGIN}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.stdout.splitlines()[-1] == "TABLE False", done.stderr


def test_every_printing_command_takes_json() -> None:
    """The one shared option is on every command that prints data."""
    printing = [
        ("identity", "list"), ("identity", "create"), ("dataset", "list"), ("pki", "list"),
        ("pki", "fingerprint"), ("pki", "ca-bundle"), ("consent", "register-key"),
        ("consent", "list"), ("consent", "show"), ("consent", "verify"),
        ("consent", "check"), ("consent", "usage"), ("policy", "list"), ("policy", "test"),
        ("policy", "diff"), ("policy", "decide"), ("ledger", "checkpoint"), ("ledger", "verify"),
        ("ledger", "append"), ("status",), ("edge", "readings", "pull"), ("backup",),
        ("identity", "revoke"), ("pki", "init"), ("pki", "revoke"), ("consent", "keygen"),
        ("consent", "grant"), ("consent", "revoke"), ("dataset", "register"),
        ("policy", "propose"), ("policy", "approve"), ("policy", "activate"),
        ("ledger", "vkey"), ("edge", "token", "create"), ("edge", "enroll"),
        ("edge", "renew"), ("edge", "upload"), ("backup", "master-key"), ("restore",),
        ("ledger", "entries"), ("ledger", "proof", "inclusion"), ("ledger", "proof", "consistency"),
    ]  # fmt: skip
    for command in printing:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "--json" in result.stdout, command
