"""Edge PKI fixtures: a real runtime with a CA, and a real uvicorn TLS listener on a free port."""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.clock import utcnow
from core.keys import Ed25519Signer
from edge_tls import DeviceId, IssuedCertificate
from exchange.app import create_app
from exchange.edge_server import edge_server_config
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.identities import bootstrap
from tests.identities import write_key_file as write_officer_key


@dataclass
class Pki:
    """A runtime with an initialised CA, an enterprise (with key file) and a security officer."""

    runtime: Runtime
    work: Path
    enterprise: str
    enterprise_token: str
    enterprise_key_file: Path
    enterprise_signer: Ed25519Signer
    officer_token: str
    ca_bundle: Path

    def token(
        self, device: str, *, now: datetime | None = None, ttl: timedelta | None = None
    ) -> str:
        return self.runtime.edge_pki.create_token(
            DeviceId(self.enterprise, device), actor=self.enterprise, now=now or utcnow(), ttl=ttl
        ).token

    def device_files(
        self, issued: IssuedCertificate, key: ec.EllipticCurvePrivateKey, name: str
    ) -> tuple[Path, Path]:
        cert = self.work / f"{name}.pem"
        key_path = self.work / f"{name}.key"
        cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert, key_path


def write_key_file(path: Path, signer: Ed25519Signer) -> None:
    """The enterprise key file in the format ``ibx consent keygen`` writes."""
    body = {
        "kind": "ibx.consent.ed25519-private-key.v1",
        "seed": base64.b64encode(signer.seed()).decode(),
        "public_key": signer.public_key.to_base64(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(body))


def make_pki(work: Path, **settings: object) -> Pki:
    work.mkdir(parents=True, exist_ok=True)
    runtime = Runtime.initialise(
        Settings(
            data_dir=work / "data",
            ledger_origin="test.ibx.localhost/ledger",
            **settings,  # type: ignore[arg-type]
        )
    )
    officer, _second = bootstrap(runtime, "officer", "officer-2")
    write_officer_key(work, "officer")  # work/officer.key: signs the officer's revocations
    runtime.edge_pki.init(actor="sysadmin", now=utcnow())
    signer = Ed25519Signer.generate("factory-a")
    issued = runtime.identities.create(
        "factory-a", Role.ENTERPRISE, public_key=signer.public_key, industry="lithium-battery"
    )
    key_file = work / "factory-a.key"
    write_key_file(key_file, signer)
    bundle = work / "ca.pem"
    bundle.write_text(runtime.edge_pki.authority().chain_pem())
    return Pki(runtime, work, "factory-a", issued.token, key_file, signer, officer.token, bundle)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """One CA per test module (CA generation and migrations are the slow part)."""
    built = make_pki(tmp_path_factory.mktemp("pki"))
    yield built
    built.runtime.close()


class RunningServer:
    """A uvicorn server running in a background thread (its own event loop)."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def edge_url(pki: Pki) -> Iterator[str]:
    """``https://127.0.0.1:<port>``: the edge TLS listener on a free port."""
    config = edge_server_config(pki.runtime, host="127.0.0.1", port=0, log_level="warning")
    with RunningServer(config) as running:
        yield f"https://127.0.0.1:{running.port}"


@pytest.fixture(scope="module")
def exchange_url(pki: Pki) -> Iterator[str]:
    """``http://127.0.0.1:<port>``: the main HTTP API on a free port."""
    config = uvicorn.Config(
        create_app(runtime=pki.runtime), host="127.0.0.1", port=0, log_level="warning"
    )
    with RunningServer(config) as running:
        yield f"http://127.0.0.1:{running.port}"


def client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client TLS context trusting the edge CA, optionally with a client certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca_bundle))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr_for(key: ec.EllipticCurvePrivateKey, device: str) -> x509.CertificateSigningRequest:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
        .sign(key, hashes.SHA256())
    )
