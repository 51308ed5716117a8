"""Issue 9 (edge): a revocation covers the device's whole line, a renewal supersedes.

Every certificate is enrolled and renewed over the real edge TLS listener, and
refused (or not) on a real mutual-TLS request; the CRL and OCSP are read back
and must agree with each other and with what the listener refuses.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from core.clock import utcnow
from edge_tls import (
    AlreadyRevokedError,
    CertificateRevokedError,
    DeviceId,
    IssuedCertificate,
    RevocationReason,
    parse_certs_only,
)
from tests.edge_tls.conftest import Pki, client_context, csr_for, new_key


@dataclass(frozen=True)
class Held:
    """One certificate of a device's line, with its key files."""

    cert: x509.Certificate
    cert_path: Path
    key_path: Path


def _b64_csr(key: ec.EllipticCurvePrivateKey, device: str) -> bytes:
    return base64.encodebytes(csr_for(key, device).public_bytes(Encoding.DER))


def _hold(pki: Pki, device: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Held:
    name = f"{device}-{cert.serial_number:x}"[:60]
    paths = pki.device_files(IssuedCertificate(cert, DeviceId(pki.enterprise, device)), key, name)
    return Held(cert, *paths)


def _enrol(pki: Pki, url: str, device: str) -> Held:
    key = new_key()
    response = httpx.post(
        url + "/.well-known/est/simpleenroll",
        content=_b64_csr(key, device),
        headers={"Content-Type": "application/pkcs10"},
        auth=(device, pki.token(device)),
        verify=client_context(pki),
    )
    assert response.status_code == 200, response.text
    (cert,) = parse_certs_only(base64.b64decode(response.content))
    return _hold(pki, device, cert, key)


def _renew(pki: Pki, url: str, device: str, held: Held) -> Held:
    key = new_key()
    with httpx.Client(verify=client_context(pki, held.cert_path, held.key_path)) as client:
        response = client.post(
            url + "/.well-known/est/simplereenroll", content=_b64_csr(key, device)
        )
    assert response.status_code == 200, response.text
    (cert,) = parse_certs_only(base64.b64decode(response.content))
    return _hold(pki, device, cert, key)


def _whoami(pki: Pki, url: str, held: Held) -> httpx.Response:
    with httpx.Client(verify=client_context(pki, held.cert_path, held.key_path)) as client:
        return client.get(url + "/v1/edge/whoami")


def _crl_reasons(pki: Pki) -> dict[int, x509.ReasonFlags]:
    edge = pki.runtime.edge_pki
    crl = x509.load_der_x509_crl(edge.crl(now=utcnow()))
    assert crl.is_signature_valid(edge.authority().issuing_key.public_key())
    return {
        entry.serial_number: entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        for entry in crl
    }


def _ocsp(pki: Pki, cert: x509.Certificate) -> ocsp.OCSPResponse:
    edge = pki.runtime.edge_pki
    request = ocsp.OCSPRequestBuilder().add_certificate(
        cert, edge.authority().issuing, hashes.SHA256()
    )
    return ocsp.load_der_ocsp_response(
        edge.ocsp(request.build().public_bytes(Encoding.DER), now=utcnow())
    )


def _assert_crl_and_ocsp_agree(pki: Pki, certs: list[x509.Certificate]) -> None:
    listed = _crl_reasons(pki)
    for cert in certs:
        answer = _ocsp(pki, cert)
        if cert.serial_number in listed:
            assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
            assert answer.revocation_reason is listed[cert.serial_number]
        else:
            assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_a_renewal_supersedes_the_certificate_it_replaces(pki: Pki, edge_url: str) -> None:
    """Renewing revokes the old certificate (reason superseded): it is refused on its next
    request, cannot renew again (no second branch of the line), and CRL and OCSP say so."""
    first = _enrol(pki, edge_url, "line-renew")
    with httpx.Client(verify=client_context(pki, first.cert_path, first.key_path)) as client:
        assert client.get(edge_url + "/v1/edge/whoami").status_code == 200
        second = _renew(pki, edge_url, "line-renew", first)
        refused = client.get(edge_url + "/v1/edge/whoami")  # same keep-alive connection
        fork = client.post(
            edge_url + "/.well-known/est/simplereenroll",
            content=_b64_csr(new_key(), "line-renew"),
        )
    assert refused.status_code == 401, refused.text
    assert "revoked" in refused.json()["detail"]
    assert fork.status_code == 401, fork.text
    assert _whoami(pki, edge_url, second).status_code == 200
    reasons = _crl_reasons(pki)
    assert reasons[first.cert.serial_number] is x509.ReasonFlags.superseded
    assert second.cert.serial_number not in reasons
    _assert_crl_and_ocsp_agree(pki, [first.cert, second.cert])


def test_enrolling_the_same_device_again_supersedes_its_certificate(
    pki: Pki, edge_url: str
) -> None:
    """A second bootstrap enrolment of one device identity leaves one valid certificate."""
    old = _enrol(pki, edge_url, "line-reset")
    new = _enrol(pki, edge_url, "line-reset")
    assert _whoami(pki, edge_url, old).status_code == 401
    assert _whoami(pki, edge_url, new).status_code == 200
    assert _crl_reasons(pki)[old.cert.serial_number] is x509.ReasonFlags.superseded


@pytest.mark.parametrize("which", [0, 1, 2], ids=["first", "middle", "newest"])
def test_revoking_any_certificate_revokes_the_whole_line(
    pki: Pki, edge_url: str, which: int
) -> None:
    """Enrol, renew twice, revoke one of the three: all three are refused on the next
    request over TLS, all are on the CRL and revoked in OCSP, with the same reason."""
    device = f"line-{which}"
    line = [_enrol(pki, edge_url, device)]
    line.append(_renew(pki, edge_url, device, line[-1]))
    line.append(_renew(pki, edge_url, device, line[-1]))
    newest = line[-1]
    with httpx.Client(verify=client_context(pki, newest.cert_path, newest.key_path)) as client:
        assert client.get(edge_url + "/v1/edge/whoami").status_code == 200
        revocation = pki.runtime.edge_pki.revoke(
            line[which].cert.serial_number,
            RevocationReason.KEY_COMPROMISE,
            actor="officer",
            now=utcnow(),
        )
        after = client.get(edge_url + "/v1/edge/whoami")
        renew = client.post(
            edge_url + "/.well-known/est/simplereenroll", content=_b64_csr(new_key(), device)
        )
    assert after.status_code == 401, after.text
    assert renew.status_code == 401, renew.text
    assert {entry.serial for entry in revocation.revoked} == {h.cert.serial_number for h in line}
    for held in line:
        refused = _whoami(pki, edge_url, held)
        assert refused.status_code == 401, refused.text
        assert "revoked" in refused.json()["detail"]
    reasons = _crl_reasons(pki)
    for held in line:  # key compromise of one key taints the whole line
        assert reasons[held.cert.serial_number] is x509.ReasonFlags.key_compromise
    _assert_crl_and_ocsp_agree(pki, [h.cert for h in line])
    with pytest.raises(AlreadyRevokedError):
        pki.runtime.edge_pki.revoke(
            line[0].cert.serial_number, RevocationReason.KEY_COMPROMISE, actor="o", now=utcnow()
        )


def test_a_revocation_between_authentication_and_renewal_wins(pki: Pki) -> None:
    """The renewal re-checks the presented certificate inside its transaction: a
    revocation that lands after the request authenticated leaves no new certificate."""
    edge = pki.runtime.edge_pki
    key = new_key()
    issued = edge.enroll(
        "line-race",
        pki.token("line-race"),
        csr_for(key, "line-race").public_bytes(Encoding.DER),
        now=utcnow(),
    )
    peer = edge.authenticate(issued.certificate.public_bytes(Encoding.DER), now=utcnow())
    edge.revoke(issued.serial, RevocationReason.KEY_COMPROMISE, actor="officer", now=utcnow())
    before = len(edge.certificates(enterprise=pki.enterprise))
    with pytest.raises(CertificateRevokedError):
        edge.reenroll(
            peer, csr_for(new_key(), "line-race").public_bytes(Encoding.DER), now=utcnow()
        )
    assert len(edge.certificates(enterprise=pki.enterprise)) == before


def test_a_revocation_leaves_other_devices_alone(pki: Pki, edge_url: str) -> None:
    mine = _enrol(pki, edge_url, "line-mine")
    other = _enrol(pki, edge_url, "line-other")
    pki.runtime.edge_pki.revoke(
        mine.cert.serial_number, RevocationReason.CESSATION_OF_OPERATION, actor="o", now=utcnow()
    )
    assert _whoami(pki, edge_url, other).status_code == 200
    _assert_crl_and_ocsp_agree(pki, [mine.cert, other.cert])
