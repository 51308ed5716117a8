"""The device's EST client (RFC 7030) over httpx: ``cacerts``, ``simpleenroll``, ``simplereenroll``.

:class:`EstClient` speaks to one exchange's edge listener (``https://host:port``)
over TLS 1.2 or 1.3 and trusts only the pinned CA bundle: without a client
certificate to fetch the CA chain (§4.1) and to enrol with a one-time
bootstrap token in HTTP Basic (§4.2.1, §3.2.3), and with the device's current
certificate, mutual TLS, to re-enrol (§4.2.2). A request is a base64 DER
PKCS#10 (``application/pkcs10``); an answer a base64 certs-only PKCS#7.

:func:`enroll` and :func:`reenroll` are the device's two steps on top: a new
key generated here (it never leaves the device), the request, a check that
the answer is one certificate for that key, then a staged save of the
credential directory (:class:`~edge_tls._credentials.DeviceCredentials`).
:func:`reenroll` sorts failures for the renewal daemon: refusals (a 4xx:
enrol again) apart from unavailability (unreachable, 408, 425, 429, 5xx:
try again later).
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
from types import TracebackType
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_tls._ca import parse_certs_only
from edge_tls._credentials import DeviceCredentials, certificate_matches
from edge_tls._readings import sealing_public_key
from edge_tls.errors import (
    EdgeRefusedError,
    EnrollmentError,
    RenewalRefusedError,
    RenewalUnavailableError,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_TIMEOUT",
    "EstClient",
    "build_csr",
    "enroll",
    "parse_est_response",
    "reenroll",
    "refusal",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
"""Seconds a device waits for the edge listener to answer."""

_WELL_KNOWN = "/.well-known/est"
_PKCS10 = {"Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64"}
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
        EnrollmentError: the body holds no certificate, or more than one.
    """
    certificates = _certs_only(body)
    if len(certificates) != 1:
        raise EnrollmentError(f"the EST response holds {len(certificates)} certificates, not 1")
    return certificates[0]


def _certs_only(body: bytes) -> list[x509.Certificate]:
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
        return parse_certs_only(der)
    except ValueError as exc:
        raise EnrollmentError("the EST response is not a base64 certs-only PKCS#7") from exc


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def refusal(response: httpx.Response, what: str) -> EdgeRefusedError:
    """The listener's refusal of ``what``: its status, its problem's title and detail
    (EST refusals are plain text, RFC 7030 §4.2.3; other routes answer problem+json)."""
    title: str | None = None
    detail = _one_line(response.text) or response.reason_phrase
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if isinstance(problem, dict):
            title = str(problem.get("title") or "") or None
            detail = _one_line(str(problem.get("detail") or title or detail))
    wait = response.headers.get("retry-after", "")
    return EdgeRefusedError(
        f"{what} refused ({response.status_code}): {detail}",
        status=response.status_code,
        detail=detail,
        title=title,
        retry_after=int(wait) if wait.isdigit() else None,
    )


