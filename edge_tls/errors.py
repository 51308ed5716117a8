"""Errors of the edge PKI: one root, precise leaves.

::

    EnrollmentError                     (core.errors.IbxError)
    ├── CaError                         the CA is missing, or already set up
    │   ├── CaNotInitializedError       run ``ibx pki init`` first
    │   └── CaAlreadyInitializedError   ``ibx pki init`` ran before
    ├── BootstrapTokenError             a bootstrap token that cannot enrol (RFC 7030: 401)
    │   ├── TokenUnknownError           not a token we issued, or for another device
    │   ├── TokenUsedError              already spent on an enrolment
    │   └── TokenExpiredError           past its expiry
    ├── CsrError                        a PKCS#10 request we refuse (400)
    │   ├── CsrMalformedError           not base64 DER PKCS#10
    │   ├── CsrSignatureError           proof of possession fails
    │   ├── WeakKeyError                not P-256, P-384 or Ed25519
    │   ├── CsrNameError                asks for a name other than the device's
    │   └── CsrCaRequestError           asks for CA rights (basicConstraints CA, keyCertSign)
    ├── CertificateRejectedError        a client certificate that may not be used (401)
    │   ├── ClientCertificateMissingError
    │   ├── UnknownCertificateError     not issued by this CA
    │   ├── CertificateRevokedError
    │   ├── CertificateExpiredError
    │   └── IdentityMismatchError       valid, but for another identity (403)
    ├── RevocationError
    │   ├── SerialNotFoundError         no certificate with that serial (404)
    │   └── AlreadyRevokedError         revoked before (409)
    ├── EdgeRefusedError                the edge listener refused a device's request (client side)
    ├── RenewalError                    a device's own renewal did not go through (client side)
    │   ├── RenewalRefusedError         the exchange said no (4xx): enrol again with a new token
    │   └── RenewalUnavailableError     unreachable, timed out, 429 or 5xx: try again later
    └── ReadingsError
        ├── SealingKeyMissingError      the enterprise registered no public key (409)
        ├── SealedBatchError            a batch that is empty, too large or does not open
        │   ├── MalformedBatchError     not a sealed box (too short, unopenable key) (400)
        │   └── BatchTooLargeError      over the per-batch size limit (413)
        ├── UploadQuotaError            over the device's bytes-per-hour quota (429)
        └── BatchVerificationError      opened, but not a batch its device signed
            └── BatchFormatError        opened, but not a signed batch envelope at all
"""

from __future__ import annotations

from core.errors import IbxError

__all__ = [
    "AlreadyRevokedError",
    "BatchFormatError",
    "BatchTooLargeError",
    "BatchVerificationError",
    "BootstrapTokenError",
    "CaAlreadyInitializedError",
    "CaError",
    "CaNotInitializedError",
    "CertificateExpiredError",
    "CertificateRejectedError",
    "CertificateRevokedError",
    "ClientCertificateMissingError",
    "CsrCaRequestError",
    "CsrError",
    "CsrMalformedError",
    "CsrNameError",
    "CsrSignatureError",
    "EdgeRefusedError",
    "EnrollmentError",
    "IdentityMismatchError",
    "MalformedBatchError",
    "ReadingsError",
    "RenewalError",
    "RenewalRefusedError",
    "RenewalUnavailableError",
    "RevocationError",
    "SealedBatchError",
    "SealingKeyMissingError",
    "SerialNotFoundError",
    "TokenExpiredError",
    "TokenUnknownError",
    "TokenUsedError",
    "UnknownCertificateError",
    "UploadQuotaError",
    "WeakKeyError",
]


class EnrollmentError(IbxError):
    """Root of every edge PKI error."""

    title = "edge enrolment error"


class CaError(EnrollmentError):
    """The certificate authority is not in the state the operation needs."""

    title = "certificate authority error"


class CaNotInitializedError(CaError):
    """No CA yet: ``ibx pki init`` has not run on this data dir."""

    title = "certificate authority not initialised"


class CaAlreadyInitializedError(CaError):
    """``ibx pki init`` already created the CA; it is never replaced silently."""

    title = "certificate authority already initialised"


class BootstrapTokenError(EnrollmentError):
    """A bootstrap token that cannot be used to enrol."""

    title = "bootstrap token refused"


class TokenUnknownError(BootstrapTokenError):
    """Unknown token, or one created for another device (indistinguishable on purpose)."""


class TokenUsedError(BootstrapTokenError):
    """A one-time token that already enrolled a certificate."""


class TokenExpiredError(BootstrapTokenError):
    """A token past its expiry."""


