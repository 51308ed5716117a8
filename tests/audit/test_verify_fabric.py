"""``ibx audit verify --export F --fabric``: an auditor of another organisation checks the
operator's export against the ledger's copy on the consortium's channel.

The operator's logs are real ledgers (SQLite) shipped by the real shipper through
the real Gateway client to the in-process Gateway double running the real
chaincode, once for the module: one log in full mode, one in anchor mode. The
auditor runs ``ibx`` (in this process) with their own Fabric identity, a client
of another organisation (``Org2MSP``), and exports the tests tamper with.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit import ExportHeader, LedgerExport, check_fabric, write_export
from core.alerts import Alert, Severity
from core.clock import utcnow
from core.db import Database, migrate
from core.keys import Ed25519Signer
from exchange.deployment_ca import ensure_deployment_ca
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import MIGRATIONS, Ledger, LedgerConfig, SqlLedgerBackend
from ledger.fabric import FabricConfig, FabricMode
from ledger.fabric.compare import ChannelState
from ledger.fabric.gateway import open_channel
from ledger.fabric.shipper import FabricShipper
from tests.conftest import initialised
from tests.identities import register_all
from tests.in_process import Done, ibx
from tests.ledger.fabric import conftest as fabric_fixtures
from tests.ledger.fabric.conftest import FabricTarget
from tests.ledger.fabric.gateway_double import GatewayDouble, double_fabric_config
from tests.server import ExchangeUrl, free_port, running_exchange

# The Gateway double's fixtures (tests/ledger/fabric/conftest.py), used here too.
fabric_pki = fabric_fixtures.fabric_pki
chaincode_service = fabric_fixtures.chaincode_service
gateway_double = fabric_fixtures.gateway_double

SHIPPED = 40
"""Entries on the channel; the operator appended 5 more since (lag)."""
AFTER = 5


@dataclass
class OperatorLog:
    """One of the operator's ledgers, its log on the channel and its signing key."""

    ledger: Ledger
    backend: SqlLedgerBackend
    db: Database
    signer: Ed25519Signer

    @property
    def origin(self) -> str:
        return self.ledger.config.origin

    def append(self, count: int, tag: str = "reading") -> None:
        start = self.ledger.size()
        self.ledger.append(
            [
                Alert("demo.reading", Severity.WARNING, "sensor", f"{tag} {start + i}").event("ibx")
                for i in range(count)
            ]
        )

    def export(self, path: Path) -> Path:
        """``path``: an ``ibx-ledger-export/v1`` of this log (entries and the signed head)."""
        size = self.ledger.size()
        header = ExportHeader(self.origin, self.ledger.vkey(), size, utcnow())
        with path.open("wb") as out:
            write_export(
                out,
                header,
                self.backend.scan_entries(0, size),
                [self.ledger.checkpoint().to_text()],
            )
        return path


def _operator_log(
    directory: Path, name: str, origin: str, signer: Ed25519Signer | None = None
) -> OperatorLog:
    db = Database(f"sqlite:///{directory / f'{name}.db'}")
    migrate(db, [MIGRATIONS])
    backend = SqlLedgerBackend(db)
    signer = signer or Ed25519Signer.generate("ledger")
    return OperatorLog(Ledger(backend, signer, LedgerConfig(origin)), backend, db, signer)


def _ship(log: OperatorLog, config: FabricConfig, mode: FabricMode) -> None:
    channel = open_channel(config, log.origin)
    try:
        report = FabricShipper(log.ledger, log.backend, channel, mode).ship()
    finally:
        channel.close()
    assert report.error is None, report


@dataclass
class World:
    """The operator's two shipped logs, their honest exports, and the auditor."""

    directory: Path
    full: OperatorLog
    anchored: OperatorLog
    full_export: Path
    anchor_export: Path
    auditor: dict[str, str]

    def verify(self, export: Path, *extra: str, **env: str) -> Done:
        return ibx(
            "audit", "verify", "--export", str(export), "--fabric", *extra,
            env={**self.auditor, **env},
        )  # fmt: skip

    def path(self, name: str) -> Path:
        return self.directory / name