def _tls(ca_pem: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class EstClient:
    """An RFC 7030 client of one edge listener; use as a context manager (or :meth:`close`)."""

    def __init__(
        self, server: str, tls: ssl.SSLContext, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        import httpx  # noqa: PLC0415 - only a device's requests need an HTTP client

        self.server = server.rstrip("/")
        """The listener's base URL, ``https://host:port``."""
        self._http = httpx.Client(base_url=self.server, verify=tls, timeout=timeout)

    @classmethod
    def bootstrap(
        cls, server: str, ca_pem: bytes, *, timeout: float = DEFAULT_TIMEOUT
    ) -> EstClient:
        """A client that authenticates the listener by the pinned ``ca_pem`` and presents no
        certificate (for ``cacerts`` and ``simpleenroll``).

        Raises:
            EnrollmentError: ``ca_pem`` holds no usable PEM certificate.
        """
        try:
            context = _tls(ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise EnrollmentError(f"the CA bundle holds no usable PEM certificate: {exc}") from exc
        return cls(server, context, timeout=timeout)

    @classmethod
    def of_device(
        cls, credentials: DeviceCredentials, *, timeout: float = DEFAULT_TIMEOUT
    ) -> EstClient:
        """A client of the listener recorded at enrolment, presenting the device's current
        certificate (mutual TLS) and trusting the directory's CA bundle only.

        Raises:
            EnrollmentError: the directory holds no enrolment, or its key does not
                match its certificate.
            OSError: a file of the directory cannot be read.
        """
        server, context = credentials.mutual_tls()
        return cls(server, context, timeout=timeout)

    def __enter__(self) -> EstClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def cacerts(self) -> list[x509.Certificate]:
        """``GET /cacerts``: the CA chain the listener distributes (§4.1).

        Raises:
            EdgeRefusedError: the listener answered with an error.
            EnrollmentError: the answer is not a base64 certs-only PKCS#7.
            httpx.HTTPError: the listener could not be reached (or the TLS handshake failed).
        """
        response = self._http.get(f"{_WELL_KNOWN}/cacerts")
        if response.status_code != 200:
            raise refusal(response, "cacerts")
        return _certs_only(response.content)

    def simpleenroll(self, device: str, token: str, csr: bytes) -> x509.Certificate:
        """``POST /simpleenroll`` with HTTP Basic ``device:token`` and a base64 PKCS#10 (§4.2.1).

        Raises:
            EdgeRefusedError: the listener refused (401: token; 400: the request; 503: no CA).
            EnrollmentError: the answer is not one certificate.
            httpx.HTTPError: the listener could not be reached (or the TLS handshake failed).
        """
        response = self._http.post(
            f"{_WELL_KNOWN}/simpleenroll", content=csr, headers=_PKCS10, auth=(device, token)
        )
        if response.status_code != 200:
            raise refusal(response, "enrolment")
        return parse_est_response(response.content)

    def simplereenroll(self, csr: bytes) -> x509.Certificate:
        """``POST /simplereenroll`` over mutual TLS with a base64 PKCS#10 (§4.2.2).

        Raises:
            EdgeRefusedError: the listener refused (401: the certificate; 400: the request).
            EnrollmentError: the answer is not one certificate.
            httpx.HTTPError: the listener could not be reached (or the TLS handshake failed).
        """
        response = self._http.post(f"{_WELL_KNOWN}/simplereenroll", content=csr, headers=_PKCS10)
        if response.status_code != 200:
            raise refusal(response, "renewal")
        return parse_est_response(response.content)


def _check_enterprise_key(enterprise_key: str) -> None:
    try:
        sealing_public_key(base64.b64decode(enterprise_key, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise EnrollmentError(f"the enterprise key to pin is not an Ed25519 key: {exc}") from exc


def enroll(
    credentials: DeviceCredentials,
    *,
    server: str,
    ca_pem: bytes,
    device: str,
    token: str,
    enterprise_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> x509.Certificate:
    """Enrol ``device``: a new key here, EST ``simpleenroll`` with the bootstrap token,
    and the key, certificate, CA bundle and server saved in ``credentials``' directory.

    ``enterprise_key`` (base64 Ed25519) pins the enterprise's key: uploads then
    refuse any other sealing key. It is checked before the token is spent.

    Raises:
        EnrollmentError: an unusable ``enterprise_key`` or CA bundle, or an answer
            that is not one certificate for the key just generated (nothing saved).
        EdgeRefusedError: the listener refused (its status and detail).
        httpx.HTTPError: the listener could not be reached (or the TLS handshake failed).
        OSError: the directory cannot be written.
    """
    if enterprise_key is not None:
        _check_enterprise_key(enterprise_key)
    key = credentials.new_key()
    with EstClient.bootstrap(server, ca_pem, timeout=timeout) as est:
        certificate = est.simpleenroll(device, token.strip(), build_csr(key, device))
        base = est.server
    if not certificate_matches(certificate, key):
        raise EnrollmentError(
            f"{base} answered with certificate {certificate.serial_number:x}, "
            "which is not for the key just generated; nothing was saved"
        )
    credentials.save(
        key, certificate, server=base, device=device, ca_pem=ca_pem, enterprise_key=enterprise_key
    )
    logger.info("enrolled %s: serial %x", device, certificate.serial_number)
    return certificate


def reenroll(
    credentials: DeviceCredentials, *, timeout: float = DEFAULT_TIMEOUT
) -> x509.Certificate:
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
    import httpx  # noqa: PLC0415 - only a device's requests need an HTTP client

    device = credentials.device()
    key = credentials.new_key()
    with EstClient.of_device(credentials, timeout=timeout) as est:
        server = est.server
        try:
            certificate = est.simplereenroll(build_csr(key, device))
        except httpx.HTTPError as exc:
            raise RenewalUnavailableError(
                f"cannot reach {server}: {type(exc).__name__}: "
                f"{_one_line(str(exc)) or 'no detail'}",
                status=None,
            ) from exc
        except EdgeRefusedError as exc:
            if 400 <= exc.status < 500 and exc.status not in _TRANSIENT:
                raise RenewalRefusedError(
                    f"{server} refused the renewal of {device} ({exc.status}): {exc.detail}; "
                    "enrol this device again with a new bootstrap token",
                    status=exc.status,
                ) from exc
            raise RenewalUnavailableError(
                f"{server} could not renew {device} now ({exc.status}): {exc.detail}",
                status=exc.status,
            ) from exc
    if not certificate_matches(certificate, key):
        raise EnrollmentError(
            f"{server} answered with certificate {certificate.serial_number:x}, "
            "which is not for the key just generated; nothing was saved"
        )
    credentials.save(key, certificate, server=server, device=device)
    logger.info("renewed %s: serial %x", device, certificate.serial_number)
    return certificate