class CsrError(EnrollmentError):
    """A certificate signing request the CA refuses."""

    title = "certificate request refused"


class CsrMalformedError(CsrError):
    """The body is not a base64 (or DER) PKCS#10 request."""


class CsrSignatureError(CsrError):
    """The CSR's signature does not verify: no proof of possession of the key."""


class WeakKeyError(CsrError):
    """A key type or size outside P-256, P-384 and Ed25519."""

    def __init__(self, message: str, *, key_type: str) -> None:
        super().__init__(message)
        self.key_type = key_type


class CsrNameError(CsrError):
    """The CSR asks for a subject or SAN other than the enrolling device's own."""

    def __init__(self, message: str, *, requested: str) -> None:
        super().__init__(message)
        self.requested = requested


class CsrCaRequestError(CsrError):
    """The CSR asks for CA rights (basicConstraints cA, keyCertSign or cRLSign)."""


class CertificateRejectedError(EnrollmentError):
    """A client certificate that does not authenticate anyone right now."""

    title = "client certificate refused"


class ClientCertificateMissingError(CertificateRejectedError):
    """No client certificate on the TLS connection."""


class UnknownCertificateError(CertificateRejectedError):
    """A certificate this CA did not issue (or no longer knows)."""


class CertificateRevokedError(CertificateRejectedError):
    """A revoked certificate."""

    def __init__(self, message: str, *, serial: int) -> None:
        super().__init__(message)
        self.serial = serial


class CertificateExpiredError(CertificateRejectedError):
    """A certificate outside its validity period."""

    def __init__(self, message: str, *, serial: int) -> None:
        super().__init__(message)
        self.serial = serial


class IdentityMismatchError(CertificateRejectedError):
    """A valid certificate presented for another identity's operation."""

    title = "forbidden"


class RevocationError(EnrollmentError):
    """A revocation that cannot be done as asked."""

    title = "revocation refused"


class SerialNotFoundError(RevocationError):
    """No certificate with that serial number."""

    title = "certificate not found"

    def __init__(self, message: str, *, serial: int) -> None:
        super().__init__(message)
        self.serial = serial


class AlreadyRevokedError(RevocationError):
    """The certificate is already revoked."""

    def __init__(self, message: str, *, serial: int) -> None:
        super().__init__(message)
        self.serial = serial


class EdgeRefusedError(EnrollmentError):
    """The edge listener answered a device's request (EST or upload) with an error status.

    Raised on the device, by :mod:`edge_tls._est` and :mod:`edge_tls._uplink`.
    Carries what the listener said: its HTTP ``status``, its problem's title
    (or this class's), its ``detail`` on one line, and ``retry_after`` seconds
    when it gave a ``Retry-After``.
    """

    title = "refused by the edge listener"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        detail: str,
        title: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        if title:
            self.title = title


class RenewalError(EnrollmentError):
    """A device's renewal (EST simplereenroll, on the device) that did not go through."""

    title = "renewal failed"

    def __init__(self, message: str, *, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class RenewalRefusedError(RenewalError):
    """The exchange refused the renewal (a 4xx answer): revoked, superseded, expired, unknown.

    Trying again cannot help: the device must enrol again with a new bootstrap token.
    """

    title = "renewal refused"


class RenewalUnavailableError(RenewalError):
    """The exchange could not be reached, timed out, or answered 408, 429 or 5xx (``status``).

    The certificate is unchanged; trying again later may succeed.
    """


class ReadingsError(EnrollmentError):
    """A sealed readings batch that cannot be stored or opened."""

    title = "readings refused"


class SealingKeyMissingError(ReadingsError):
    """The device's enterprise has no public key registered to seal to."""


class SealedBatchError(ReadingsError):
    """A batch that is empty, too large, or does not open under the given key."""


class MalformedBatchError(SealedBatchError):
    """An upload that cannot be a sealed box: too short, or an ephemeral key no box opens under."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class BatchTooLargeError(SealedBatchError):
    """An upload over the per-batch size limit (retrying the same batch never helps)."""

    title = "batch too large"

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class UploadQuotaError(ReadingsError):
    """A device past its bytes-per-hour upload quota; ``retry_after`` seconds until it fits."""

    title = "upload quota exceeded"

    def __init__(self, message: str, *, device: str, retry_after: int) -> None:
        super().__init__(message)
        self.device = device
        self.retry_after = retry_after


class BatchVerificationError(ReadingsError):
    """An opened batch that its named device did not sign, or that names a foreign signer."""

    title = "batch does not verify"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class BatchFormatError(BatchVerificationError):
    """An opened batch that is not a signed batch envelope (e.g. sealed without a signature)."""
