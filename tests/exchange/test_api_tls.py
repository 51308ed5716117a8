"""``ibx serve`` speaks TLS 1.2/1.3 only; plain HTTP only when asked for, on loopback.

Real ``ibx serve`` processes, real sockets: a hand-built TLS 1.1 ClientHello
gets no ServerHello, only the connection closed (the same hello as TLS 1.2
gets a ServerHello, so it is the version that is refused, not a malformed hello).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.clock import utcnow
from exchange.error_table import ExitCode
from tests.conftest import initialised
from tests.in_process import ibx
from tests.server import ExchangeUrl, free_port, running_exchange
from tests.zygote import ibx_argv

_TLS11, _TLS12 = 0x0302, 0x0303
_ALERT, _HANDSHAKE = 0x15, 0x16
_PROTOCOL_VERSION_ALERT = 70


def _ibx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ibx_argv(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=dict(os.environ),
    )


def _extension(kind: int, body: bytes) -> bytes:
    return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def client_hello(version: int) -> bytes:
    """A ClientHello record offering only ``version`` (no supported_versions extension).

    It offers ECDHE-ECDSA suites (the server's key is P-256), both AEAD and the
    CBC ones TLS 1.1 would need, with the groups and signature algorithms a
    TLS 1.2 server requires.
    """
    suites = [0xC02B, 0xC02C, 0xCCA9, 0xC009, 0xC00A]
    body = (
        version.to_bytes(2, "big")
        + os.urandom(32)
        + b"\x00"  # no session id
        + (2 * len(suites)).to_bytes(2, "big")
        + b"".join(s.to_bytes(2, "big") for s in suites)
        + b"\x01\x00"  # compression: null only
    )
    extensions = (
        _extension(0x000A, b"\x00\x02\x00\x17")  # supported_groups: secp256r1
        + _extension(0x000B, b"\x01\x00")  # ec_point_formats: uncompressed
        + _extension(0x000D, b"\x00\x04\x04\x03\x02\x03")  # signature_algorithms
    )
    body += len(extensions).to_bytes(2, "big") + extensions
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return bytes([_HANDSHAKE]) + b"\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def _first_record(base: ExchangeUrl, hello: bytes) -> bytes:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(hello)
        received = b""
        while len(received) < 7:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    return received


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeUrl]:
    data = initialised(tmp_path_factory.mktemp("tls") / "data")
    with running_exchange(data, "--tls-name", "exchange.example") as base:
        yield base


def test_a_tls11_client_hello_is_refused_without_a_server_hello(served: ExchangeUrl) -> None:
    control = _first_record(served, client_hello(_TLS12))
    assert control[0] == _HANDSHAKE and control[5] == 0x02  # the same hello as 1.2: ServerHello
    answer = _first_record(served, client_hello(_TLS11))
    # OpenSSL's protocol_version alert, or (asyncio's TLS drops it on handshake failure) EOF
    assert not answer or answer[5:7] == bytes([2, _PROTOCOL_VERSION_ALERT]), answer[:16].hex()
    assert not answer or answer[0] == _ALERT


def test_an_ssl_client_capped_at_tls11_cannot_connect(served: ExchangeUrl) -> None:
    assert served.ca_bundle is not None
    context = ssl.create_default_context(cafile=str(served.ca_bundle))
    with warnings.catch_warnings():  # an old client on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((httpx.ConnectError, ssl.SSLError)):
        httpx.get(f"{served}/healthz", verify=context)


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
def test_tls12_and_tls13_connect_with_forward_secret_aead(
    served: ExchangeUrl, version: ssl.TLSVersion
) -> None:
    assert served.ca_bundle is not None
    context = ssl.create_default_context(cafile=str(served.ca_bundle))
    context.minimum_version = context.maximum_version = version
    port = int(served.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cipher, protocol, _bits = tls.cipher() or ("", "", 0)
        assert protocol == version.name.replace("v1_", "v1.")
        assert "GCM" in cipher or "CHACHA20" in cipher
        if version is ssl.TLSVersion.TLSv1_2:
            assert cipher.startswith("ECDHE-")


def test_the_certificate_comes_from_the_deployment_ca_and_names_the_hosts(
    served: ExchangeUrl,
) -> None:
    port = int(served.rsplit(":", 1)[1])
    assert served.ca_bundle is not None
    pem = ssl.get_server_certificate(("127.0.0.1", port), ca_certs=str(served.ca_bundle))
    cert = x509.load_pem_x509_certificate(pem.encode())
    issuing = x509.load_pem_x509_certificates(served.ca_bundle.read_bytes())[0]
    cert.verify_directly_issued_by(issuing)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "exchange.example"} <= set(sans.get_values_for_type(x509.DNSName))
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    with httpx.Client(verify=served.verify()) as client:  # hostname checked against the SANs
        assert client.get(f"https://localhost:{port}/healthz").status_code == 200


def test_serve_prints_the_url_and_the_ca_bundle(served: ExchangeUrl) -> None:
    assert f"--exchange {served} --ca-bundle {served.ca_bundle}" in served.log()


def test_a_plain_http_client_on_the_tls_port_gets_nothing_and_a_hint(
    served: ExchangeUrl,
) -> None:
    plain = served.url.replace("https://", "http://")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{plain}/healthz")
    done = _ibx("me", "--exchange", plain, "--token", "ibx_not-a-real-token")
    assert done.returncode == ExitCode.ERROR
    assert "the server expects TLS here: use https://" in done.stderr
    untrusted = _ibx("me", "--exchange", served.url, "--token", "ibx_not-a-real-token")
    assert untrusted.returncode == ExitCode.ERROR
    assert "pass --ca-bundle" in untrusted.stderr


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir the refused ``serve`` commands point at."""
    return initialised(tmp_path_factory.mktemp("refusing") / "data")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plain-http", "--host", "0.0.0.0"], "only on a loopback address"),
        (["--plain-http", "--host", "::"], "only on a loopback address"),
        (["--plain-http", "--host", "192.0.2.1"], "only on a loopback address"),
        (["--plain-http", "--tls-cert", "x.pem"], "exclude each other"),
    ],
    ids=["ipv4-any", "ipv6-any", "an-address", "with-tls-cert"],
)
def test_plain_http_is_refused_off_loopback(refusing: Path, args: list[str], message: str) -> None:
    port = free_port()
    # through the entry point in this process: refused before anything binds (were it not,
    # the server would run here and the test time out)
    done = ibx("--data-dir", str(refusing), "serve", "--port", str(port), *args)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    with socket.socket() as probe:  # nothing was left listening
        probe.bind(("127.0.0.1", port))


def test_plain_http_on_loopback_serves_when_asked(tmp_path: Path) -> None:
    data = initialised(tmp_path / "data")
    with running_exchange(data, tls=False) as base:
        assert base.startswith("http://")
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert "--plain-http" in base.log()


def _own_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA of the operator's own and a server certificate for 127.0.0.1 from it."""
    now = utcnow()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "tls.crt",
        directory / "tls.key",
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def test_tls_cert_and_key_files_replace_the_deployment_certificate(tmp_path: Path) -> None:
    ca, cert, key = _own_ca_and_server_cert(tmp_path)
    data = initialised(tmp_path / "data")
    extra = ("--tls-cert", str(cert), "--tls-key", str(key))
    with running_exchange(data, *extra, ca_bundle=ca) as base:
        assert httpx.get(f"{base}/healthz", verify=base.verify()).status_code == 200
        port = int(base.rsplit(":", 1)[1])
        served = x509.load_pem_x509_certificate(
            ssl.get_server_certificate(("127.0.0.1", port)).encode()
        )
        assert served == x509.load_pem_x509_certificate(cert.read_bytes())
        assert "the CA that issued --tls-cert" in base.log()
