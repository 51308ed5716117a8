"""The ``ibx`` commands end to end: tokens, enrol, renew, sealed upload, pull, revoke."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.keys import Ed25519Signer
from edge_tls import SealedBatchError, open_batch
from edge_tls._tables import ReadingBatchRow
from exchange.cli import app
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from tests.edge_tls.conftest import Pki, write_key_file

runner = CliRunner()

READINGS = "line,energy_kwh,output_units\ncell-assembly,1250.5,400\ncathode,980.0,310\n"


def ibx(pki: Pki, *args: str) -> str:
    result = runner.invoke(
        app, ["--data-dir", str(pki.runtime.settings.data_dir), *args], catch_exceptions=True
    )
    if result.exit_code != 0:
        raise AssertionError(f"ibx {' '.join(args)} failed: {result.output} {result.exception!r}")
    return result.output


def ibx_fails(pki: Pki, *args: str) -> BaseException:
    result = runner.invoke(app, ["--data-dir", str(pki.runtime.settings.data_dir), *args])
    assert result.exit_code != 0, result.output
    assert result.exception is not None
    return result.exception


@pytest.fixture(scope="module")
def device_dir(pki: Pki, edge_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("device") / "press-1"
    created = ibx(
        pki, "edge", "token", "create", "--enterprise", "factory-a", "--device", "press-1",
        "--ttl", "30m", "--token", pki.enterprise_token,
    )  # fmt: skip
    token = created.strip().splitlines()[-1]
    assert token.startswith("ibxb_")
    enrolled = ibx(
        pki, "edge", "enroll", "--server", edge_url, "--ca-bundle", str(pki.ca_bundle),
        "--device", "press-1", "--token", token, "--out", str(out),
        "--enterprise-key", pki.enterprise_signer.public_key.to_base64(),
    )  # fmt: skip
    assert "enrolled press-1" in enrolled
    assert (out / "device.key").stat().st_mode & 0o077 == 0
    return out


def test_ca_bundle_prints_the_chain(pki: Pki) -> None:
    assert ibx(pki, "pki", "ca-bundle") == pki.runtime.edge_pki.authority().chain_pem()


def test_token_create_is_for_the_enterprise_itself(pki: Pki) -> None:
    """The pack refuses an officer (naming the rule); an enterprise acts for itself only."""
    exc = ibx_fails(
        pki, "edge", "token", "create", "--enterprise", "factory-a", "--device", "x-1",
        "--token", pki.officer_token,
    )  # fmt: skip
    assert "may not edge_token_create" in str(exc)
    assert "casbin: no line lets security_officer officer edge_token_create" in str(exc)
    exc = ibx_fails(
        pki, "edge", "token", "create", "--enterprise", "factory-z", "--device", "x-1",
        "--token", pki.enterprise_token,
    )  # fmt: skip
    assert "own devices only, not factory-z's" in str(exc)


def test_renew_then_upload_then_pull(pki: Pki, device_dir: Path, exchange_url: str) -> None:
    before = (device_dir / "device.pem").read_bytes()
    assert "renewed press-1" in ibx(pki, "edge", "renew", "--dir", str(device_dir))
    assert (device_dir / "device.pem").read_bytes() != before

    readings = device_dir.parent / "readings.csv"
    readings.write_text(READINGS)
    uploaded = ibx(pki, "edge", "upload", str(readings), "--dir", str(device_dir))
    assert "uploaded sealed batch" in uploaded
    digest = uploaded.split("sha256 ")[1].strip()

    with pki.runtime.db.read() as session:
        stored = [row.ciphertext for row in session.query(ReadingBatchRow).all()]
    assert stored
    assert all(b"cell-assembly" not in blob for blob in stored)
    recorded = [json.loads(e.leaf_input) for e in pki.runtime.ledger.entries(0, 10_000)]
    uploads = [e for e in recorded if e["type"] == "edge.readings.upload"]
    assert uploads[-1]["payload"]["sha256"] == digest

    dataset = device_dir.parent / "dataset.csv"
    pulled = ibx(
        pki, "edge", "readings", "pull", "--token", pki.enterprise_token,
        "--key", str(pki.enterprise_key_file), "--out", str(dataset),
    )  # fmt: skip
    assert "appended 2 rows" in pulled
    with dataset.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["batch", "device", "line", "energy_kwh", "output_units"]
    assert rows[1][1:] == ["press-1", "cell-assembly", "1250.5", "400"]
    again = ibx(
        pki, "edge", "readings", "pull", "--token", pki.enterprise_token,
        "--key", str(pki.enterprise_key_file), "--out", str(dataset),
    )  # fmt: skip
    assert "opened 0 batches" in again

    remote = device_dir.parent / "remote.csv"
    over_http = ibx(
        pki, "edge", "readings", "pull", "--token", pki.enterprise_token,
        "--key", str(pki.enterprise_key_file), "--out", str(remote), "--exchange", exchange_url,
        "--ca-bundle", str(pki.ca_bundle), "--enterprise", "factory-a",
    )  # fmt: skip
    assert "appended 2 rows" in over_http


def test_nobody_else_can_read_the_batches(pki: Pki, device_dir: Path, tmp_path: Path) -> None:
    readings = tmp_path / "r.csv"
    readings.write_text(READINGS)
    ibx(pki, "edge", "upload", str(readings), "--dir", str(device_dir))
    other_signer = Ed25519Signer.generate("factory-b")
    name = f"factory-b-{tmp_path.name[-6:]}".replace("_", "-")
    other = pki.runtime.identities.create(
        name, Role.ENTERPRISE, public_key=other_signer.public_key, industry="lithium-battery"
    )
    batches = pki.runtime.edge_readings.batches("factory-a")
    assert batches
    with pytest.raises(SealedBatchError):
        open_batch(batches[-1].ciphertext, other_signer.seed())
    key_file = tmp_path / "b.key"
    write_key_file(key_file, other_signer)
    pulled = ibx(
        pki, "edge", "readings", "pull", "--token", other.token, "--key", str(key_file),
        "--out", str(tmp_path / "b.csv"),
    )  # fmt: skip
    assert "opened 0 batches" in pulled
    exc = ibx_fails(
        pki, "edge", "readings", "pull", "--token", pki.officer_token,
        "--key", str(key_file), "--out", str(tmp_path / "c.csv"),
    )  # fmt: skip
    assert "may not reading_pull" in str(exc)


def test_revoke_is_a_security_officers_act(pki: Pki, device_dir: Path, tmp_path: Path) -> None:
    serial = ibx(pki, "edge", "renew", "--dir", str(device_dir)).split("serial ")[1].split()[0]
    officer_key = str(pki.work / "officer.key")
    exc = ibx_fails(
        pki, "pki", "revoke", serial, "--reason", "key-compromise",
        "--token", pki.enterprise_token, "--key", officer_key,
    )  # fmt: skip
    assert "may not cert_revoke" in str(exc)
    revoked = ibx(
        pki, "pki", "revoke", serial, "--reason", "key-compromise",
        "--token", pki.officer_token, "--key", officer_key,
    )  # fmt: skip
    assert f"revoked {serial}" in revoked
    readings = tmp_path / "late.csv"
    readings.write_text(READINGS)
    refused = ibx_fails(pki, "edge", "upload", str(readings), "--dir", str(device_dir))
    assert "401" in str(refused)
    assert "revoked" in str(refused)


def test_upload_refuses_a_sealing_key_other_than_the_pinned_one(
    pki: Pki, edge_url: str, tmp_path: Path
) -> None:
    token = pki.token("pinned-1")
    wrong = Ed25519Signer.generate("not-the-enterprise").public_key.to_base64()
    out = tmp_path / "pinned-1"
    ibx(
        pki, "edge", "enroll", "--server", edge_url, "--ca-bundle", str(pki.ca_bundle),
        "--device", "pinned-1", "--token", token, "--out", str(out), "--enterprise-key", wrong,
    )  # fmt: skip
    readings = tmp_path / "r.csv"
    readings.write_text(READINGS)
    exc = ibx_fails(pki, "edge", "upload", str(readings), "--dir", str(out))
    assert "pinned" in str(exc)


def test_pki_list_shows_status(pki: Pki, device_dir: Path) -> None:
    listing = ibx(pki, "pki", "list", "--enterprise", "factory-a")
    lines = [line.split("\t") for line in listing.strip().splitlines()]
    assert lines
    assert {line[1] for line in lines} == {"device"}
    assert {line[2] for line in lines} <= {"valid", "revoked", "expired"}
    assert any(line[4].endswith("/device/press-1") for line in lines)


def test_token_create_over_http_then_enrol(
    pki: Pki, exchange_url: str, edge_url: str, tmp_path: Path
) -> None:
    created = ibx(
        pki, "edge", "token", "create", "--enterprise", "factory-a", "--device", "remote-1",
        "--ttl", "10m", "--token", pki.enterprise_token, "--exchange", exchange_url,
    )  # fmt: skip
    token = created.strip().splitlines()[-1]
    assert token.startswith("ibxb_")
    enrolled = ibx(
        pki, "edge", "enroll", "--server", edge_url, "--ca-bundle", str(pki.ca_bundle),
        "--device", "remote-1", "--token", token, "--out", str(tmp_path / "remote-1"),
    )  # fmt: skip
    assert "enrolled remote-1" in enrolled
    exc = ibx_fails(
        pki, "edge", "token", "create", "--enterprise", "factory-a", "--device", "remote-2",
        "--token", pki.officer_token, "--exchange", exchange_url,
    )  # fmt: skip
    assert isinstance(exc, RemoteRefusalError)
    assert exc.status == 401  # an administrator without the client certificate of its second factor
    assert "client certificate" in str(exc)
