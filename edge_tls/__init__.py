"""Edge terminals: certificate authority, EST enrolment (RFC 7030), revocation, sealed uploads.

Imports only ``core``. The server's HTTP side (EST routes, the mutual-TLS
listener and the bridge that hands the verified peer certificate to the
application) lives in ``exchange``; everything that decides who gets a
certificate and whether one still counts lives here, and so does the device's
side: its EST client (:class:`EstClient`, :func:`enroll`, :func:`reenroll`)
and its uploads (:class:`DeviceUplink`, :func:`upload_readings`).
"""

from edge_tls._ca import CertificateAuthority, certs_only, parse_certs_only
from edge_tls._credentials import DeviceCredentials
from edge_tls._csr import EnrollmentRequest, decode_csr, validate_csr
from edge_tls._envelope import (
    BATCH_FORMAT,
    BatchHeader,
    DevicePrivateKey,
    SignedBatch,
    device_of,
    sign_batch,
)
from edge_tls._est import EstClient, build_csr, enroll, parse_est_response, reenroll
from edge_tls._issued import (
    CertificateRecord,
    DeviceCertificate,
    IssuedCertificate,
    ServerCredentials,
)
from edge_tls._opening import BatchOpener, VerifiedBatch
from edge_tls._pki import EdgePki
from edge_tls._profiles import CertificateKind, DeviceId, PkiConfig, fingerprint
from edge_tls._quota import UploadQuota, check_sealed_box
from edge_tls._readings import (
    ReadingBatch,
    ReadingStore,
    open_batch,
    seal_batch,
    sealing_public_key,
)
from edge_tls._renewal import CertificateValidity, RenewalSchedule
from edge_tls._renewer import Renewal, RenewalDaemon, StopSignal
from edge_tls._revocation import LineRevocation, RevocationReason, RevokedCertificate
from edge_tls._tables import MIGRATIONS
from edge_tls._tokens import TOKEN_PREFIX, BootstrapToken
from edge_tls._uplink import DeviceUplink, UploadReceipt, upload_readings
from edge_tls.entries import ENTRY_TYPES
from edge_tls.errors import (
    AlreadyRevokedError,
    BatchFormatError,
    BatchTooLargeError,
    BatchVerificationError,
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
    EdgeRefusedError,
    EnrollmentError,
    IdentityMismatchError,
    MalformedBatchError,
    ReadingsError,
    RenewalError,
    RenewalRefusedError,
    RenewalUnavailableError,
    RevocationError,
    SealedBatchError,
    SealingKeyMissingError,
    SerialNotFoundError,
    TokenExpiredError,
    TokenUnknownError,
    TokenUsedError,
    UnknownCertificateError,
    UploadQuotaError,
    WeakKeyError,
)

__all__ = [
    "BATCH_FORMAT",
    "ENTRY_TYPES",
    "MIGRATIONS",
    "TOKEN_PREFIX",
    "AlreadyRevokedError",
    "BatchFormatError",
    "BatchHeader",
    "BatchOpener",
    "BatchTooLargeError",
    "BatchVerificationError",
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
    "CertificateValidity",
    "ClientCertificateMissingError",
    "CsrCaRequestError",
    "CsrError",
    "CsrMalformedError",
    "CsrNameError",
    "CsrSignatureError",
    "DeviceCertificate",
    "DeviceCredentials",
    "DeviceId",
    "DevicePrivateKey",
    "DeviceUplink",
    "EdgePki",
    "EdgeRefusedError",
    "EnrollmentError",
    "EnrollmentRequest",
    "EstClient",
    "IdentityMismatchError",
    "IssuedCertificate",
    "LineRevocation",
    "MalformedBatchError",
    "PkiConfig",
    "ReadingBatch",
    "ReadingStore",
    "ReadingsError",
    "Renewal",
    "RenewalDaemon",
    "RenewalError",
    "RenewalRefusedError",
    "RenewalSchedule",
    "RenewalUnavailableError",
    "RevocationError",
    "RevocationReason",
    "RevokedCertificate",
    "SealedBatchError",
    "SealingKeyMissingError",
    "SerialNotFoundError",
    "ServerCredentials",
    "SignedBatch",
    "StopSignal",
    "TokenExpiredError",
    "TokenUnknownError",
    "TokenUsedError",
    "UnknownCertificateError",
    "UploadQuota",
    "UploadQuotaError",
    "UploadReceipt",
    "VerifiedBatch",
    "WeakKeyError",
    "build_csr",
    "certs_only",
    "check_sealed_box",
    "decode_csr",
    "device_of",
    "enroll",
    "fingerprint",
    "open_batch",
    "parse_certs_only",
    "parse_est_response",
    "reenroll",
    "seal_batch",
    "sealing_public_key",
    "sign_batch",
    "upload_readings",
    "validate_csr",
]
