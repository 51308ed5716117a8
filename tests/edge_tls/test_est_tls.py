"""EST and device routes through real TLS handshakes against a real uvicorn listener."""

from __future__ import annotations

import base64
import socket
import ssl
import warnings
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from core.clock import utcnow
from edge_tls import (
    DeviceId,
    IssuedCertificate,
    RevocationReason,
    fingerprint,
    parse_certs_only,
)
from tests.edge_tls.conftest import Pki, client_context, csr_for, new_key

CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"


def _b64_csr(key: object, device: str) -> bytes:
    from cryptography.hazmat.primitives import hashes

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return base64.encodebytes(csr.public_bytes(Encoding.DER))


def _enroll_http(pki: Pki, url: str, device: str) -> tuple[Path, Path, x509.Certificate]:
    key = new_key()
    token = pki.token(device)
    response = httpx.post(
        url + "/.well-known/est/simpleenroll",
        content=_b64_csr(key, device),
        headers={"Content-Type": "application/pkcs10"},
        auth=(device, token),
        verify=client_context(pki),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CERTS_ONLY
    (cert,) = parse_certs_only(base64.b64decode(response.content))
    from edge_tls import IssuedCertificate

    cert_path, key_path = pki.device_files(
        IssuedCertificate(cert, DeviceId(pki.enterprise, device)), key, device
    )
    return cert_path, key_path, cert


def test_cacerts_is_base64_pkcs7_of_the_chain(pki: Pki, edge_url: str) -> None:
    response = httpx.get(edge_url + "/.well-known/est/cacerts", verify=client_context(pki))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/pkcs7-mime")
    certs = parse_certs_only(base64.b64decode(response.content))
    ca = pki.runtime.edge_pki.authority()
    assert {fingerprint(c) for c in certs} == {fingerprint(ca.root), fingerprint(ca.issuing)}


def test_simpleenroll_and_mutual_tls_whoami(pki: Pki, edge_url: str) -> None:
    cert_path, key_path, cert = _enroll_http(pki, edge_url, "tls-1")
    with httpx.Client(verify=client_context(pki, cert_path, key_path)) as client:
        response = client.get(edge_url + "/v1/edge/whoami")
    assert response.status_code == 200, response.text
    assert response.json()["device"] == "tls-1"
    assert response.json()["serial"] == format(cert.serial_number, "x")


ENROL_REFUSALS = {
    "used-token": (401, "already used"),
    "expired-token": (401, "expired"),
    "foreign-token": (401, "another device"),
    "no-credentials": (401, "Basic"),
    "ca-rights": (400, "CA"),
    "other-name": (400, "may only ask"),
    "rsa-1024": (400, "RSA-1024"),
    "bad-signature": (400, "proof of possession"),
}


@pytest.mark.parametrize(("case", "expected"), ENROL_REFUSALS.items(), ids=ENROL_REFUSALS.keys())
def test_simpleenroll_refusals(
    pki: Pki, edge_url: str, case: str, expected: tuple[int, str]
) -> None:
    device = f"refused-{case}"
    key = new_key()
    body = _b64_csr(key, device)
    token = pki.token(device)
    auth: tuple[str, str] | None = (device, token)
    if case == "used-token":
        pki.runtime.edge_pki.enroll(device, token, body, now=utcnow())
    elif case == "expired-token":
        auth = (
            device,
            pki.token(device, now=utcnow() - timedelta(hours=2), ttl=timedelta(hours=1)),
        )
    elif case == "foreign-token":
        auth = ("someone-else", token)
    elif case == "no-credentials":
        auth = None
    elif case == "ca-rights":
        from cryptography.hazmat.primitives import hashes

        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        body = base64.encodebytes(csr.public_bytes(Encoding.DER))
    elif case == "other-name":
        body = _b64_csr(key, "exchange-admin")
    elif case == "rsa-1024":
        body = _b64_csr(rsa.generate_private_key(65537, 1024), device)
    elif case == "bad-signature":
        der = bytearray(base64.b64decode(body))
        der[-1] ^= 1
        body = base64.encodebytes(bytes(der))
    response = httpx.post(
        edge_url + "/.well-known/est/simpleenroll",
        content=body,
        headers={"Content-Type": "application/pkcs10"},
        auth=auth,
        verify=client_context(pki),
    )
    status, words = expected
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text + response.headers.get("www-authenticate", "")
    assert words in text
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")


def test_simplereenroll_over_mutual_tls(pki: Pki, edge_url: str) -> None:
    cert_path, key_path, old = _enroll_http(pki, edge_url, "renewing-1")
    new = new_key()
    with httpx.Client(verify=client_context(pki, cert_path, key_path)) as client:
        response = client.post(
            edge_url + "/.well-known/est/simplereenroll", content=_b64_csr(new, "renewing-1")
        )
        assert response.status_code == 200, response.text
        (cert,) = parse_certs_only(base64.b64decode(response.content))
        assert cert.subject == old.subject
        assert cert.serial_number != old.serial_number
        superseded = client.post(
            edge_url + "/.well-known/est/simplereenroll", content=_b64_csr(new, "renewing-1")
        )
        assert superseded.status_code == 401  # the renewal revoked the old certificate
        assert "revoked" in superseded.text
    new_path, new_key_path = pki.device_files(
        IssuedCertificate(cert, DeviceId(pki.enterprise, "renewing-1")), new, "renewing-1b"
    )
    with httpx.Client(verify=client_context(pki, new_path, new_key_path)) as client:
        other = client.post(
            edge_url + "/.well-known/est/simplereenroll", content=_b64_csr(new, "renewing-2")
        )
        assert other.status_code == 400
    without = httpx.post(
        edge_url + "/.well-known/est/simplereenroll",
        content=_b64_csr(new, "renewing-1"),
        verify=client_context(pki),
    )
    assert without.status_code == 401
    assert "client certificate" in without.text


def test_revoked_certificate_refused_on_the_next_request(pki: Pki, edge_url: str) -> None:
    cert_path, key_path, cert = _enroll_http(pki, edge_url, "stolen-1")
    with httpx.Client(verify=client_context(pki, cert_path, key_path)) as client:
        assert client.get(edge_url + "/v1/edge/whoami").status_code == 200
        pki.runtime.edge_pki.revoke(
            cert.serial_number, RevocationReason.KEY_COMPROMISE, actor="officer", now=utcnow()
        )
        same_connection = client.get(edge_url + "/v1/edge/whoami")
        assert same_connection.status_code == 401
        assert same_connection.headers["content-type"] == "application/problem+json"
        assert "revoked" in same_connection.json()["detail"]
        renew = client.post(
            edge_url + "/.well-known/est/simplereenroll", content=_b64_csr(new_key(), "stolen-1")
        )
        assert renew.status_code == 401
    with httpx.Client(verify=client_context(pki, cert_path, key_path)) as fresh:
        assert fresh.get(edge_url + "/v1/edge/whoami").status_code == 401


def _handshake_refused(pki: Pki, url: str, cert: Path, key: Path) -> None:
    with (
        pytest.raises((httpx.TransportError, ssl.SSLError)),
        httpx.Client(verify=client_context(pki, cert, key)) as client,
    ):
        client.get(url + "/v1/edge/whoami")


def test_expired_certificate_refused(pki: Pki, edge_url: str) -> None:
    past = utcnow() - timedelta(days=8)
    key = new_key()
    token = pki.token("expired-1", now=past)
    issued = pki.runtime.edge_pki.enroll(
        "expired-1", token, csr_for(key, "expired-1").public_bytes(Encoding.DER), now=past
    )
    cert_path, key_path = pki.device_files(issued, key, "expired-1")
    _handshake_refused(pki, edge_url, cert_path, key_path)


def test_certificate_from_another_ca_refused(pki: Pki, edge_url: str) -> None:
    ca = pki.runtime.edge_pki.authority()
    stranger = type(ca).generate(now=utcnow(), config=ca.config).authority
    key = new_key()
    from edge_tls import IssuedCertificate

    device = DeviceId(pki.enterprise, "impostor-1")
    cert = stranger.issue_device(key.public_key(), device, now=utcnow())
    cert_path, key_path = pki.device_files(IssuedCertificate(cert, device), key, "impostor-1")
    _handshake_refused(pki, edge_url, cert_path, key_path)


def test_device_reaches_only_its_own_routes(pki: Pki, edge_url: str) -> None:
    cert_path, key_path, _ = _enroll_http(pki, edge_url, "confined-1")
    with httpx.Client(verify=client_context(pki, cert_path, key_path)) as client:
        for path in ("/v1/ledger/checkpoint", "/healthz", "/v1/edge/readings", "/docs"):
            response = client.get(edge_url + path)
            assert response.status_code in (404, 405), (path, response.status_code)
    no_cert = httpx.get(edge_url + "/v1/edge/whoami", verify=client_context(pki))
    assert no_cert.status_code == 401
    assert no_cert.headers["content-type"] == "application/problem+json"


def test_tls_versions_and_no_compression(pki: Pki, edge_url: str) -> None:
    port = int(edge_url.rsplit(":", 1)[1])
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(pki.ca_bundle)
    old.set_ciphers("DEFAULT@SECLEVEL=0")  # let the client offer TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", port)) as raw,
        old.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = client_context(pki)
        context.minimum_version = context.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() == version.name.replace("_", ".")
            assert tls.compression() is None
            cipher = tls.cipher()
            assert cipher is not None
            assert "GCM" in cipher[0] or "CHACHA20" in cipher[0]


def test_uploads_stop_when_the_enterprise_is_revoked(pki: Pki, edge_url: str) -> None:
    from core.keys import Ed25519Signer
    from edge_tls import IssuedCertificate
    from exchange.identities import Role

    signer = Ed25519Signer.generate("closing-co")
    pki.runtime.identities.create("closing-co", Role.ENTERPRISE, public_key=signer.public_key)
    device = DeviceId("closing-co", "last-1")
    token = pki.runtime.edge_pki.create_token(device, actor="closing-co", now=utcnow()).token
    key = new_key()
    issued = pki.runtime.edge_pki.enroll(
        "last-1", token, csr_for(key, "last-1").public_bytes(Encoding.DER), now=utcnow()
    )
    cert_path, key_path = pki.device_files(IssuedCertificate(issued.certificate, device), key, "l1")
    with httpx.Client(verify=client_context(pki, cert_path, key_path)) as client:
        assert client.get(edge_url + "/v1/edge/sealing-key").status_code == 200
        pki.runtime.identities.revoke("closing-co")
        refused = client.post(edge_url + "/v1/edge/readings", content=b"x" * 100)
    assert refused.status_code == 401
    assert "not an active identity" in refused.json()["detail"]


def test_est_before_pki_init_is_503(tmp_path: Path) -> None:
    import asyncio

    from exchange.edge_server import create_edge_app
    from exchange.runtime import Runtime
    from exchange.settings import Settings

    runtime = Runtime.initialise(Settings(data_dir=tmp_path / "data"))

    async def ask() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_edge_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="https://edge") as client:
            return await client.get("/.well-known/est/cacerts"), await client.get("/v1/pki/crl")

    try:
        cacerts, crl = asyncio.run(ask())
    finally:
        runtime.close()
    assert cacerts.status_code == 503
    assert "ibx pki init" in cacerts.text
    assert crl.status_code == 503
    assert crl.headers["content-type"] == "application/problem+json"
