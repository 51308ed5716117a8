"""Issue 9 (edge): only the device can put readings in its enterprise's dataset, and one bad
batch never blocks ``ibx edge readings pull``.

Anyone can seal to an enterprise's public key. Each attack below puts a batch
into the enterprise's stored batches the way the exchange operator could (it
holds the database), between two genuine batches; ``readings pull`` must name
it as skipped, keep its rows out of the output, still append both genuine
batches, and exit 6 (partial).
"""

from __future__ import annotations

import csv
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner

from core.clock import utcnow
from core.keys import Ed25519Signer
from edge_tls import (
    BatchHeader,
    BatchOpener,
    BatchVerificationError,
    DeviceCertificate,
    DeviceId,
    ReadingsError,
    RevocationReason,
    SignedBatch,
    fingerprint,
    seal_batch,
    sealing_public_key,
    sign_batch,
)
from exchange.cli import app
from exchange.identities import Role
from tests.edge_tls.conftest import Pki, csr_for, new_key

GENUINE = b"line,energy_kwh\ncathode,980.5\n"
FORGED = b"line,energy_kwh\ncathode,1.0\n"


@dataclass(frozen=True)
class Device:
    """An enrolled device: what only it holds (the key) and what the exchange sees (peer)."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    peer: DeviceCertificate


def _device(pki: Pki, enterprise: str, name: str) -> Device:
    key = new_key()
    token = pki.runtime.edge_pki.create_token(
        DeviceId(enterprise, name), actor=enterprise, now=utcnow()
    ).token
    issued = pki.runtime.edge_pki.enroll(
        name, token, csr_for(key, name).public_bytes(Encoding.DER), now=utcnow()
    )
    peer = pki.runtime.edge_pki.authenticate(
        issued.certificate.public_bytes(Encoding.DER), now=utcnow()
    )
    return Device(key, issued.certificate, peer)


@dataclass(frozen=True)
class World:
    pki: Pki
    seal_to_a: Callable[[bytes], bytes]
    press: Device  # factory-a's device the forgeries claim to be
    sibling: Device  # another device of factory-a
    foreign: Device  # a device of factory-b


@pytest.fixture(scope="module")
def world(pki: Pki) -> World:
    other = Ed25519Signer.generate("factory-b")
    pki.runtime.identities.create("factory-b", Role.ENTERPRISE, public_key=other.public_key)
    key = sealing_public_key(pki.enterprise_signer.public_key.raw)
    return World(
        pki,
        lambda plaintext: seal_batch(plaintext, key),
        _device(pki, "factory-a", "press-s1"),
        _device(pki, "factory-a", "press-s2"),
        _device(pki, "factory-b", "b-1"),
    )


def _genuine(world: World, readings: bytes = GENUINE) -> bytes:
    signed = sign_batch(readings, world.press.key, world.press.cert, now=utcnow())
    return world.seal_to_a(signed.to_bytes())


def _header_for(cert: x509.Certificate, *, device: str, readings: bytes) -> BatchHeader:
    return BatchHeader(
        enterprise="factory-a",
        device=device,
        serial=format(cert.serial_number, "x"),
        certificate_sha256=fingerprint(cert),
        sealed_at=utcnow(),
        nonce=secrets.token_hex(16),
        readings_sha256=hashlib.sha256(readings).hexdigest(),
    )


def _signed_by(key: ec.EllipticCurvePrivateKey, header: BatchHeader) -> bytes:
    return key.sign(header.signed_bytes(), ec.ECDSA(hashes.SHA256()))


def _operator_unsigned(world: World) -> tuple[bytes, Device]:
    return world.seal_to_a(FORGED), world.press


def _operator_own_key(world: World) -> tuple[bytes, Device]:
    header = _header_for(world.press.cert, device="press-s1", readings=FORGED)
    forged = SignedBatch(header, world.press.cert, FORGED, _signed_by(new_key(), header))
    return world.seal_to_a(forged.to_bytes()), world.press


def _operator_minted_certificate(world: World) -> tuple[bytes, Device]:
    ca = world.pki.runtime.edge_pki.authority()
    rogue = type(ca).generate(now=utcnow(), config=ca.config).authority
    key = new_key()
    cert = rogue.issue_device(key.public_key(), DeviceId("factory-a", "press-s1"), now=utcnow())
    return world.seal_to_a(sign_batch(FORGED, key, cert, now=utcnow()).to_bytes()), world.press


def _device_of_another_enterprise(world: World) -> tuple[bytes, Device]:
    signed = sign_batch(FORGED, world.foreign.key, world.foreign.cert, now=utcnow())
    return world.seal_to_a(signed.to_bytes()), world.press


def _sibling_claiming_the_press(world: World) -> tuple[bytes, Device]:
    header = _header_for(world.sibling.cert, device="press-s1", readings=FORGED)
    forged = SignedBatch(header, world.sibling.cert, FORGED, _signed_by(world.sibling.key, header))
    return world.seal_to_a(forged.to_bytes()), world.press


def _sibling_stored_under_the_press(world: World) -> tuple[bytes, Device]:
    signed = sign_batch(FORGED, world.sibling.key, world.sibling.cert, now=utcnow())
    return world.seal_to_a(signed.to_bytes()), world.press


def _readings_swapped_under_a_genuine_signature(world: World) -> tuple[bytes, Device]:
    genuine = sign_batch(GENUINE, world.press.key, world.press.cert, now=utcnow())
    swapped = SignedBatch(genuine.header, genuine.certificate, FORGED, genuine.signature)
    return world.seal_to_a(swapped.to_bytes()), world.press


def _sealed_to_another_key(world: World) -> tuple[bytes, Device]:
    signed = sign_batch(FORGED, world.press.key, world.press.cert, now=utcnow())
    stranger = Ed25519Signer.generate("stranger").public_key.raw
    return seal_batch(signed.to_bytes(), sealing_public_key(stranger)), world.press


def _not_csv(world: World) -> tuple[bytes, Device]:
    return _genuine(world, b"\xff\xfe not utf-8 \x00"), world.press


def _other_columns(world: World) -> tuple[bytes, Device]:
    return _genuine(world, b"temperature\n1.0\n"), world.press


ATTACKS: dict[str, tuple[Callable[[World], tuple[bytes, Device]], str | None]] = {
    "operator-seals-unsigned": (_operator_unsigned, "format"),
    "operator-signs-with-own-key": (_operator_own_key, "signature"),
    "operator-mints-a-certificate": (_operator_minted_certificate, "chain"),
    "device-of-another-enterprise": (_device_of_another_enterprise, "foreign-enterprise"),
    "sibling-claims-the-press": (_sibling_claiming_the_press, "other-device"),
    "sibling-batch-stored-as-the-press": (_sibling_stored_under_the_press, "mislabelled"),
    "readings-swapped-under-signature": (_readings_swapped_under_a_genuine_signature, "digest"),
    "sealed-to-another-key": (_sealed_to_another_key, None),
    "not-utf8-csv": (_not_csv, None),
    "other-columns": (_other_columns, None),
}


def _store(world: World, sealed: bytes, under: Device) -> int:
    return world.pki.runtime.edge_readings.store(under.peer, sealed, now=utcnow()).id


def _pull(world: World, out: Path, after: int) -> tuple[int, str]:
    pki = world.pki
    result = CliRunner().invoke(
        app,
        [
            "--data-dir", str(pki.runtime.settings.data_dir), "edge", "readings", "pull",
            "--token", pki.enterprise_token, "--key", str(pki.enterprise_key_file),
            "--out", str(out), "--after", str(after),
        ],
    )  # fmt: skip
    return result.exit_code, result.output


@pytest.mark.parametrize(("case", "attack"), ATTACKS.items(), ids=list(ATTACKS.keys()))
def test_pull_skips_and_names_what_it_cannot_use_and_keeps_going(
    world: World,
    tmp_path: Path,
    case: str,
    attack: tuple[Callable[[World], tuple[bytes, Device]], str | None],
) -> None:
    make, reason = attack
    before = world.pki.runtime.edge_readings.batches("factory-a", limit=100_000)
    start = before[-1].id if before else 0
    first = _store(world, _genuine(world), world.press)
    sealed, under = make(world)
    bad = _store(world, sealed, under)
    last = _store(world, _genuine(world), world.press)

    if reason is not None:
        opener = BatchOpener(
            "factory-a",
            world.pki.enterprise_signer.seed(),
            trust=world.pki.runtime.edge_pki.authority().chain,
            crl=world.pki.runtime.edge_pki.crl(now=utcnow()),
        )
        stored = world.pki.runtime.edge_readings.batches("factory-a", after=start)
        with pytest.raises(BatchVerificationError) as refused:
            opener.open(next(b for b in stored if b.id == bad))
        assert refused.value.reason == reason

    out = tmp_path / "dataset.csv"
    code, output = _pull(world, out, start)
    assert code == 6, output
    assert f"skipped batch {bad} from press-s1" in output
    assert "opened 2 batches, appended 2 rows" in output
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert [row[0] for row in rows[1:]] == [str(first), str(last)]
    assert all(row[1:] == ["press-s1", "cathode", "980.5"] for row in rows[1:])
    skipped = out.with_name(out.name + ".skipped").read_text().splitlines()
    assert [line.split("\t")[0] for line in skipped] == [str(bad)]
    assert out.with_name(out.name + ".cursor").read_text().strip() == str(last)
    again_code, again = _pull(world, out, last)
    assert again_code == 0
    assert "opened 0 batches" in again


def test_a_batch_signed_with_a_key_later_revoked_for_compromise_is_refused(
    pki: Pki, world: World
) -> None:
    """A stolen key can sign anything, backdated: once its certificate (line) is revoked for
    key compromise, the CRL the enterprise checks makes pull refuse its batches."""
    thief = _device(pki, "factory-a", "press-stolen")
    signed = sign_batch(FORGED, thief.key, thief.cert, now=utcnow())
    bad = _store(world, world.seal_to_a(signed.to_bytes()), thief)
    pki.runtime.edge_pki.revoke(
        thief.cert.serial_number, RevocationReason.KEY_COMPROMISE, actor="officer", now=utcnow()
    )
    opener = BatchOpener(
        "factory-a",
        pki.enterprise_signer.seed(),
        trust=pki.runtime.edge_pki.authority().chain,
        crl=pki.runtime.edge_pki.crl(now=utcnow()),
    )
    batch = next(b for b in pki.runtime.edge_readings.batches("factory-a", after=bad - 1))
    with pytest.raises(BatchVerificationError) as refused:
        opener.open(batch)
    assert refused.value.reason == "key-compromise"


def test_a_crl_the_pinned_ca_did_not_sign_is_refused(pki: Pki) -> None:
    rogue = type(pki.runtime.edge_pki.authority()).generate(
        now=utcnow(), config=pki.runtime.edge_pki.config
    )
    from edge_tls._revocation import build_crl

    crl = build_crl(rogue.authority, [], number=1, now=utcnow()).public_bytes(Encoding.DER)
    with pytest.raises(ReadingsError, match="not signed by a CA of the pinned bundle"):
        BatchOpener(
            "factory-a",
            pki.enterprise_signer.seed(),
            trust=pki.runtime.edge_pki.authority().chain,
            crl=crl,
        )


def test_remote_pull_needs_a_pinned_ca_and_the_enterprise_name(
    pki: Pki, exchange_url: str, tmp_path: Path
) -> None:
    base = [
        "--data-dir", str(pki.runtime.settings.data_dir), "edge", "readings", "pull",
        "--token", pki.enterprise_token, "--key", str(pki.enterprise_key_file),
        "--out", str(tmp_path / "r.csv"), "--exchange", exchange_url,
    ]  # fmt: skip
    no_ca = CliRunner().invoke(app, [*base, "--enterprise", "factory-a"])
    assert no_ca.exit_code != 0
    assert "--ca-bundle" in no_ca.output
    no_name = CliRunner().invoke(app, [*base, "--ca-bundle", str(pki.ca_bundle)])
    assert no_name.exit_code != 0
    assert "--enterprise" in no_name.output


def test_a_replayed_copy_of_a_genuine_batch_is_refused(world: World, tmp_path: Path) -> None:
    """The operator cannot open a batch, but it can store its ciphertext again: the signed
    nonce (kept in <out>.nonces) makes pull skip the copy, in a later pull or the same one."""
    before = world.pki.runtime.edge_readings.batches("factory-a", limit=100_000)
    start = before[-1].id if before else 0
    genuine = _genuine(world)
    first = _store(world, genuine, world.press)
    out = tmp_path / "dataset.csv"
    code, output = _pull(world, out, start)
    assert code == 0, output
    replay = _store(world, genuine, world.press)
    fresh = _genuine(world)
    later = _store(world, fresh, world.press)
    again = _store(world, fresh, world.press)  # a copy inside one pull
    code, output = _pull(world, out, first)
    assert code == 6, output
    assert f"skipped batch {replay} from press-s1" in output
    assert f"skipped batch {again} from press-s1" in output
    assert "replayed copy" in output
    with out.open(newline="") as handle:
        ids = [row[0] for row in list(csv.reader(handle))[1:]]
    assert ids == [str(first), str(later)]
