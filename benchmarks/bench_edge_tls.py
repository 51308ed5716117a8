"""Edge PKI throughput: certificates issued per second and mutual-TLS handshakes per second.

    .venv/bin/python benchmarks/bench_edge_tls.py [--certs 200] [--handshakes 300]

One run, one machine, same CSRs for every issuer:

* CA signing alone (``CertificateAuthority.issue_device``, P-256, no storage);
* in-process enrolment (``EdgePki.enroll``: token spent, CSR checked, cert
  signed, row stored and ledger entry appended in one fsynced SQLite transaction);
* HTTPS enrolment through the real edge listener (uvicorn + TLS, keep-alive
  httpx client, HTTP Basic bootstrap tokens);
* the peer: ``openssl x509 -req`` signing the same CSRs with the same issuing
  key (one process per certificate, as a shell-driven CA would run it).

Then mutual-TLS handshakes per second against the edge listener: a Python
client doing full handshakes with a device certificate (TLS 1.3 and 1.2), and
``openssl s_time`` (the peer client) doing new handshakes for the same time.

Then signed batches (issue 9), 64 KiB of CSV each: sealing alone (what a device
did before batches were signed) against signing + sealing, opening alone
against opening + verifying (``BatchOpener``: path validation, signature,
CRL, nonce), and HTTPS uploads through the listener (structure and quota
check, row, ledger entry).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from core.clock import utcnow
from core.keys import Ed25519Signer
from edge_tls import (
    BatchOpener,
    DeviceId,
    ReadingBatch,
    open_batch,
    seal_batch,
    sealing_public_key,
    sign_batch,
)
from exchange.edge_server import edge_server_config
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings


def _csrs(count: int, prefix: str) -> list[tuple[str, ec.EllipticCurvePrivateKey, bytes]]:
    out = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"{prefix}-{i}"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
        out.append((name, key, csr.public_bytes(Encoding.DER)))
    return out


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:10.1f} /s  ({count} in {seconds:.2f} s)"


class _Server:
    def __init__(self, config: uvicorn.Config) -> None:
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    n = args.certs
    work = Path(tempfile.mkdtemp(prefix="ibx-bench-edge-"))
    runtime = Runtime.initialise(
        Settings(
            data_dir=work / "data",
            ledger_origin="bench.ibx.localhost/log",
            edge_upload_bytes_per_hour=1 << 40,
        )
    )
    pki = runtime.edge_pki
    pki.init(actor="sysadmin", now=utcnow())
    signer = Ed25519Signer.generate("factory-a")
    runtime.identities.create("factory-a", Role.ENTERPRISE, public_key=signer.public_key)
    ca = pki.authority()
    print(f"edge PKI benchmark: {n} P-256 CSRs per issuer, Python {sys.version.split()[0]}")
    print(f"work dir {work}")

    # 1. CA signing alone
    batch = _csrs(n, "sign")
    started = time.perf_counter()
    for name, key, _ in batch:
        ca.issue_device(key.public_key(), DeviceId("factory-a", name), now=utcnow())
    print(f"CA signing only (no storage)        {_rate(n, time.perf_counter() - started)}")

    # 2. in-process enrolment (token + CSR checks + sign + store + ledger, fsynced)
    tokens = [
        pki.create_token(DeviceId("factory-a", name), actor="factory-a", now=utcnow()).token
        for name, _, _ in batch
    ]
    started = time.perf_counter()
    for (name, _, der), token in zip(batch, tokens, strict=True):
        pki.enroll(name, token, der, now=utcnow())
    print(f"in-process enrolment (EdgePki)      {_rate(n, time.perf_counter() - started)}")

    # 3. HTTPS enrolment through the edge listener
    https_batch = _csrs(n, "https")
    https_tokens = [
        pki.create_token(DeviceId("factory-a", name), actor="factory-a", now=utcnow()).token
        for name, _, _ in https_batch
    ]
    bundle = work / "ca.pem"
    bundle.write_text(ca.chain_pem())
    config = edge_server_config(runtime, host="127.0.0.1", port=0, log_level="warning")
    with _Server(config) as port:
        url = f"https://127.0.0.1:{port}"
        verify = ssl.create_default_context(cafile=str(bundle))
        with httpx.Client(verify=verify, timeout=30) as client:
            started = time.perf_counter()
            for (name, _, der), token in zip(https_batch, https_tokens, strict=True):
                response = client.post(
                    url + "/.well-known/est/simpleenroll",
                    content=base64.encodebytes(der),
                    headers={"Content-Type": "application/pkcs10"},
                    auth=(name, token),
                )
                assert response.status_code == 200, response.text
            elapsed = time.perf_counter() - started
        print(f"HTTPS EST simpleenroll (keep-alive) {_rate(n, elapsed)}")

        # 4. peer: openssl x509 -req on the same CSRs, same issuing key
        issuing_pem = work / "issuing.pem"
        issuing_key = work / "issuing.key"
        issuing_pem.write_bytes(ca.issuing.public_bytes(Encoding.PEM))
        fd = os.open(issuing_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(
                ca.issuing_key.private_bytes(
                    Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        csr_dir = work / "csrs"
        csr_dir.mkdir()
        for i, (_, _, der) in enumerate(batch):
            csr = x509.load_der_x509_csr(der)
            (csr_dir / f"{i}.pem").write_bytes(csr.public_bytes(Encoding.PEM))
        started = time.perf_counter()
        for i in range(n):
            subprocess.run(
                ["openssl", "x509", "-req", "-in", str(csr_dir / f"{i}.pem"),
                 "-CA", str(issuing_pem), "-CAkey", str(issuing_key), "-set_serial", str(i + 1),
                 "-days", "7", "-sha256", "-out", str(csr_dir / f"{i}.crt")],
                check=True, capture_output=True,
            )  # fmt: skip
        print(f"peer: openssl x509 -req (1 proc/cert) {_rate(n, time.perf_counter() - started)}")
        issuing_key.unlink()

        # 5. mutual-TLS handshakes
        name, key, der = batch[0]
        device_token = pki.create_token(
            DeviceId("factory-a", "hs-1"), actor="factory-a", now=utcnow()
        ).token
        device_key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hs-1")]))
            .sign(device_key, hashes.SHA256())
        )
        issued = pki.enroll("hs-1", device_token, csr.public_bytes(Encoding.DER), now=utcnow())
        cert_path, key_path = work / "hs.pem", work / "hs.key"
        cert_path.write_bytes(issued.certificate.public_bytes(Encoding.PEM))
        key_path.write_bytes(
            device_key.private_bytes(
                Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            context = ssl.create_default_context(cafile=str(bundle))
            context.load_cert_chain(cert_path, key_path)
            context.minimum_version = context.maximum_version = version
            started = time.perf_counter()
            for _ in range(args.handshakes):
                with (
                    socket.create_connection(("127.0.0.1", port)) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
                ):
                    assert tls.getpeercert() is not None
            elapsed = time.perf_counter() - started
            label = f"mTLS handshakes, Python, {version.name}"
            print(f"{label:<36}{_rate(args.handshakes, elapsed)}")
        for flag in ("-tls1_3", "-tls1_2"):
            result = subprocess.run(
                ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", "5",
                 "-cert", str(cert_path), "-key", str(key_path), "-CAfile", str(bundle), flag],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            match = re.search(
                r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec", result.stdout
            )
            wall = re.search(r"(\d+) connections in (\d+) real seconds", result.stdout)
            if match and wall:
                count, seconds = int(wall.group(1)), float(wall.group(2))
                label = f"peer: openssl s_time {flag}"
                print(f"{label:<36}{_rate(count, seconds)}")
            else:
                print(f"openssl s_time {flag}: no figure ({result.stdout[-200:]!r})")
        _bench_batches(runtime, signer, cert_path, key_path, bundle, url, args.batches)
    runtime.close()
    return 0


def _bench_batches(
    runtime: Runtime,
    enterprise: Ed25519Signer,
    cert_path: Path,
    key_path: Path,
    bundle: Path,
    url: str,
    count: int,
) -> None:
    """Signed batches: device cost, enterprise cost, HTTPS uploads (64 KiB of CSV each)."""
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    rows = "".join(f"line-{i % 7},{i * 1.5:.1f},{i % 500}\n" for i in range(3000))
    readings = ("line,energy_kwh,output_units\n" + rows).encode()[: 64 * 1024]
    sealing = sealing_public_key(enterprise.public_key.raw)
    started = time.perf_counter()
    plain = [seal_batch(readings, sealing) for _ in range(count)]
    print(
        f"{'seal only, 64 KiB (before issue 9)':<36}{_rate(count, time.perf_counter() - started)}"
    )
    started = time.perf_counter()
    sealed = [
        seal_batch(sign_batch(readings, key, cert, now=utcnow()).to_bytes(), sealing)
        for _ in range(count)
    ]
    print(f"{'sign + seal, 64 KiB':<36}{_rate(count, time.perf_counter() - started)}")
    seed = enterprise.seed()
    started = time.perf_counter()
    for blob in plain:
        open_batch(blob, seed)
    print(f"{'open only, 64 KiB':<36}{_rate(count, time.perf_counter() - started)}")
    pki = runtime.edge_pki
    opener = BatchOpener("factory-a", seed, trust=pki.authority().chain, crl=pki.crl(now=utcnow()))
    started = time.perf_counter()
    for i, blob in enumerate(sealed):
        opener.open(ReadingBatch(i, "factory-a", "", "", blob, utcnow()))
    print(f"{'open + verify (BatchOpener)':<36}{_rate(count, time.perf_counter() - started)}")
    context = ssl.create_default_context(cafile=str(bundle))
    context.load_cert_chain(cert_path, key_path)
    headers = {"Content-Type": "application/octet-stream"}
    with httpx.Client(verify=context) as client:
        started = time.perf_counter()
        for blob in sealed:
            response = client.post(url + "/v1/edge/readings", content=blob, headers=headers)
            assert response.status_code == 201, response.text
        elapsed = time.perf_counter() - started
    print(f"{'HTTPS upload (checks, row, ledger)':<36}{_rate(count, elapsed)}")


if __name__ == "__main__":
    sys.exit(main())