def _auditor_environment(config: FabricConfig) -> dict[str, str]:
    return {
        "IBX_LEDGER_FABRIC_GATEWAY": config.gateway,
        "IBX_LEDGER_FABRIC_TLS_ROOT": str(config.tls_root),
        "IBX_LEDGER_FABRIC_MSP_ID": config.msp_id,
        "IBX_LEDGER_FABRIC_CERT": str(config.cert),
        "IBX_LEDGER_FABRIC_KEY": str(config.key),
        "IBX_LEDGER_FABRIC_CHANNEL": config.channel,
        "IBX_LEDGER_FABRIC_CHAINCODE": config.chaincode,
        "IBX_LEDGER_FABRIC_RETRIES": "0",
    }


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, gateway_double: GatewayDouble
) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("fabric-audit")
    operator = double_fabric_config(directory / "operator", gateway_double)
    org2 = gateway_double.pki.organisation("Org2MSP")
    assert org2 is not None
    auditor = double_fabric_config(
        directory / "auditor", gateway_double, identity=org2.issue("auditor@org2")
    )
    full = _operator_log(directory, "full", FabricTarget.new_log_id("test.ibx/audit-full"))
    full.append(SHIPPED)
    _ship(full, operator, FabricMode.FULL)
    _ship(full, operator, FabricMode.ANCHOR)  # its signed head witnessed too
    full.append(AFTER)
    anchored = _operator_log(directory, "anchor", FabricTarget.new_log_id("test.ibx/audit-anchor"))
    anchored.append(20)
    _ship(anchored, operator, FabricMode.ANCHOR)
    anchored.append(SHIPPED - 20)
    _ship(anchored, operator, FabricMode.ANCHOR)
    anchored.append(AFTER)
    made = World(
        directory,
        full,
        anchored,
        full.export(directory / "full.jsonl"),
        anchored.export(directory / "anchor.jsonl"),
        _auditor_environment(auditor),
    )
    try:
        yield made
    finally:
        full.db.dispose()
        anchored.db.dispose()


def _findings(done: Done) -> list[dict[str, object]]:
    """The ``--json`` report's findings."""
    found: list[dict[str, object]] = json.loads(done.stdout)["findings"]
    return found


def _fabric_findings(done: Done) -> list[tuple[object, object]]:
    return [
        (f["code"], f["index"]) for f in _findings(done) if str(f["code"]).startswith("fabric.")
    ]


def _edit_entry(export: Path, out: Path, index: int) -> Path:
    """``export`` with entry ``index``'s bytes changed (its line kept in place)."""
    lines = export.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[1 + index])
    leaf = base64.b64decode(entry["leaf"]).replace(b"reading", b"forged")
    lines[1 + index] = (
        json.dumps({"index": index, "leaf": base64.b64encode(leaf).decode()}).encode() + b"\n"
    )
    out.write_bytes(b"".join(lines))
    return out


# -- agreement ----------------------------------------------------------------------------


def test_the_channel_agrees_with_the_honest_export_and_lag_is_not_a_finding(world: World) -> None:
    done = world.verify(world.full_export, IBX_LEDGER_FABRIC_MODE="full")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-2].startswith(f"ok: {SHIPPED + AFTER} entries")
    assert lines[-1] == (
        f"fabric full: channel size {SHIPPED} of export size {SHIPPED + AFTER} agrees (lag {AFTER})"
    )
    as_json = world.verify(world.full_export, "--json")  # the mode as the channel shows it
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is True and report["findings"] == []
    assert report["fabric"] == {
        "ok": True,
        "mode": "full",
        "log": world.full.origin,
        "created": True,
        "channel_size": SHIPPED,
        "export_size": SHIPPED + AFTER,
        "lag": AFTER,
        "newer": 0,
        "channel": world.auditor["IBX_LEDGER_FABRIC_CHANNEL"],
        "chaincode": world.auditor["IBX_LEDGER_FABRIC_CHAINCODE"],
    }


