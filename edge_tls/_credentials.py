"""The device's credential directory: its key (generated here, never sent) and certificate.

A device directory holds ``device.key`` (PKCS#8 PEM, mode 0600), ``device.pem``
(its current certificate), ``ca.pem`` (the trust bundle) and ``edge.json``
(server URL and device name). A save stages every file next to its old one
(``*.new``, written and fsynced), then renames them into place, key first;
:meth:`DeviceCredentials.finish_pending` completes a save a crash cut short.
The EST requests that fill it are :mod:`edge_tls._est`.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge_tls._envelope import DevicePrivateKey
from edge_tls.errors import EnrollmentError

__all__ = ["DeviceCredentials", "certificate_matches"]

logger = logging.getLogger(__name__)

_KEY = "device.key"
_CERT = "device.pem"
_CA = "ca.pem"
_META = "edge.json"
_STAGED = ".new"


def _staged(path: Path) -> Path:
    return path.with_name(path.name + _STAGED)


def _stage(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``<path>.new`` (mode 0600, fsynced); the caller renames it."""
    tmp = _staged(path)
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def _sync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _public_der(key: ec.EllipticCurvePrivateKey | DevicePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cert_key_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate_matches(
    certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey | DevicePrivateKey
) -> bool:
    """Whether ``certificate`` certifies the public half of ``key``."""
    return _cert_key_der(certificate) == _public_der(key)


def _load_key(path: Path) -> DevicePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) else None


def _is_pem_bundle(path: Path) -> bool:
    try:
        return bool(x509.load_pem_x509_certificates(path.read_bytes()))
    except (OSError, ValueError):
        return False


def _is_json(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, ValueError):
        return False


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


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
        staged = [
            (_stage(self.key_path, key_pem), self.key_path),
            (
                _stage(self.cert_path, certificate.public_bytes(serialization.Encoding.PEM)),
                self.cert_path,
            ),
        ]
        if ca_pem is not None:
            staged.append((_stage(self.ca_path, ca_pem), self.ca_path))
        meta_path = self.directory / _META
        staged.append((_stage(meta_path, json.dumps(meta, indent=2).encode() + b"\n"), meta_path))
        for tmp, path in staged:
            tmp.replace(path)
        _sync_directory(self.directory)

    def finish_pending(self) -> str | None:
        """Complete or discard a save that a crash (or power loss) cut short.

        A staged key and certificate that belong together are renamed into
        place (the exchange has already superseded the old certificate, so
        the new pair is the only one that works); a staged certificate that
        belongs to the key already in place is renamed too; anything else
        staged is incomplete and removed. Returns what was done, or ``None``.

        Raises:
            OSError: the directory cannot be written.
        """
        staged_key, staged_cert = _staged(self.key_path), _staged(self.cert_path)
        if not staged_key.exists() and not staged_cert.exists():
            # Everything is staged before anything is renamed: the key and
            # certificate are in place, so what is left staged is complete.
            return "finished an interrupted save" if self._settle_extras(keep=True) else None
        new_key, new_cert = _load_key(staged_key), _load_cert(staged_cert)
        partner = new_key if new_key is not None else _load_key(self.key_path)
        if (
            new_cert is not None
            and partner is not None
            and _cert_key_der(new_cert) == _public_der(partner)
        ):
            if new_key is not None:
                staged_key.replace(self.key_path)
            staged_cert.replace(self.cert_path)
            self._settle_extras(keep=True)
            done = f"finished an interrupted save: certificate {new_cert.serial_number:x}"
        else:
            staged_key.unlink(missing_ok=True)
            staged_cert.unlink(missing_ok=True)
            self._settle_extras(keep=False)
            done = "removed an incomplete save; the previous key and certificate stay"
        _sync_directory(self.directory)
        logger.warning("%s: %s", self.directory, done)
        return done

    def _settle_extras(self, *, keep: bool) -> bool:
        """Rename a staged CA bundle and metadata into place (if ``keep`` and whole), else drop."""
        settled = False
        for path, whole in ((self.ca_path, _is_pem_bundle), (self.directory / _META, _is_json)):
            tmp = _staged(path)
            if not tmp.exists():
                continue
            if keep and whole(tmp):
                tmp.replace(path)
            else:
                tmp.unlink()
            settled = True
        return settled

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context: trusts ``ca.pem`` only, presents the current key and certificate.

        Raises:
            OSError: a file is missing or unreadable.
            ssl.SSLError: the key does not match the certificate.
        """
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def mutual_tls(self) -> tuple[str, ssl.SSLContext]:
        """The listener recorded at enrolment and the context to reach it with mutual TLS.

        Raises:
            EnrollmentError: the directory holds no enrolment, or its key does not
                match its certificate.
            OSError: a file of the directory cannot be read.
        """
        server = self.server()
        try:
            return server, self.tls_context()
        except ssl.SSLError as exc:
            raise EnrollmentError(
                f"{self.key_path} does not match {self.cert_path}: {exc}"
            ) from exc

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
