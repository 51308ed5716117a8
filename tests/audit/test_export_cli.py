"""``ibx audit export`` / ``ibx audit verify --exchange`` against a real ``ibx serve``.

A deployment with administrators, enterprises and datasets runs as a real
``ibx serve`` (HTTPS, deployment CA); a witness cosigns its checkpoint over the
API. The auditor (token and client certificate) exports the ledger over HTTPS:
the file holds exactly what ``ibx ledger export`` writes from the data dir
(entries, checkpoints with the cosignature, keys, rows), and verifies, as does
``ibx audit verify --exchange`` directly. An enterprise, which reads only its
own entries, cannot export the log.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit import LedgerExport
from core.clock import utcnow
from exchange.deployment_ca import ensure_deployment_ca
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import SignedNote, cosign, with_cosignatures
from tests.audit.test_verify_log import LB, Done, ibx, register_dataset
from tests.conftest import initialised
from tests.identities import admin_signer, register_all
from tests.server import ExchangeUrl, running_exchange


@dataclass(frozen=True)
class World:
    data: Path
    files: Path
    url: ExchangeUrl

    def auditor(self, *args: str) -> Done:
        """``ibx audit ARGS`` as the auditor over HTTPS (token and client certificate)."""
        return ibx(
            "--token-file",
            str(self.files / "aud.token"),
            "audit",
            *args,
            *self.url.cli_args(),
            "--client-cert",
            str(self.files / "aud.crt"),
            "--client-key",
            str(self.files / "aud.key"),
        )


def _secret(path: Path, text: str) -> None:
    path.write_text(text + "\n")
    path.chmod(0o600)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("audit-export")
    data = initialised(root / "data")
    files = root / "files"
    files.mkdir()
    runtime = Runtime(Settings(data_dir=data))
    try:
        made = register_all(
            runtime,
            {
                "aud": (Role.AUDITOR, None),
                "wit": (Role.WITNESS, None),
                "cathode-co": (Role.ENTERPRISE, LB),
            },
        )
        for name in ("aud", "wit", "cathode-co"):
            _secret(files / f"{name}.token", made[name].token)
        register_dataset(runtime, "cathode-co.energy", "cathode-co")
        ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
        runtime.admin_certificates.issue("aud", actor="sysadmin", now=utcnow()).write(files)
        (files / "ledger.vkey").write_text(runtime.ledger.vkey() + "\n")
    finally:
        runtime.close()
    with running_exchange(data) as url:
        with url.client(made["wit"].token) as wit:
            note = SignedNote.from_text(wit.get("/v1/ledger/checkpoint").text)
            line = cosign(note.text, "wit", admin_signer("wit"), int(time.time()))
            posted = wit.post(
                "/v1/ledger/cosignatures",
                content=with_cosignatures(note, [line]).to_text(),
                headers={"Content-Type": "text/plain"},
            )
            assert posted.status_code == 201, posted.text
        yield World(data, files, url)


def test_the_auditors_export_is_the_operators(world: World, tmp_path: Path) -> None:
    remote = tmp_path / "remote.jsonl"
    done = world.auditor("export", "--out", str(remote))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {remote}: ")
    local = tmp_path / "local.jsonl"
    here = ibx("--data-dir", str(world.data), "ledger", "export", "--out", str(local))
    assert here.returncode == 0, here.stderr
    fetched, stored = LedgerExport.read(remote), LedgerExport.read(local)
    assert fetched.entries == stored.entries  # reads append nothing: the same log
    assert len(fetched.entries) == fetched.header.tree_size
    assert fetched.checkpoints == stored.checkpoints
    assert "\n\u2014 wit " in fetched.checkpoints[0]  # the cosigned one, with its line
    same_time = dataclasses.replace(fetched.header, exported_at=stored.header.exported_at)
    assert same_time == stored.header
    assert len(fetched.header.witness_vkeys) == 1
    assert fetched.state == stored.state
    assert fetched.state is not None
    assert remote.stat().st_mode & 0o777 == 0o644


def test_the_auditor_verifies_over_https(world: World) -> None:
    vkey = str(world.files / "ledger.vkey")
    done = world.auditor("verify", "--ledger-vkey", vkey)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("ok: ")
    assert any(
        line.startswith("witness wit+") and line.endswith("cosigned 1 checkpoint(s)")
        for line in done.stdout.splitlines()
    ), done.stdout


def test_an_exported_file_verifies_offline(world: World, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    assert world.auditor("export", "--out", str(out)).returncode == 0
    again = world.auditor("export", "--out", str(out))
    assert again.returncode == 2
    assert "--force" in again.stderr
    vkey = str(world.files / "ledger.vkey")
    done = ibx("audit", "verify", "--export", str(out), "--ledger-vkey", vkey, "--json")
    assert done.returncode == 0, done.stdout


def test_an_enterprise_cannot_export_the_log(world: World, tmp_path: Path) -> None:
    done = ibx(
        "--token-file",
        str(world.files / "cathode-co.token"),
        "audit",
        "export",
        "--out",
        str(tmp_path / "x.jsonl"),
        *world.url.cli_args(),
    )
    assert done.returncode == 3, done.stderr
    assert "reads only the ledger entries that concern it" in done.stderr
    assert not (tmp_path / "x.jsonl").exists()