def test_anchor_mode_agrees_and_is_recognised_from_the_channel(world: World) -> None:
    done = world.verify(world.anchor_export, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    fabric = json.loads(done.stdout)["fabric"]
    assert (fabric["mode"], fabric["channel_size"], fabric["lag"]) == ("anchor", SHIPPED, AFTER)


def test_a_log_never_shipped_is_all_lag(world: World) -> None:
    never = _operator_log(world.directory, "never", FabricTarget.new_log_id("test.ibx/never"))
    try:
        never.append(3)
        done = world.verify(never.export(world.path("never.jsonl")))
    finally:
        never.db.dispose()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"fabric: the channel holds no log {never.origin}: nothing shipped yet (lag 3)"
    )


# -- tampering ----------------------------------------------------------------------------


def test_an_entry_edited_after_shipping_is_named_by_its_index(world: World) -> None:
    edited = _edit_entry(world.full_export, world.path("edited.jsonl"), 7)
    done = world.verify(edited, "--json")
    assert done.returncode == 5, done.stderr
    assert _fabric_findings(done) == [("fabric.anchor", None), ("fabric.entry", 7)]
    text = world.verify(edited)
    assert text.returncode == 5
    assert any(
        line.startswith("FINDING #7 fabric.entry: the Fabric channel: entry 7 differs")
        for line in text.stdout.splitlines()
    ), text.stdout
    assert text.stdout.splitlines()[-1].endswith("disagrees (lag 5)")


def test_an_entry_edited_after_the_shipped_prefix_is_lag_for_the_channel(world: World) -> None:
    """The channel cannot vouch for what was not shipped: only the export's own checks
    find an edit there."""
    edited = _edit_entry(world.full_export, world.path("edited-late.jsonl"), SHIPPED + 2)
    done = world.verify(edited, "--json")
    assert done.returncode == 5  # the signed head does not cover it
    assert _fabric_findings(done) == []


def test_an_export_of_a_rewritten_log_is_found_in_both_modes(world: World) -> None:
    """Same key, same origin, other entries: self-consistent, signed, and not the
    history the consortium holds."""
    for name, honest in (("full", world.full), ("anchor", world.anchored)):
        rewritten = _operator_log(
            world.directory, f"rewritten-{name}", honest.origin, honest.signer
        )
        try:
            rewritten.append(SHIPPED + AFTER, tag="rewritten")
            export = rewritten.export(world.path(f"rewritten-{name}.jsonl"))
        finally:
            rewritten.db.dispose()
        done = world.verify(export, "--json")
        assert done.returncode == 5, done.stderr
        found = _findings(done)  # the export itself verifies: only the channel tells
        if name == "full":  # its entries, and the anchor of its signed head
            assert [(f["code"], f["index"]) for f in found] == [
                ("fabric.anchor", None),
                ("fabric.entry", 0),
            ]
            assert "entry 0 differs" in str(found[1]["message"])
            assert f"the anchored checkpoint of size {SHIPPED} has root" in str(found[0]["message"])
        else:
            assert [f["code"] for f in found] == ["fabric.anchor"]
            assert "the anchored checkpoint of size 20 has root" in str(found[0]["message"])


def test_an_export_under_another_key_is_a_key_finding(world: World) -> None:
    impostor = _operator_log(world.directory, "impostor", world.full.origin)
    try:
        impostor.append(SHIPPED)
        export = impostor.export(world.path("impostor.jsonl"))
    finally:
        impostor.db.dispose()
    done = world.verify(export, "--json")
    assert done.returncode == 5
    assert [f["code"] for f in _findings(done)] == ["fabric.key"]
    assert _findings(done)[0]["index"] is None


def _truncated(world: World, size: int) -> Path:
    """The full log's export cut to its first ``size`` entries (no checkpoint line)."""
    lines = world.full_export.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["tree_size"] = size
    truncated = world.path(f"truncated-{size}.jsonl")
    truncated.write_bytes(b"".join([json.dumps(header).encode() + b"\n", *lines[1 : 1 + size]]))
    return truncated


def test_an_export_file_older_than_the_channel_is_checked_up_to_its_size(world: World) -> None:
    done = world.verify(_truncated(world, 30), "--json")
    assert _fabric_findings(done) == []
    fabric = json.loads(done.stdout)["fabric"]
    assert (fabric["ok"], fabric["lag"], fabric["newer"]) == (True, 0, SHIPPED - 30)
    text = world.verify(_truncated(world, 30))
    assert text.stdout.splitlines()[-1] == (
        f"fabric full: channel size {SHIPPED} of export size 30 agrees (lag 0; the channel "
        f"holds {SHIPPED - 30} newer entries: export again to check them)"
    )
    edited = _edit_entry(_truncated(world, 30), world.path("truncated-edited.jsonl"), 3)
    assert _fabric_findings(world.verify(edited, "--json")) == [("fabric.entry", 3)]


