"""``ibx serve --edge-port``: both listeners in one process, stopped together by one signal."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time

import httpx
from cryptography import x509

from tests.edge_tls.conftest import Pki, client_context
from tests.zygote import ibx_argv


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_runs_http_and_edge_tls_together(pki: Pki) -> None:
    port, edge_port = _free_port(), _free_port()
    data_dir = str(pki.runtime.settings.data_dir)
    process = subprocess.Popen(
        [*ibx_argv(), "--data-dir", data_dir, "serve", "--port", str(port),
         "--edge-port", str(edge_port), "--edge-name", "edge.factory.example"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(
                    f"https://127.0.0.1:{port}/healthz", verify=client_context(pki), timeout=2
                )  # the API speaks TLS too, with a certificate of the same CA
                cacerts = httpx.get(
                    f"https://127.0.0.1:{edge_port}/.well-known/est/cacerts",
                    verify=client_context(pki),
                    timeout=2,
                )
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "ibx serve did not come up"
                time.sleep(0.2)
        assert health.status_code == 200
        assert cacerts.status_code == 200
        on_api = httpx.get(
            f"https://127.0.0.1:{port}/.well-known/est/cacerts",
            verify=client_context(pki),
            timeout=2,
        )
        assert on_api.status_code == 404  # EST lives only on the edge listener
        pem = ssl.get_server_certificate(("127.0.0.1", edge_port))
        server_cert = x509.load_pem_x509_certificate(pem.encode())
        sans = server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "edge.factory.example" in sans.get_values_for_type(x509.DNSName)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            raise
    assert process.returncode is not None
    assert "Traceback" not in output, output
