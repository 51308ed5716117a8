"""Revocation as relying parties read it: a signed CRL (RFC 5280) and OCSP (RFC 6960).

Both are signed by the issuing CA itself (no delegated responder), built with
``cryptography``'s builders. Pure functions: the registry supplies the state.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

from core.clock import require_aware
from edge_tls._ca import CertificateAuthority

__all__ = [
    "CertificateState",
    "LineRevocation",
    "RevocationReason",
    "RevokedCertificate",
    "SerialStatus",
    "build_crl",
    "build_ocsp_response",
]

logger = logging.getLogger(__name__)

_DER = Encoding.DER
_OCSP_VALIDITY = timedelta(hours=1)
_MAX_OCSP_REQUEST = 8 * 1024


class RevocationReason(enum.StrEnum):
    """RFC 5280 §5.3.1 reason codes a security officer may give."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key-compromise"
    AFFILIATION_CHANGED = "affiliation-changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation-of-operation"
    PRIVILEGE_WITHDRAWN = "privilege-withdrawn"

    @property
    def flag(self) -> x509.ReasonFlags:
        """The ``cryptography`` reason flag."""
        return _FLAGS[self]


_FLAGS = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
}


@dataclass(frozen=True)
class RevokedCertificate:
    """One CRL entry."""

    serial: int
    revoked_at: datetime
    reason: RevocationReason


@dataclass(frozen=True)
class LineRevocation:
    """A revocation as applied: the certificate named, and every certificate of its line changed.

    ``revoked`` lists the certificates newly revoked (or whose reason was
    raised to key-compromise), the named one included when it was still valid.
    """

    requested: RevokedCertificate
    revoked: tuple[RevokedCertificate, ...]

    def __post_init__(self) -> None:
        if not self.revoked:
            raise ValueError("a revocation changes at least one certificate")

    @property
    def serial(self) -> int:
        """The serial the officer named."""
        return self.requested.serial

    @property
    def reason(self) -> RevocationReason:
        """The reason the officer gave."""
        return self.requested.reason

    @property
    def revoked_at(self) -> datetime:
        """When the named certificate was (or had been) revoked."""
        return self.requested.revoked_at


class CertificateState(enum.Enum):
    """What the registry knows about a serial."""

    GOOD = "good"
    REVOKED = "revoked"


@dataclass(frozen=True)
class SerialStatus:
    """The OCSP-relevant state of one serial."""

    state: CertificateState
    revoked: RevokedCertificate | None = None


def build_crl(
    ca: CertificateAuthority,
    revoked: Iterable[RevokedCertificate],
    *,
    number: int,
    now: datetime,
) -> x509.CertificateRevocationList:
    """A CRL of the issuing CA listing ``revoked``, valid for the configured lifetime.

    Raises:
        ValueError: ``now`` is naive.
    """
    when = require_aware(now, what="now")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.issuing.subject)
        .last_update(when)
        .next_update(when + ca.config.crl_lifetime)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.issuing_key.public_key()),
            critical=False,
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .add_extension(x509.CRLReason(entry.reason.flag), critical=False)
            .build()
        )
    return builder.sign(ca.issuing_key, hashes.SHA256())


def build_ocsp_response(
    ca: CertificateAuthority,
    request_der: bytes,
    lookup: Callable[[int], SerialStatus | None],
    *,
    now: datetime,
) -> bytes:
    """DER of the OCSP response to ``request_der`` (RFC 6960).

    Malformed requests get ``malformedRequest``, requests about another
    issuer get ``unauthorized``; serials the CA never issued are ``unknown``.

    Raises:
        ValueError: ``now`` is naive.
    """
    when = require_aware(now, what="now")
    if not request_der or len(request_der) > _MAX_OCSP_REQUEST:
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        algorithm = request.hash_algorithm
        name_hash, key_hash, serial = (
            request.issuer_name_hash,
            request.issuer_key_hash,
            request.serial_number,
        )
    except (ValueError, x509.UnsupportedGeneralNameType) as exc:
        logger.info("malformed OCSP request: %s", exc)
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if _issuer_hashes(ca, algorithm) != (name_hash, key_hash):
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    status = lookup(serial)
    revoked = status.revoked if status is not None else None
    if status is None:
        cert_status = ocsp.OCSPCertStatus.UNKNOWN
    elif status.state is CertificateState.REVOKED:
        cert_status = ocsp.OCSPCertStatus.REVOKED
    else:
        cert_status = ocsp.OCSPCertStatus.GOOD
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=name_hash,
        issuer_key_hash=key_hash,
        serial_number=serial,
        algorithm=algorithm,
        cert_status=cert_status,
        this_update=when,
        next_update=when + _OCSP_VALIDITY,
        revocation_time=revoked.revoked_at if revoked else None,
        revocation_reason=revoked.reason.flag if revoked else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, ca.issuing)
    for extension in request.extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            builder = builder.add_extension(extension.value, critical=False)
    response = builder.sign(ca.issuing_key, hashes.SHA256())
    return response.public_bytes(_DER)


def _issuer_hashes(
    ca: CertificateAuthority, algorithm: hashes.HashAlgorithm
) -> tuple[bytes, bytes]:
    """RFC 6960 CertID hashes of the issuing CA: its subject DER and its public key bits."""
    name = hashes.Hash(algorithm)
    name.update(ca.issuing.subject.public_bytes())
    key = hashes.Hash(algorithm)
    key.update(
        ca.issuing_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    return name.finalize(), key.finalize()


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(_DER)