def test_an_export_served_now_that_is_behind_the_channel_is_a_finding(
    world: World, gateway_double: GatewayDouble
) -> None:
    """Read live (the channel first, then the exchange's log), fewer entries than already
    shipped: the exchange rolled its log back or cut it."""
    config = double_fabric_config(world.path("live-auditor"), gateway_double)
    channel = open_channel(config, world.full.origin)
    try:
        state = ChannelState.read(channel)
        served = LedgerExport.read(_truncated(world, 30))
        check = check_fabric(
            served, channel, verifier=world.full.ledger.verifier, state=state, live=True
        )
    finally:
        channel.close()
    assert not check.ok and check.newer == 0
    assert [(f.code, f.index) for f in check.findings] == [("fabric.ahead", 30)]
    assert "holds 40 entries but the export only 30" in check.findings[0].message


# -- the auditor's settings and outages ----------------------------------------------------


def test_missing_settings_are_one_usage_line_naming_them(world: World) -> None:
    env = {k: v for k, v in world.auditor.items() if k != "IBX_LEDGER_FABRIC_CERT"}
    done = ibx("audit", "verify", "--export", str(world.full_export), "--fabric", env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "IBX_LEDGER_FABRIC_CERT" in done.stderr
    assert "IBX_LEDGER_FABRIC_GATEWAY" not in done.stderr


def test_an_unreachable_peer_is_one_error_line(world: World) -> None:
    done = world.verify(world.full_export, IBX_LEDGER_FABRIC_GATEWAY=f"127.0.0.1:{free_port()}")
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "could not read the channel" in done.stderr


# -- over HTTPS: an exchange that ships on its own ----------------------------------------


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, gateway_double: GatewayDouble, world: World
) -> Iterator[tuple[ExchangeUrl, Path]]:
    """A real ``ibx serve`` shipping its ledger (full mode) to the double, and the
    auditor's files (token, client certificate, ledger key)."""
    root = tmp_path_factory.mktemp("fabric-served")
    origin = FabricTarget.new_log_id("test.ibx/audit-served")
    data = initialised(root / "data", ledger_origin=origin)
    files = root / "files"
    files.mkdir()
    runtime = Runtime(Settings(data_dir=data))
    try:
        made = register_all(runtime, {"aud": (Role.AUDITOR, None)})
        (files / "aud.token").write_text(made["aud"].token + "\n")
        (files / "aud.token").chmod(0o600)
        ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
        runtime.admin_certificates.issue("aud", actor="sysadmin", now=utcnow()).write(files)
    finally:
        runtime.close()
    operator = double_fabric_config(root / "operator", gateway_double)
    env = {
        **_auditor_environment(operator),
        "IBX_LEDGER_FABRIC_MODE": "full",
        "IBX_LEDGER_ORIGIN": origin,
    }
    with running_exchange(data, env=env) as url:
        channel = open_channel(operator, origin)
        try:  # until serve's first pass has shipped what init and the registrations wrote
            deadline = time.monotonic() + 20
            while channel.genesis() is None or channel.head().size == 0:
                assert time.monotonic() < deadline, url.log()
                time.sleep(0.05)
        finally:
            channel.close()
        yield url, files


def test_an_export_served_now_agrees_with_the_channel_read_just_before(
    world: World, served: tuple[ExchangeUrl, Path]
) -> None:
    url, files = served
    done = ibx(
        "--token-file", str(files / "aud.token"),
        "audit", "verify", "--fabric", "--json", *url.cli_args(),
        "--client-cert", str(files / "aud.crt"), "--client-key", str(files / "aud.key"),
        env=world.auditor,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    fabric = json.loads(done.stdout)["fabric"]
    assert fabric["ok"] is True and fabric["mode"] == "full"
    assert 0 < fabric["channel_size"] <= fabric["export_size"] and fabric["newer"] == 0
