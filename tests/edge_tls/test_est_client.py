"""The device's EST client and uplink (edge_tls) against a real edge listener, real TLS.

Every request goes through a uvicorn TLS listener on a free port (the same
configuration ``ibx serve --edge-port`` runs), so the handshake, the pinned
CA, the client certificate and the listener's refusals are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import utcnow
from core.keys import Ed25519Signer
from edge_tls import (
    DeviceCredentials,
    DeviceUplink,
    EdgeRefusedError,
    EnrollmentError,
    EstClient,
    RenewalRefusedError,
    RevocationReason,
    SealedBatchError,
    SignedBatch,
    UploadReceipt,
    build_csr,
    enroll,
    fingerprint,
    open_batch,
    reenroll,
    sealing_public_key,
    upload_readings,
)
from edge_tls._tables import ReadingBatchRow
from tests.edge_tls.conftest import Pki

READINGS = b"line,energy_kwh\nkiln,12.5\n"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _enrolled(pki: Pki, edge_url: str, tmp_path: Path, device: str) -> DeviceCredentials:
    credentials = DeviceCredentials(tmp_path / device)
    enroll(
        credentials,
        server=edge_url,
        ca_pem=pki.ca_bundle.read_bytes(),
        device=device,
        token=pki.token(device),
    )
    return credentials


def _stored(pki: Pki, device: str) -> int:
    with pki.runtime.db.read() as session:
        return session.query(ReadingBatchRow).filter_by(device=device).count()


def test_cacerts_is_the_pinned_chain(pki: Pki, edge_url: str) -> None:
    with EstClient.bootstrap(edge_url, pki.ca_bundle.read_bytes()) as est:
        chain = est.cacerts()
    ca = pki.runtime.edge_pki.authority()
    assert {fingerprint(c) for c in chain} == {fingerprint(ca.root), fingerprint(ca.issuing)}


def test_a_listener_outside_the_pinned_ca_fails_the_handshake(
    pki: Pki, edge_url: str, tmp_path: Path
) -> None:
    from tests.edge_tls.conftest import make_pki

    other = make_pki(tmp_path / "other")  # another deployment's CA
    try:
        with (
            EstClient.bootstrap(edge_url, other.ca_bundle.read_bytes()) as est,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            est.cacerts()
    finally:
        other.runtime.close()


def test_a_bundle_without_certificates_is_refused_before_any_request(edge_url: str) -> None:
    with pytest.raises(EnrollmentError, match="no usable PEM certificate"):
        EstClient.bootstrap(edge_url, b"not a certificate")


def test_simpleenroll_gives_one_certificate_for_the_key(pki: Pki, edge_url: str) -> None:
    key = _key()
    token = pki.token("est-1")
    with EstClient.bootstrap(edge_url, pki.ca_bundle.read_bytes()) as est:
        certificate = est.simpleenroll("est-1", token, build_csr(key, "est-1"))
        with pytest.raises(EdgeRefusedError) as reused:  # one use only
            est.simpleenroll("est-1", token, build_csr(_key(), "est-1"))
    assert certificate.public_key() == key.public_key()
    assert reused.value.status == 401
    assert reused.value.detail.startswith("bootstrap token refused")
    assert str(reused.value).startswith("enrolment refused (401): bootstrap token refused")


def test_simpleenroll_refuses_a_csr_for_another_name_with_400(pki: Pki, edge_url: str) -> None:
    token = pki.token("est-2")
    with EstClient.bootstrap(edge_url, pki.ca_bundle.read_bytes()) as est:
        with pytest.raises(EdgeRefusedError) as refused:
            est.simpleenroll("est-2", token, build_csr(_key(), "someone-else"))
        certificate = est.simpleenroll("est-2", token, build_csr(_key(), "est-2"))
    assert refused.value.status == 400  # a refused CSR does not spend the token
    assert "certificate request refused" in refused.value.detail
    assert certificate.serial_number > 0


def test_enroll_saves_the_directory_and_pins_the_enterprise_key(
    pki: Pki, edge_url: str, tmp_path: Path
) -> None:
    credentials = DeviceCredentials(tmp_path / "est-3")
    pinned = pki.enterprise_signer.public_key.to_base64()
    certificate = enroll(
        credentials,
        server=edge_url + "/",
        ca_pem=pki.ca_bundle.read_bytes(),
        device="est-3",
        token=pki.token("est-3") + "\n",  # pasted with its newline
        enterprise_key=pinned,
    )
    assert credentials.certificate() == certificate
    assert credentials.server() == edge_url
    assert credentials.device() == "est-3"
    assert credentials.pinned_enterprise_key() == pinned
    assert credentials.ca_path.read_bytes() == pki.ca_bundle.read_bytes()
    assert credentials.key_path.stat().st_mode & 0o077 == 0


def test_an_unusable_enterprise_key_is_refused_before_the_token_is_spent(
    pki: Pki, edge_url: str, tmp_path: Path
) -> None:
    token = pki.token("est-4")
    credentials = DeviceCredentials(tmp_path / "est-4")
    with pytest.raises(EnrollmentError, match="not an Ed25519 key"):
        enroll(
            credentials,
            server=edge_url,
            ca_pem=pki.ca_bundle.read_bytes(),
            device="est-4",
            token=token,
            enterprise_key="not base64!",
        )
    assert not credentials.directory.exists()
    enroll(
        credentials, server=edge_url, ca_pem=pki.ca_bundle.read_bytes(), device="est-4", token=token
    )
    assert credentials.device() == "est-4"


def test_simplereenroll_over_mutual_tls_then_the_old_certificate_is_refused(
    pki: Pki, edge_url: str, tmp_path: Path
) -> None:
    credentials = _enrolled(pki, edge_url, tmp_path, "est-5")
    old = credentials.certificate()
    stale = tmp_path / "stale"  # a copy of the directory, left behind by the renewal
    stale.mkdir()
    for name in ("device.key", "device.pem", "ca.pem", "edge.json"):
        (stale / name).write_bytes((credentials.directory / name).read_bytes())
    renewed = reenroll(credentials)
    assert renewed.serial_number != old.serial_number
    assert credentials.certificate() == renewed
    with (
        EstClient.of_device(DeviceCredentials(stale)) as est,
        pytest.raises(EdgeRefusedError) as refused,
    ):
        est.simplereenroll(build_csr(_key(), "est-5"))
    assert refused.value.status == 401
    assert "superseded" in refused.value.detail or "revoked" in refused.value.detail
    with pytest.raises(RenewalRefusedError, match="enrol this device again"):
        reenroll(DeviceCredentials(stale))


def test_the_uplink_offers_the_enterprises_key_and_stores_ciphertext(
    pki: Pki, edge_url: str, tmp_path: Path
) -> None:
    credentials = _enrolled(pki, edge_url, tmp_path, "est-6")
    with DeviceUplink.of_device(credentials) as uplink:
        key = uplink.sealing_key()
    assert key == sealing_public_key(pki.enterprise_signer.public_key.raw)
    receipt = upload_readings(credentials, READINGS, now=utcnow())
    assert isinstance(receipt, UploadReceipt)
    (batch,) = [
        b for b in pki.runtime.edge_readings.batches(pki.enterprise) if b.id == receipt.batch
    ]
    assert batch.sha256 == receipt.sha256 and batch.device == "est-6"
    assert READINGS not in batch.ciphertext
    opened = SignedBatch.from_bytes(open_batch(batch.ciphertext, pki.enterprise_signer.seed()))
    assert opened.readings == READINGS


def test_the_uplink_passes_on_the_listeners_refusals(
    pki: Pki, edge_url: str, tmp_path: Path
) -> None:
    credentials = _enrolled(pki, edge_url, tmp_path, "est-7")
    with DeviceUplink.of_device(credentials) as uplink:
        with pytest.raises(EdgeRefusedError) as malformed:
            uplink.upload(b"too short to be a sealed box")
        assert malformed.value.status == 400
        pki.runtime.edge_pki.revoke(
            credentials.certificate().serial_number,
            RevocationReason.KEY_COMPROMISE,
            actor="officer",
            now=utcnow(),
        )
        with pytest.raises(EdgeRefusedError) as revoked:  # the next request, same connection
            uplink.sealing_key()
    assert revoked.value.status == 401
    assert revoked.value.title == "client certificate refused"
    assert "revoked" in revoked.value.detail
    assert _stored(pki, "est-7") == 0


def test_a_sealing_key_other_than_the_pinned_one_uploads_nothing(
    pki: Pki, edge_url: str, tmp_path: Path
) -> None:
    credentials = DeviceCredentials(tmp_path / "est-8")
    enroll(
        credentials,
        server=edge_url,
        ca_pem=pki.ca_bundle.read_bytes(),
        device="est-8",
        token=pki.token("est-8"),
        enterprise_key=Ed25519Signer.generate("elsewhere").public_key.to_base64(),
    )
    with pytest.raises(SealedBatchError, match="not the pinned enterprise key"):
        upload_readings(credentials, READINGS, now=utcnow())
    assert _stored(pki, "est-8") == 0


def test_an_empty_batch_is_not_sent(pki: Pki, edge_url: str, tmp_path: Path) -> None:
    credentials = _enrolled(pki, edge_url, tmp_path, "est-9")
    with pytest.raises(SealedBatchError, match="empty"):
        upload_readings(credentials, b"", now=utcnow())
    assert _stored(pki, "est-9") == 0


def test_the_refusal_keeps_retry_after() -> None:
    from edge_tls._est import refusal

    response = httpx.Response(
        429,
        headers={"Content-Type": "application/problem+json", "Retry-After": "600"},
        content=b'{"title": "upload quota exceeded", "status": 429,'
        b' "detail": "device d1 is past its quota; retry in 600 s"}',
    )
    refused = refusal(response, "upload")
    assert (refused.status, refused.retry_after, refused.title) == (
        429,
        600,
        "upload quota exceeded",
    )
    assert str(refused) == "upload refused (429): device d1 is past its quota; retry in 600 s"
