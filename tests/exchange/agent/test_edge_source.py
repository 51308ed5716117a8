"""Edge readings as a source: sealed batches opened with the enterprise's key, device signatures
checked against the CA bundle the agent pinned (a real ``ibx serve`` with its edge listener)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from consent import EnterpriseKey
from core.clock import utcnow
from edge_tls import DeviceCredentials, enroll, upload_readings
from exchange.agent import EdgeSource, FieldReader, SourceError
from exchange.client import ExchangeClient
from exchange.deployment_ca import ensure_deployment_ca
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.server import ExchangeUrl, free_port, running_exchange

LB = "lithium-battery"


@dataclass
class Edge:
    url: ExchangeUrl
    token: str
    key: EnterpriseKey

    def client(self) -> ExchangeClient:
        return ExchangeClient.remote(self.url.url, token=self.token, ca_bundle=self.url.ca_bundle)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    root = tmp_path_factory.mktemp("agent-edge")
    data = initialised(root / "data")
    runtime = Runtime(Settings(data_dir=data))
    try:
        key = EnterpriseKey.generate(root / "kiln.key")
        token = runtime.identities.create(
            "kiln-co", Role.ENTERPRISE, industry=LB, public_key=key.signer.public_key
        ).token
        ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
    finally:
        runtime.close()
    edge_port = free_port()
    with running_exchange(data, "--edge-port", str(edge_port)) as url:
        made = Edge(url, token, key)
        with made.client() as client:
            issued = client.post("/v1/edge/tokens", {"device": "kiln-1"})
        assert url.ca_bundle is not None
        device = DeviceCredentials(root / "kiln-1")
        enroll(
            device,
            server=f"https://127.0.0.1:{edge_port}",
            ca_pem=url.ca_bundle.read_bytes(),
            device="kiln-1",
            token=issued["token"],
        )
        upload_readings(device, b"line,energy_kwh\nk1,100.5\nk2,101.5\n", now=utcnow())
        upload_readings(device, b"line,energy_kwh\nk3,7.25\n", now=utcnow())
        upload_readings(device, b"line,other\nk4,1\n", now=utcnow())  # lacks the column
        yield made


def _stranger_ca() -> list[x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the deployment CA")])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return [cert]


def test_edge_batches_are_opened_and_verified_under_the_pinned_ca(edge: Edge) -> None:
    assert edge.url.ca_bundle is not None
    trust = x509.load_pem_x509_certificates(edge.url.ca_bundle.read_bytes())
    skipped: list[tuple[int, str]] = []
    with edge.client() as client:
        source = EdgeSource(
            client,
            "kiln-co",
            edge.key.signer.seed(),
            trust,
            skipped=lambda batch, why: skipped.append((batch, why)),
        )
        assert FieldReader(source).numbers("energy_kwh") == (100.5, 101.5, 7.25)
    assert len(skipped) == 1 and "no column energy_kwh" in skipped[0][1]


def test_edge_batches_under_another_ca_are_not_used(edge: Edge) -> None:
    skipped: list[tuple[int, str]] = []
    with edge.client() as client:
        source = EdgeSource(
            client,
            "kiln-co",
            edge.key.signer.seed(),
            _stranger_ca(),
            skipped=lambda batch, why: skipped.append((batch, why)),
        )
        with pytest.raises(SourceError, match="edge readings"):
            FieldReader(source).numbers("energy_kwh")


def test_edge_batches_do_not_open_under_another_enterprise_key(edge: Edge, tmp_path: Path) -> None:
    assert edge.url.ca_bundle is not None
    trust = x509.load_pem_x509_certificates(edge.url.ca_bundle.read_bytes())
    other = EnterpriseKey.generate(tmp_path / "other.key")
    skipped: list[tuple[int, str]] = []
    with edge.client() as client:
        source = EdgeSource(
            client,
            "kiln-co",
            other.signer.seed(),
            trust,
            skipped=lambda batch, why: skipped.append((batch, why)),
        )
        with pytest.raises(SourceError, match="no edge batch"):
            FieldReader(source).numbers("energy_kwh")
    assert len(skipped) == 3
