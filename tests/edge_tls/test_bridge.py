"""The peer-certificate bridge alone: a bare ASGI app behind uvicorn sees the verified cert."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.types import Receive, Scope, Send

from core.clock import utcnow
from edge_tls import DeviceId, IssuedCertificate
from exchange.edge_server import edge_ssl_context
from exchange.tls_bridge import (
    H11PeerCertificateProtocol,
    PeerCertificateProtocol,
    peer_certificate_der,
)
from tests.edge_tls.conftest import Pki, RunningServer, client_context, csr_for, new_key


async def echo_tls(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with what the bridge put in the scope."""
    assert scope["type"] == "http"
    tls = dict(scope.get("extensions", {}).get("tls") or {})
    der = peer_certificate_der(scope)
    tls["der_sha256_matches"] = (
        der is not None and x509.load_der_x509_certificate(der).public_bytes(Encoding.DER) == der
    )
    body = json.dumps(tls, default=str).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


PROTOCOLS = [
    pytest.param(PeerCertificateProtocol, id="served"),  # httptools' (it is a dependency)
    pytest.param(H11PeerCertificateProtocol, id="h11"),  # the fallback without httptools
]


def test_the_served_protocol_parses_http_with_httptools() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(PeerCertificateProtocol, HttpToolsProtocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bridge_puts_the_verified_peer_certificate_in_every_request_scope(
    pki: Pki, tmp_path: Path, protocol: type[asyncio.Protocol]
) -> None:
    edge = pki.runtime.edge_pki
    credentials = edge.issue_server_certificate(("127.0.0.1",), now=utcnow())
    context = edge_ssl_context(credentials, edge.authority().chain_pem())

    def factory(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context

    config = uvicorn.Config(
        echo_tls,
        host="127.0.0.1",
        port=0,
        http=protocol,
        ssl_context_factory=factory,
        log_level="warning",
        lifespan="off",
    )
    key = new_key()
    token = pki.token("bridge-1")
    issued = edge.enroll(
        "bridge-1", token, csr_for(key, "bridge-1").public_bytes(Encoding.DER), now=utcnow()
    )
    cert_path, key_path = pki.device_files(
        IssuedCertificate(issued.certificate, DeviceId(pki.enterprise, "bridge-1")), key, "b1"
    )
    with RunningServer(config) as running:
        url = f"https://127.0.0.1:{running.port}/"
        with httpx.Client(verify=client_context(pki, cert_path, key_path)) as client:
            first, second = client.get(url).json(), client.get(url).json()
        anonymous = httpx.get(url, verify=client_context(pki)).json()
    for seen in (first, second):  # same connection, two requests: both carry it
        assert seen["der_sha256_matches"] is True
        assert (
            seen["client_cert_chain"][0] == issued.certificate.public_bytes(Encoding.PEM).decode()
        )
        assert seen["client_cert_name"] == "CN=bridge-1,O=factory-a"
        assert seen["tls_version"] in (0x0303, 0x0304)
    assert anonymous["client_cert_chain"] == []
    assert anonymous["der_sha256_matches"] is False
