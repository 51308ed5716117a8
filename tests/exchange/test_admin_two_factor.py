"""Administrators authenticate with two factors: their token AND their own client certificate.

A real ``ibx serve`` over TLS; real certificates from the deployment CA. Each
refusal is an attack that must fail: no certificate, another administrator's,
a revoked or superseded one, an edge device's (same CA), one from another CA,
and a valid one after its identity was revoked.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.clock import utcnow
from edge_tls import DeviceId
from exchange.deployment_ca import ensure_deployment_ca
from exchange.error_table import ExitCode
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import admin_signer, bootstrap, register, sign_duty, write_key_file
from tests.in_process import Done, ibx
from tests.server import ExchangeUrl, running_exchange


def _ibx(*args: str, env: dict[str, str] | None = None) -> Done:
    """``ibx`` through its entry point in this process, ``env`` its only ``IBX_*`` variables
    (the exchange it talks to is a real ``ibx serve``)."""
    return ibx(*args, env=env)


def _write_pair(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return directory / f"{name}.crt"


def _foreign_certificate(directory: Path, name: str) -> Path:
    """A client certificate for ``name`` from a CA the exchange does not trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return _write_pair(directory, name, cert, key)


@dataclass
class Deployment:
    data: Path
    runtime: Runtime
    base: ExchangeUrl
    certs: Path
    tokens: dict[str, str]
    cli_out: str
    """What ``ibx identity create --cert-out`` printed for the officer."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("two-factor")
    data = initialised(work / "data")
    certs = work / "certs"
    runtime = Runtime(Settings(data_dir=data))
    _root, second = bootstrap(runtime, "officer-0", "officer-2")
    officer_key = write_key_file(work, "officer-0")
    created = _ibx(
        "--data-dir", str(data), "identity", "create", "--role", "security_officer",
        "--name", "officer-1", "--public-key", admin_signer("officer-1").public_key.to_base64(),
        "--key", str(officer_key), "--cert-out", str(certs),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    tokens = {"officer-1": created.stdout.strip().splitlines()[-1], "officer-2": second.token}
    now = utcnow()
    runtime.admin_certificates.issue("officer-2", actor="sysadmin", now=now).write(certs)
    for name, role in (
        ("auditor-1", Role.AUDITOR),
        ("sysadmin-1", Role.SYSADMIN),
        ("leaver", Role.AUDITOR),
    ):
        tokens[name] = register(runtime, name, role, by="officer-0").token
        runtime.admin_certificates.issue(name, actor="sysadmin", now=now).write(certs)
    tokens["factory-a"] = runtime.identities.create(
        "factory-a", Role.ENTERPRISE, industry="lithium-battery"
    ).token
    # an edge device of factory-a named like the officer: same CA, another profile
    authority = ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=now).authority
    assert authority is not None
    device_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "officer-1")]))
        .sign(device_key, hashes.SHA256())
    )
    token = runtime.edge_pki.create_token(
        DeviceId("factory-a", "officer-1"), actor="factory-a", now=now
    ).token
    issued = runtime.edge_pki.enroll(
        "officer-1", token, csr.public_bytes(serialization.Encoding.PEM), now=now
    )
    _write_pair(work / "device", "officer-1", issued.certificate, device_key)
    with running_exchange(data) as base:
        yield Deployment(data, runtime, base, certs, tokens, created.stdout)
    runtime.close()


def _me(deployment: Deployment, name: str, cert: Path | None) -> httpx.Response:
    with deployment.base.client(deployment.tokens[name], client_cert=cert) as client:
        return client.get("/v1/me")


def test_create_cert_out_writes_a_private_key_and_records_the_issuance(
    deployment: Deployment,
) -> None:
    crt, key = deployment.certs / "officer-1.crt", deployment.certs / "officer-1.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "client certificate" in deployment.cli_out and str(crt) in deployment.cli_out
    leaf = x509.load_pem_x509_certificates(crt.read_bytes())[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://ibx.localhost/identity/officer-1"
    ]
    issued = [
        entry
        for entry in deployment.runtime.ledger.entries(0, deployment.runtime.ledger.size())
        if entry.type == "identity.certificate.issue"
    ]
    assert {e.payload["name"] for e in issued} >= {"officer-1", "officer-2", "auditor-1"}
    assert all("PRIVATE KEY" not in json.dumps(e.payload) for e in issued)


@pytest.mark.parametrize("name", ["officer-1", "auditor-1", "sysadmin-1"])
def test_an_administrator_without_its_certificate_is_refused_401(
    deployment: Deployment, name: str
) -> None:
    answer = _me(deployment, name, None)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert "client certificate" in answer.json()["detail"]


@pytest.mark.parametrize("name", ["officer-1", "auditor-1", "sysadmin-1"])
def test_an_administrator_with_its_own_certificate_is_in(deployment: Deployment, name: str) -> None:
    answer = _me(deployment, name, deployment.certs / f"{name}.crt")
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == name


def test_another_administrators_certificate_is_refused(deployment: Deployment) -> None:
    assert _me(deployment, "officer-1", deployment.certs / "officer-2.crt").status_code == 401
    assert _me(deployment, "auditor-1", deployment.certs / "officer-1.crt").status_code == 401


def test_an_edge_device_certificate_of_the_same_ca_and_name_is_refused(
    deployment: Deployment,
) -> None:
    device_cert = deployment.certs.parent / "device" / "officer-1.crt"
    assert _me(deployment, "officer-1", device_cert).status_code == 401


def test_a_certificate_from_another_ca_fails_the_handshake(
    deployment: Deployment, tmp_path: Path
) -> None:
    foreign = _foreign_certificate(tmp_path, "officer-1")
    with pytest.raises(
        httpx.TransportError
    ):  # TLS 1.3: the alert comes after the client's Finished
        _me(deployment, "officer-1", foreign)
    done = _ibx(
        "me", *deployment.base.cli_args(), "--client-cert", str(foreign),
        "--client-key", str(foreign.with_suffix(".key")),
        env={"IBX_TOKEN": deployment.tokens["officer-1"]},
    )  # fmt: skip
    assert done.returncode == ExitCode.ERROR
    assert "refuses a --client-cert its CA did not issue" in done.stderr


def test_a_revoked_certificate_is_refused_at_once(deployment: Deployment) -> None:
    cert = deployment.certs / "officer-2.crt"
    assert _me(deployment, "officer-2", cert).status_code == 200
    unsigned = _ibx("--data-dir", str(deployment.data), "identity", "cert-revoke", "officer-2")
    assert unsigned.returncode == ExitCode.USAGE and "--key" in unsigned.stderr
    done = _ibx(
        "--data-dir", str(deployment.data), "identity", "cert-revoke", "officer-2",
        "--key", str(deployment.data.parent / "officer-0.key"), "--reason", "key-compromise",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _me(deployment, "officer-2", cert).status_code == 401


def test_a_reissued_certificate_supersedes_the_previous_one(
    deployment: Deployment, tmp_path: Path
) -> None:
    old = tmp_path / "old.crt"
    (deployment.certs / "auditor-1.crt").replace(old)
    (deployment.certs / "auditor-1.key").replace(old.with_suffix(".key"))
    done = _ibx(
        "--data-dir", str(deployment.data), "identity", "cert", "auditor-1",
        "--out", str(deployment.certs), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["superseded"] and body["certificate"] == str(deployment.certs / "auditor-1.crt")
    assert _me(deployment, "auditor-1", old).status_code == 401
    assert _me(deployment, "auditor-1", deployment.certs / "auditor-1.crt").status_code == 200


def test_the_certificate_of_a_revoked_identity_is_refused(deployment: Deployment) -> None:
    cert = deployment.certs / "leaver.crt"
    assert _me(deployment, "leaver", cert).status_code == 200
    duty = sign_duty(
        deployment.runtime, "officer-0", "identity.revoke", "leaver", {"role": "auditor"}
    )
    deployment.runtime.identities.revoke("leaver", duty=duty)
    assert _me(deployment, "leaver", cert).status_code == 401
    assert not deployment.runtime.admin_certificates.belongs_to(
        x509.load_pem_x509_certificates(cert.read_bytes())[0].public_bytes(
            serialization.Encoding.DER
        ),
        "leaver",
    )


def test_a_non_administrator_needs_no_certificate(deployment: Deployment) -> None:
    assert _me(deployment, "factory-a", None).status_code == 200


def test_the_cli_presents_the_certificate_with_client_cert(deployment: Deployment) -> None:
    base = deployment.base.cli_args()
    env = {"IBX_TOKEN": deployment.tokens["officer-1"]}
    cert = deployment.certs / "officer-1.crt"
    without = _ibx("me", *base, env=env)
    assert without.returncode == ExitCode.UNAUTHENTICATED
    assert "client certificate" in without.stderr and len(without.stderr.splitlines()) == 1
    assert deployment.tokens["officer-1"] not in without.stdout + without.stderr
    with_cert = _ibx(
        "me", *base, "--client-cert", str(cert), "--client-key", str(cert.with_suffix(".key")),
        "--json", env=env,
    )  # fmt: skip
    assert with_cert.returncode == 0, with_cert.stderr
    assert json.loads(with_cert.stdout)["role"] == "security_officer"


def test_only_administrators_get_client_certificates(
    deployment: Deployment, tmp_path: Path
) -> None:
    done = _ibx(
        "--data-dir", str(deployment.data), "identity", "create", "--role", "enterprise",
        "--name", "factory-b", "--cert-out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == ExitCode.USAGE
    assert "only administrators" in done.stderr
    assert not list(tmp_path.iterdir())
    refused = _ibx("--data-dir", str(deployment.data), "identity", "cert", "factory-a",
                   "--out", str(tmp_path))  # fmt: skip
    assert refused.returncode != 0 and "only administrators" in refused.stderr
