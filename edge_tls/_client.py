"""The device's side: its key (generated locally, never sent), CSRs, and its credential dir.

A device directory holds ``device.key`` (PKCS#8 PEM, mode 0600), ``device.pem``
(its current certificate), ``ca.pem`` (the trust bundle) and ``edge.json``
(server URL and device name). Renewal writes the new key and certificate
next to the old ones and then renames them into place.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from edge_tls._ca import parse_certs_only
from edge_tls._envelope import DevicePrivateKey
from edge_tls.errors import EnrollmentError

__all__ = ["DeviceCredentials", "build_csr", "parse_est_response"]

logger = logging.getLogger(__name__)

_KEY = "device.key"
_CERT = "device.pem"
_CA = "ca.pem"
_META = "edge.json"


def build_csr(key: ec.EllipticCurvePrivateKey, device: str) -> bytes:
    """Base64 DER PKCS#10 for ``device`` (``CN=<device>``, no extensions), as EST sends it."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
        .sign(key, hashes.SHA256())
    )
    return base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))


def parse_est_response(body: bytes) -> x509.Certificate:
    """The certificate in an EST certs-only response (base64 PKCS#7).

    Raises:
        EnrollmentError: the body holds no certificate.
    """
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
        certificates = parse_certs_only(der)
    except ValueError as exc:
        raise EnrollmentError("the EST response is not a base64 certs-only PKCS#7") from exc
    if len(certificates) != 1:
        raise EnrollmentError(f"the EST response holds {len(certificates)} certificates, not 1")
    return certificates[0]


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


@dataclass(frozen=True)
class DeviceCredentials:
    """Paths of a device directory."""

    directory: Path

    @property
    def key_path(self) -> Path:
        """The device's private key (PEM, 0600)."""
        return self.directory / _KEY

    @property
    def cert_path(self) -> Path:
        """The device's current certificate (PEM)."""
        return self.directory / _CERT

    @property
    def ca_path(self) -> Path:
        """The CA bundle the device trusts (PEM)."""
        return self.directory / _CA

    def _meta(self) -> dict[str, str]:
        try:
            meta = json.loads((self.directory / _META).read_text())
            return {str(k): str(v) for k, v in meta.items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise EnrollmentError(
                f"{self.directory} holds no enrolment; run `ibx edge enroll` first"
            ) from exc

    def server(self) -> str:
        """The exchange's edge URL recorded at enrolment.

        Raises:
            EnrollmentError: the directory holds no enrolment.
        """
        return self._meta()["server"]

    def device(self) -> str:
        """The device name recorded at enrolment.

        Raises:
            EnrollmentError: the directory holds no enrolment.
        """
        return self._meta()["device"]

    def pinned_enterprise_key(self) -> str | None:
        """The enterprise's Ed25519 public key (base64) pinned at enrolment, if any.

        Raises:
            EnrollmentError: the directory holds no enrolment.
        """
        return self._meta().get("enterprise_key")

    @staticmethod
    def new_key() -> ec.EllipticCurvePrivateKey:
        """A fresh P-256 device key."""
        return ec.generate_private_key(ec.SECP256R1())

    def save(
        self,
        key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        *,
        server: str,
        device: str,
        ca_pem: bytes | None = None,
        enterprise_key: str | None = None,
    ) -> None:
        """Write key, certificate (and CA bundle, metadata), replacing the old ones.

        A pinned ``enterprise_key`` from an earlier enrolment is kept unless a new one is given.

        Raises:
            OSError: the directory cannot be written.
        """
        meta: dict[str, str] = {"server": server, "device": device}
        if (self.directory / _META).exists():
            pinned = self._meta().get("enterprise_key")
            if pinned:
                meta["enterprise_key"] = pinned
        if enterprise_key is not None:
            meta["enterprise_key"] = enterprise_key
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":
            self.directory.chmod(0o700)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(self.key_path, key_pem)
        _write_private(self.cert_path, certificate.public_bytes(serialization.Encoding.PEM))
        if ca_pem is not None:
            _write_private(self.ca_path, ca_pem)
        _write_private(self.directory / _META, json.dumps(meta, indent=2).encode() + b"\n")

    def private_key(self) -> DevicePrivateKey:
        """The device's private key (it signs batches and the TLS handshake).

        Raises:
            EnrollmentError: missing, unreadable, or not an EC or Ed25519 key.
        """
        try:
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise EnrollmentError(f"no readable device key at {self.key_path}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise EnrollmentError(f"{self.key_path} is not an EC or Ed25519 key")
        return key

    def certificate(self) -> x509.Certificate:
        """The current certificate.

        Raises:
            EnrollmentError: missing or unreadable.
        """
        try:
            return x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise EnrollmentError(f"no readable certificate at {self.cert_path}") from exc
