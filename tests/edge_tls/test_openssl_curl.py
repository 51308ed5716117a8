"""Independent clients: ``openssl`` makes keys, CSRs and checks; ``curl`` speaks EST over TLS.

Nothing here uses ibx's own client code: if these pass, the listener speaks
RFC 7030, RFC 5280, RFC 6960 and TLS the way other implementations expect.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from core.clock import utcnow
from edge_tls import RevocationReason
from tests.edge_tls.conftest import Pki

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("curl") is None,
    reason="openssl and curl are needed as independent clients",
)


def run(*args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=check, timeout=60
    )


def _csr(work: Path, device: str, name: str) -> None:
    run(
        "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", f"{name}.key", "-subj", f"/CN={device}",
        "-outform", "DER", "-out", f"{name}.csr.der",
        cwd=work,
    )  # fmt: skip
    run("openssl", "base64", "-in", f"{name}.csr.der", "-out", f"{name}.csr.b64", cwd=work)


def _curl(work: Path, url: str, *args: str) -> tuple[int, str]:
    result = run(
        "curl", "-sS", "--cacert", "ca.pem", "-o", "body.out", "-w", "%{http_code}", *args, url,
        cwd=work,
    )  # fmt: skip
    return int(result.stdout), (work / "body.out").read_text(errors="replace")


def _certs_from(work: Path, b64: str, out: str) -> None:
    (work / "resp.b64").write_text(b64)
    run("openssl", "base64", "-d", "-in", "resp.b64", "-out", "resp.p7", cwd=work)
    run("openssl", "pkcs7", "-inform", "DER", "-in", "resp.p7", "-print_certs", "-out", out,
        cwd=work)  # fmt: skip


@pytest.fixture
def work(pki: Pki, tmp_path: Path) -> Path:
    shutil.copy(pki.ca_bundle, tmp_path / "ca.pem")
    issuing = pki.runtime.edge_pki.authority().issuing.public_bytes(Encoding.PEM)
    (tmp_path / "issuing.pem").write_bytes(issuing)
    return tmp_path


def test_enrol_reenrol_and_revoke_with_openssl_and_curl(
    pki: Pki, edge_url: str, exchange_url: str, work: Path
) -> None:
    status, body = _curl(work, edge_url + "/.well-known/est/cacerts")
    assert status == 200
    _certs_from(work, body, "cacerts.pem")
    assert (work / "cacerts.pem").read_text().count("BEGIN CERTIFICATE") == 2

    device = "curl-1"
    _csr(work, device, "first")
    token = pki.token(device)
    url = edge_url + "/.well-known/est/simpleenroll"
    status, body = _curl(
        work, url, "-u", f"{device}:{token}", "-H", "Content-Type: application/pkcs10",
        "--data-binary", "@first.csr.b64",
    )  # fmt: skip
    assert status == 200, body
    _certs_from(work, body, "first.pem")
    verified = run("openssl", "verify", "-CAfile", "ca.pem", "-purpose", "sslclient", "first.pem",
                   cwd=work)  # fmt: skip
    assert "first.pem: OK" in verified.stdout
    text = run("openssl", "x509", "-in", "first.pem", "-noout", "-text", cwd=work).stdout
    assert "URI:spiffe://ibx.localhost/enterprise/factory-a/device/curl-1" in text
    assert "TLS Web Client Authentication" in text
    assert "CA:FALSE" in text

    status, body = _curl(
        work, url, "-u", f"{device}:{token}", "-H", "Content-Type: application/pkcs10",
        "--data-binary", "@first.csr.b64",
    )  # fmt: skip
    assert status == 401
    assert "already used" in body

    _csr(work, device, "second")
    status, body = _curl(
        work, edge_url + "/.well-known/est/simplereenroll", "--cert", "first.pem",
        "--key", "first.key", "-H", "Content-Type: application/pkcs10",
        "--data-binary", "@second.csr.b64",
    )  # fmt: skip
    assert status == 200, body
    _certs_from(work, body, "second.pem")
    status, body = _curl(
        work, edge_url + "/v1/edge/whoami", "--cert", "second.pem", "--key", "second.key"
    )
    assert status == 200
    assert '"device":"curl-1"' in body

    serial = run("openssl", "x509", "-in", "second.pem", "-noout", "-serial", cwd=work)
    serial_hex = serial.stdout.strip().split("=")[1]
    pki.runtime.edge_pki.revoke(
        int(serial_hex, 16), RevocationReason.KEY_COMPROMISE, actor="officer", now=utcnow()
    )
    status, body = _curl(
        work, edge_url + "/v1/edge/whoami", "--cert", "second.pem", "--key", "second.key"
    )
    assert status == 401
    assert "revoked" in body

    status, _ = _curl(work, exchange_url + "/v1/pki/crl")
    assert status == 200
    crl = run("openssl", "crl", "-inform", "DER", "-in", "body.out", "-CAfile", "ca.pem",
              "-noout", "-text", cwd=work)  # fmt: skip
    assert "verify OK" in crl.stderr + crl.stdout
    assert serial_hex.upper().lstrip("0") in crl.stdout.replace(":", "").upper()

    answers = {}
    for name in ("first", "second"):
        ocsp = run(
            "openssl", "ocsp", "-issuer", "issuing.pem", "-cert", f"{name}.pem",
            "-url", exchange_url + "/v1/pki/ocsp", "-CAfile", "ca.pem",
            cwd=work, check=False,
        )  # fmt: skip
        assert "Response verify OK" in ocsp.stderr + ocsp.stdout, ocsp.stderr
        answers[name] = ocsp.stdout
    assert "first.pem: revoked" in answers["first"]  # superseded by the renewal, then the line
    assert "second.pem: revoked" in answers["second"]
    assert "keyCompromise" in answers["second"]


def test_tls_1_1_refused_by_the_listener(edge_url: str, work: Path) -> None:
    port = edge_url.rsplit(":", 1)[1]
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1",
         "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", "ca.pem"],
        cwd=work, input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    good = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-CAfile", "ca.pem",
         "-verify_return_error"],
        cwd=work, input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "Verify return code: 0 (ok)" in good.stdout
    assert "Compression: NONE" in good.stdout


def test_ocsp_by_get(pki: Pki, exchange_url: str) -> None:
    import base64
    from urllib.parse import quote

    import httpx
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp

    from tests.edge_tls.conftest import csr_for, new_key

    ca = pki.runtime.edge_pki.authority()
    token = pki.token("get-1")
    issued = pki.runtime.edge_pki.enroll(
        "get-1", token, csr_for(new_key(), "get-1").public_bytes(Encoding.DER), now=utcnow()
    )
    request = ocsp.OCSPRequestBuilder().add_certificate(
        issued.certificate, ca.issuing, hashes.SHA1()
    )
    der = request.build().public_bytes(Encoding.DER)
    url = exchange_url + "/v1/pki/ocsp/" + quote(base64.b64encode(der).decode(), safe="")
    response = httpx.get(url)
    assert response.headers["content-type"] == "application/ocsp-response"
    assert ocsp.load_der_ocsp_response(response.content).certificate_status is (
        ocsp.OCSPCertStatus.GOOD
    )
