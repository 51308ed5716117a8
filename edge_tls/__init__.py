"""Edge terminals: certificate authority, EST enrolment (RFC 7030), revocation, sealed uploads.

Imports only ``core``. The HTTP side (EST routes, the mutual-TLS listener and
the bridge that hands the verified peer certificate to the application) lives
in ``exchange``; everything that decides who gets a certificate and whether
one still counts lives here.
"""

from edge_tls._ca import CertificateAuthority, certs_only, parse_certs_only
from edge_tls._client import DeviceCredentials, build_csr, parse_est_response
from edge_tls._csr import EnrollmentRequest, decode_csr, validate_csr
from edge_tls._issued import (
    CertificateRecord,
    DeviceCertificate,
    IssuedCertificate,
    ServerCredentials,
)
from edge_tls._pki import EdgePki
from edge_tls._profiles import CertificateKind, DeviceId, PkiConfig, fingerprint
from edge_tls._readings import (
    ReadingBatch,
    ReadingStore,
    open_batch,
    seal_batch,
    sealing_public_key,
)
from edge_tls._revocation import RevocationReason, RevokedCertificate
from edge_tls._tables import MIGRATIONS
from edge_tls._tokens import TOKEN_PREFIX, BootstrapToken
from edge_tls.errors import (
    AlreadyRevokedError,
    BootstrapTokenError,
    CaAlreadyInitializedError,
    CaError,
    CaNotInitializedError,
    CertificateExpiredError,
    CertificateRejectedError,
    CertificateRevokedError,
    ClientCertificateMissingError,
    CsrCaRequestError,
    CsrError,
    CsrMalformedError,
    CsrNameError,
    CsrSignatureError,
    EnrollmentError,
    IdentityMismatchError,
    ReadingsError,
    RevocationError,
    SealedBatchError,
    SealingKeyMissingError,
    SerialNotFoundError,
    TokenExpiredError,
    TokenUnknownError,
    TokenUsedError,
    UnknownCertificateError,
    WeakKeyError,
)

__all__ = [
    "MIGRATIONS",
    "TOKEN_PREFIX",
    "AlreadyRevokedError",
    "BootstrapToken",
    "BootstrapTokenError",
    "CaAlreadyInitializedError",
    "CaError",
    "CaNotInitializedError",
    "CertificateAuthority",
    "CertificateExpiredError",
    "CertificateKind",
    "CertificateRecord",
    "CertificateRejectedError",
    "CertificateRevokedError",
    "ClientCertificateMissingError",
    "CsrCaRequestError",
    "CsrError",
    "CsrMalformedError",
    "CsrNameError",
    "CsrSignatureError",
    "DeviceCertificate",
    "DeviceCredentials",
    "DeviceId",
    "EdgePki",
    "EnrollmentError",
    "EnrollmentRequest",
    "IdentityMismatchError",
    "IssuedCertificate",
    "PkiConfig",
    "ReadingBatch",
    "ReadingStore",
    "ReadingsError",
    "RevocationError",
    "RevocationReason",
    "RevokedCertificate",
    "SealedBatchError",
    "SealingKeyMissingError",
    "SerialNotFoundError",
    "ServerCredentials",
    "TokenExpiredError",
    "TokenUnknownError",
    "TokenUsedError",
    "UnknownCertificateError",
    "WeakKeyError",
    "build_csr",
    "certs_only",
    "decode_csr",
    "fingerprint",
    "open_batch",
    "parse_certs_only",
    "parse_est_response",
    "seal_batch",
    "sealing_public_key",
    "validate_csr",
]
