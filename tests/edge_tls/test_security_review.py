"""Security review: attacks on the edge listener that must be refused, through real TLS."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner

from core.clock import utcnow
from core.keys import Ed25519Signer
from edge_tls import DeviceId, IssuedCertificate, seal_batch, sealing_public_key, sign_batch
from exchange.cli import app
from exchange.identities import Role
from tests.edge_tls.conftest import Pki, client_context, csr_for, new_key


def test_devices_and_tokens_of_a_revoked_enterprise_are_refused(pki: Pki, edge_url: str) -> None:
    """Revoking an enterprise identity ends its devices' access: no route, no renewal,
    and a bootstrap token it created before the revocation no longer enrols."""
    signer = Ed25519Signer.generate("gone-co")
    pki.runtime.identities.create("gone-co", Role.ENTERPRISE, public_key=signer.public_key)
    device = DeviceId("gone-co", "dev-1")
    token = pki.runtime.edge_pki.create_token(device, actor="gone-co", now=utcnow()).token
    pending = pki.runtime.edge_pki.create_token(
        DeviceId("gone-co", "dev-2"), actor="gone-co", now=utcnow()
    ).token
    key = new_key()
    issued = pki.runtime.edge_pki.enroll(
        "dev-1", token, csr_for(key, "dev-1").public_bytes(Encoding.DER), now=utcnow()
    )
    cert_path, key_path = pki.device_files(IssuedCertificate(issued.certificate, device), key, "g1")
    renew_csr = base64.encodebytes(csr_for(new_key(), "dev-1").public_bytes(Encoding.DER))
    with httpx.Client(verify=client_context(pki, cert_path, key_path)) as client:
        assert client.get(edge_url + "/v1/edge/whoami").status_code == 200
        pki.runtime.identities.revoke("gone-co")
        whoami = client.get(edge_url + "/v1/edge/whoami")
        sealing = client.get(edge_url + "/v1/edge/sealing-key")
        upload = client.post(edge_url + "/v1/edge/readings", content=b"x" * 100)
        renew = client.post(edge_url + "/.well-known/est/simplereenroll", content=renew_csr)
    for refused in (whoami, sealing, upload):
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "not an active identity" in refused.json()["detail"]
    assert renew.status_code == 401, renew.text
    assert "not an active identity" in renew.text
    before = len(pki.runtime.edge_pki.certificates(enterprise="gone-co"))
    enrol = httpx.post(
        edge_url + "/.well-known/est/simpleenroll",
        content=base64.encodebytes(csr_for(new_key(), "dev-2").public_bytes(Encoding.DER)),
        headers={"Content-Type": "application/pkcs10"},
        auth=("dev-2", pending),
        verify=client_context(pki),
    )
    assert enrol.status_code == 401, enrol.text
    assert "not an active identity" in enrol.text
    assert len(pki.runtime.edge_pki.certificates(enterprise="gone-co")) == before


def test_pulled_plaintext_readings_are_private_to_the_user(pki: Pki, tmp_path: Path) -> None:
    """The enterprise's opened readings are plaintext business data: the CSV that
    ``ibx edge readings pull`` creates is mode 0600, like the key files."""
    token = pki.token("private-1")
    key = new_key()
    issued = pki.runtime.edge_pki.enroll(
        "private-1", token, csr_for(key, "private-1").public_bytes(Encoding.DER), now=utcnow()
    )
    peer = pki.runtime.edge_pki.authenticate(
        issued.certificate.public_bytes(Encoding.DER), now=utcnow()
    )
    signed = sign_batch(b"line,kwh\ncathode,980\n", key, issued.certificate, now=utcnow())
    sealed = seal_batch(signed.to_bytes(), sealing_public_key(pki.enterprise_signer.public_key.raw))
    pki.runtime.edge_readings.store(peer, sealed, now=utcnow())
    out = tmp_path / "opened.csv"
    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(pki.runtime.settings.data_dir),
            "edge",
            "readings",
            "pull",
            "--token",
            pki.enterprise_token,
            "--key",
            str(pki.enterprise_key_file),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "cathode" in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "path", ["/openapi.json", "/docs", "/healthz", "/v1/ledger/entries", "/v1/edge/tokens"]
)
def test_the_edge_port_serves_nothing_but_est_pki_and_device_routes(
    pki: Pki, edge_url: str, path: str
) -> None:
    response = httpx.get(edge_url + path, verify=client_context(pki))
    assert response.status_code in (404, 405), response.text
