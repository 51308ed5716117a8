"""The device's side: its key (generated locally, never sent), CSRs, and its credential dir.

A device directory holds ``device.key`` (PKCS#8 PEM, mode 0600), ``device.pem``
(its current certificate), ``ca.pem`` (the trust bundle) and ``edge.json``
(server URL and device name). A save stages every file next to its old one
(``*.new``, written and fsynced), then renames them into place, key first;
:meth:`DeviceCredentials.finish_pending` completes a save a crash cut short.

:func:`reenroll` is the device's EST ``simplereenroll`` over mutual TLS: it
sorts the exchange's answers into refusals (4xx: enrol again) and
unavailability (unreachable, 408, 429, 5xx: try again later).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from edge_tls._ca import parse_certs_only
from edge_tls._envelope import DevicePrivateKey
from edge_tls.errors import EnrollmentError, RenewalRefusedError, RenewalUnavailableError

__all__ = ["DeviceCredentials", "build_csr", "parse_est_response", "reenroll"]

logger = logging.getLogger(__name__)

_KEY = "device.key"
_CERT = "device.pem"
_CA = "ca.pem"
_META = "edge.json"
_STAGED = ".new"
_TRANSIENT = frozenset({408, 425, 429})


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


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def reenroll(credentials: DeviceCredentials, *, timeout: float = 30.0) -> x509.Certificate:
    """EST ``simplereenroll`` with a new key, over mutual TLS with the current certificate.

    The answer must be one certificate for the new key; only then are the
    new key and certificate saved (staged, then renamed into place). The
    exchange supersedes the presented certificate when it issues the new one.

    Raises:
        RenewalRefusedError: the exchange answered 4xx (other than 408, 425, 429):
            revoked, superseded, expired, unknown, or a CSR it refuses. Retrying
            cannot help.
        RenewalUnavailableError: the exchange could not be reached, the TLS
            handshake or the request failed or timed out, or it answered 408,
            425, 429 or 5xx. The files are unchanged.
        EnrollmentError: the directory holds no enrolment, or the answer is not
            one certificate for the key just generated (nothing is saved).
        OSError: the directory cannot be read or written.
    """
    import httpx  # noqa: PLC0415 - only a renewing device needs an HTTP client

    server, device = credentials.server(), credentials.device()
    url = server + "/.well-known/est/simplereenroll"
    key = credentials.new_key()
    try:
        context = credentials.tls_context()
    except ssl.SSLError as exc:
        raise EnrollmentError(
            f"{credentials.key_path} does not match {credentials.cert_path}: {exc}"
        ) from exc
    try:
        with httpx.Client(verify=context, timeout=timeout) as client:
            response = client.post(
                url,
                content=build_csr(key, device),
                headers={
                    "Content-Type": "application/pkcs10",
                    "Content-Transfer-Encoding": "base64",
                },
            )
    except httpx.HTTPError as exc:
        raise RenewalUnavailableError(
            f"cannot reach {server}: {type(exc).__name__}: {_one_line(str(exc)) or 'no detail'}",
            status=None,
        ) from exc
    status = response.status_code
    if status != 200:
        said = _one_line(response.text) or response.reason_phrase
        if 400 <= status < 500 and status not in _TRANSIENT:
            raise RenewalRefusedError(
                f"{server} refused the renewal of {device} ({status}): {said}; "
                "enrol this device again with a new bootstrap token",
                status=status,
            )
        raise RenewalUnavailableError(
            f"{server} could not renew {device} now ({status}): {said}", status=status
        )
    certificate = parse_est_response(response.content)
    if _cert_key_der(certificate) != _public_der(key):
        raise EnrollmentError(
            f"{server} answered with certificate {certificate.serial_number:x}, "
            "which is not for the key just generated; nothing was saved"
        )
    credentials.save(key, certificate, server=server, device=device)
    logger.info("renewed %s: serial %x", device, certificate.serial_number)
    return certificate
