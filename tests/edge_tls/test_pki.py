"""The CA in process: profiles, keys at rest, tokens, the ledger record, revocation, CRL, OCSP."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from core.clock import utcnow
from core.errors import KeyDecryptionError
from core.keys import MasterKey
from edge_tls import (
    AlreadyRevokedError,
    CaAlreadyInitializedError,
    CertificateExpiredError,
    CertificateRevokedError,
    ClientCertificateMissingError,
    DeviceId,
    EdgePki,
    IssuedCertificate,
    RevocationReason,
    SerialNotFoundError,
    TokenExpiredError,
    TokenUnknownError,
    TokenUsedError,
    UnknownCertificateError,
    fingerprint,
)
from edge_tls._tables import AuthorityRow
from tests.edge_tls.conftest import Pki, csr_for, new_key


def _enroll(pki: Pki, device: str) -> tuple[IssuedCertificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    now = utcnow()
    token = pki.token(device, now=now)
    body = csr_for(key, device).public_bytes(Encoding.DER)
    return pki.runtime.edge_pki.enroll(device, token, body, now=now), key


def test_device_certificate_profile(pki: Pki) -> None:
    issued, _key = _enroll(pki, "profile-1")
    cert = issued.certificate
    ca = pki.runtime.edge_pki.authority()
    cert.verify_directly_issued_by(ca.issuing)
    ca.issuing.verify_directly_issued_by(ca.root)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://ibx.localhost/enterprise/factory-a/device/profile-1"
    ]
    assert len(list(sans)) == 1
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "factory-a"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=7) <= lifetime <= timedelta(days=7, minutes=5)
    assert isinstance(ca.issuing.public_key(), type(ca.root.public_key()))


def test_ca_keys_are_encrypted_at_rest(pki: Pki) -> None:
    ca = pki.runtime.edge_pki.authority()
    with pki.runtime.db.read() as session:
        blobs = {
            row.name: row.encrypted_key for row in session.execute(select(AuthorityRow)).scalars()
        }
    assert set(blobs) == {"root", "issuing"}
    raw = ca.issuing_key.private_numbers().private_value.to_bytes(32, "big")
    for blob in blobs.values():
        assert raw not in blob
    other = EdgePki(
        pki.runtime.db,
        MasterKey(bytes(range(32))),
        pki.runtime.ledger,
        pki.runtime.edge_pki.config,
    )
    with pytest.raises(KeyDecryptionError):
        other.authority()


def test_init_twice_is_refused(pki: Pki) -> None:
    with pytest.raises(CaAlreadyInitializedError):
        pki.runtime.edge_pki.init(actor="sysadmin", now=utcnow())


def test_issuance_is_on_the_ledger_with_serial_and_fingerprint(pki: Pki) -> None:
    issued, _key = _enroll(pki, "ledgered-1")
    entries = pki.runtime.ledger.entries(0, 1000)
    payloads = [
        json.loads(e.leaf_input)
        for e in entries
        if json.loads(e.leaf_input).get("type") == "edge.certificate.issue"
    ]
    match = [p for p in payloads if p["payload"].get("serial") == format(issued.serial, "x")]
    assert match, payloads[-1:]
    assert match[0]["payload"]["fingerprint"] == fingerprint(issued.certificate)


def test_token_is_one_time(pki: Pki) -> None:
    token = pki.token("once-1")
    body = csr_for(new_key(), "once-1").public_bytes(Encoding.DER)
    pki.runtime.edge_pki.enroll("once-1", token, body, now=utcnow())
    with pytest.raises(TokenUsedError):
        pki.runtime.edge_pki.enroll("once-1", token, body, now=utcnow())


def test_expired_token_with_time_passed_in(pki: Pki) -> None:
    now = utcnow()
    token = pki.token("late-1", now=now, ttl=timedelta(minutes=30))
    body = csr_for(new_key(), "late-1").public_bytes(Encoding.DER)
    with pytest.raises(TokenExpiredError):
        pki.runtime.edge_pki.enroll("late-1", token, body, now=now + timedelta(minutes=31))


def test_foreign_and_unknown_tokens(pki: Pki) -> None:
    token = pki.token("owner-1")
    body = csr_for(new_key(), "thief-1").public_bytes(Encoding.DER)
    with pytest.raises(TokenUnknownError):
        pki.runtime.edge_pki.enroll("thief-1", token, body, now=utcnow())
    with pytest.raises(TokenUnknownError):
        pki.runtime.edge_pki.enroll("owner-1", "ibxb_" + "A" * 43, body, now=utcnow())


def test_bad_csr_does_not_spend_the_token(pki: Pki) -> None:
    token = pki.token("retry-1")
    wrong = csr_for(new_key(), "someone-else").public_bytes(Encoding.DER)
    with pytest.raises(Exception, match="may only ask"):
        pki.runtime.edge_pki.enroll("retry-1", token, wrong, now=utcnow())
    right = csr_for(new_key(), "retry-1").public_bytes(Encoding.DER)
    pki.runtime.edge_pki.enroll("retry-1", token, right, now=utcnow())


def test_authenticate_checks_expiry_with_time_passed_in(pki: Pki) -> None:
    issued, _ = _enroll(pki, "aging-1")
    der = issued.certificate.public_bytes(Encoding.DER)
    edge = pki.runtime.edge_pki
    assert edge.authenticate(der, now=utcnow()).device == DeviceId("factory-a", "aging-1")
    with pytest.raises(CertificateExpiredError):
        edge.authenticate(der, now=utcnow() + timedelta(days=8))
    with pytest.raises(ClientCertificateMissingError):
        edge.authenticate(None, now=utcnow())


def test_renewal_keeps_identity_and_records_previous_serial(pki: Pki) -> None:
    issued, _ = _enroll(pki, "renew-1")
    edge = pki.runtime.edge_pki
    peer = edge.authenticate(issued.certificate.public_bytes(Encoding.DER), now=utcnow())
    renewed = edge.reenroll(
        peer, csr_for(new_key(), "renew-1").public_bytes(Encoding.DER), now=utcnow()
    )
    assert renewed.device == peer.device
    assert renewed.serial != issued.serial
    last = json.loads(pki.runtime.ledger.entries(0, 10_000)[-1].leaf_input)
    assert last["type"] == "edge.certificate.renew"
    assert last["payload"]["previous_serial"] == format(issued.serial, "x")


def test_revocation_counts_at_once_and_appears_in_crl_and_ocsp(pki: Pki) -> None:
    issued, _ = _enroll(pki, "lost-1")
    good, _ = _enroll(pki, "kept-1")
    edge = pki.runtime.edge_pki
    der = issued.certificate.public_bytes(Encoding.DER)
    edge.revoke(issued.serial, RevocationReason.KEY_COMPROMISE, actor="officer", now=utcnow())
    with pytest.raises(CertificateRevokedError):
        edge.authenticate(der, now=utcnow())
    with pytest.raises(AlreadyRevokedError):
        edge.revoke(issued.serial, RevocationReason.UNSPECIFIED, actor="officer", now=utcnow())
    with pytest.raises(SerialNotFoundError):
        edge.revoke(12345, RevocationReason.UNSPECIFIED, actor="officer", now=utcnow())

    ca = edge.authority()
    crl = x509.load_der_x509_crl(edge.crl(now=utcnow()))
    assert crl.is_signature_valid(ca.issuing_key.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(issued.serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    assert crl.get_revoked_certificate_by_serial_number(good.serial) is None

    def ask(cert: x509.Certificate) -> ocsp.OCSPResponse:
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, ca.issuing, hashes.SHA256())
        der_request = request.build().public_bytes(Encoding.DER)
        return ocsp.load_der_ocsp_response(edge.ocsp(der_request, now=utcnow()))

    revoked = ask(issued.certificate)
    assert revoked.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert revoked.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason is x509.ReasonFlags.key_compromise
    issuer_key = ca.issuing.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
    issuer_key.verify(revoked.signature, revoked.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    assert ask(good.certificate).certificate_status is ocsp.OCSPCertStatus.GOOD


def test_ocsp_unknown_unauthorized_and_malformed(pki: Pki) -> None:
    edge = pki.runtime.edge_pki
    ca = edge.authority()
    stranger = type(ca).generate(now=utcnow(), config=edge.config).authority
    foreign_cert = stranger.issue_device(new_key().public_key(), DeviceId("x", "y"), now=utcnow())
    request = ocsp.OCSPRequestBuilder().add_certificate(
        foreign_cert, stranger.issuing, hashes.SHA1()
    )
    answer = ocsp.load_der_ocsp_response(
        edge.ocsp(request.build().public_bytes(Encoding.DER), now=utcnow())
    )
    assert answer.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    unknown_cert = ca.issue_device(new_key().public_key(), DeviceId("x", "y"), now=utcnow())
    request = ocsp.OCSPRequestBuilder().add_certificate(unknown_cert, ca.issuing, hashes.SHA1())
    answer = ocsp.load_der_ocsp_response(
        edge.ocsp(request.build().public_bytes(Encoding.DER), now=utcnow())
    )
    assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    garbage = ocsp.load_der_ocsp_response(edge.ocsp(b"\x30\x03junk", now=utcnow()))
    assert garbage.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_certificate_from_another_ca_is_unknown(pki: Pki) -> None:
    edge = pki.runtime.edge_pki
    stranger = type(edge.authority()).generate(now=utcnow(), config=edge.config).authority
    cert = stranger.issue_device(new_key().public_key(), DeviceId("factory-a", "x"), now=utcnow())
    with pytest.raises(UnknownCertificateError):
        edge.authenticate(cert.public_bytes(Encoding.DER), now=utcnow())


def test_secrets_never_in_repr(pki: Pki) -> None:
    token = pki.runtime.edge_pki.create_token(
        DeviceId("factory-a", "repr-1"), actor="factory-a", now=utcnow()
    )
    assert token.token not in repr(token)
    assert "PRIVATE" not in repr(pki.runtime.edge_pki.authority())
