"""The ledger entries the edge PKI writes, as typed payloads.

One model per entry type; ``TYPE`` is the entry type, the fields are exactly
the payload and unknown members are refused, so an auditor parses every
``edge.*`` entry through these (``docs/audit.md``, "Typed entries"; JSON
Schema in ``docs/schemas/ledger/``). Writers record :meth:`payload`: an
optional member the entry does not state is absent, not ``null``.

* ``edge.ca.init`` — :class:`CaInitEntry`
* ``edge.token.create`` — :class:`TokenCreateEntry`
* ``edge.certificate.issue`` — :class:`CertificateIssueEntry` (device enrolment or
  the edge listener's server certificate)
* ``edge.certificate.renew`` — :class:`CertificateRenewEntry`
* ``edge.certificate.revoke`` — :class:`CertificateRevokeEntry`
* ``edge.readings.upload`` — :class:`ReadingsUploadEntry`
* ``edge.enrol.failure`` — :class:`EnrolFailureEntry` (an EST enrolment refused)
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from core.canonical import JsonValue as CoreJsonValue
from core.duty import DutyError, SignedDuty
from edge_tls._revocation import RevocationReason

__all__ = [
    "ENTRY_TYPES",
    "CaInitEntry",
    "CertificateIssueEntry",
    "CertificateRenewEntry",
    "CertificateRevokeEntry",
    "DutyStatementEntry",
    "EnrolFailureEntry",
    "EnrolFailureReason",
    "ReadingsUploadEntry",
    "RevokedMemberEntry",
    "SignedDutyEntry",
    "TokenCreateEntry",
]

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
"""Lower-case hex SHA-256."""
SerialHex = Annotated[str, Field(pattern=r"^[0-9a-f]{1,40}$")]
"""A certificate serial number in lower-case hex, no leading zeros required."""
Rfc3339 = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})$"
    ),
]
"""An RFC 3339 timestamp."""
Name = Annotated[str, Field(min_length=1, max_length=200)]
"""An enterprise or device name."""

_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class _Entry(BaseModel):
    model_config = _CONFIG

    def payload(self) -> dict[str, CoreJsonValue]:
        """The ledger payload: the JSON form; an optional member left unset is absent.

        A member that is required but may be ``null`` is stated as ``null``.
        """
        unset = {
            name
            for name, info in type(self).model_fields.items()
            if not info.is_required() and getattr(self, name) is None
        }
        return self.model_dump(mode="json", exclude=unset)


class CaInitEntry(_Entry):
    """``edge.ca.init``: the edge root and issuing CA were created (once per deployment)."""

    TYPE: ClassVar[str] = "edge.ca.init"

    root_fingerprint: Hex64
    """Hex SHA-256 of the root certificate's DER."""
    issuing_fingerprint: Hex64
    """Hex SHA-256 of the issuing CA certificate's DER."""
    issuing_serial: SerialHex
    """The issuing CA certificate's serial (hex)."""
    trust_domain: str = Field(min_length=1)
    """The SPIFFE trust domain device identities live in."""


class TokenCreateEntry(_Entry):
    """``edge.token.create``: a one-time bootstrap token was made for a device (never its value)."""

    TYPE: ClassVar[str] = "edge.token.create"

    enterprise: Name
    """The enterprise the device belongs to."""
    device: Name
    """The device the token enrols."""
    expires_at: Rfc3339
    """When the token stops working."""


class CertificateIssueEntry(_Entry):
    """``edge.certificate.issue``: a certificate was issued.

    A device certificate (``kind`` ``device``, enrolment with a bootstrap
    token) names its enterprise, device and SPIFFE id; the edge listener's
    server certificate (``kind`` ``server``) names its host names instead.
    """

    TYPE: ClassVar[str] = "edge.certificate.issue"

    kind: Literal["device", "server"]
    """``device`` or ``server``."""
    serial: SerialHex
    """The new certificate's serial (hex)."""
    fingerprint: Hex64
    """Hex SHA-256 of the new certificate's DER."""
    not_after: Rfc3339
    """End of the certificate's validity."""
    enterprise: Name | None = None
    """Device certificates: the device's enterprise."""
    device: Name | None = None
    """Device certificates: the device."""
    spiffe_id: str | None = None
    """Device certificates: the SPIFFE id in the certificate's URI SAN."""
    hosts: tuple[str, ...] | None = None
    """Server certificates: the DNS names and IP addresses it is valid for."""
    superseded: tuple[SerialHex, ...] | None = None
    """Device certificates: serials of the device's earlier certificates revoked as superseded."""

    @model_validator(mode="after")
    def _kind_members(self) -> Self:
        device = (self.enterprise, self.device, self.spiffe_id)
        if self.kind == "device":
            if None in device or self.hosts is not None:
                raise ValueError("a device certificate names enterprise, device and spiffe_id only")
        elif any(v is not None for v in device) or self.hosts is None or self.superseded:
            raise ValueError("a server certificate names its hosts only")
        return self


class CertificateRenewEntry(_Entry):
    """``edge.certificate.renew``: a device renewed its certificate (EST simplereenroll)."""

    TYPE: ClassVar[str] = "edge.certificate.renew"

    kind: Literal["device"]
    """Always ``device``."""
    serial: SerialHex
    """The new certificate's serial (hex)."""
    fingerprint: Hex64
    """Hex SHA-256 of the new certificate's DER."""
    enterprise: Name
    """The device's enterprise."""
    device: Name
    """The device."""
    spiffe_id: str = Field(min_length=1)
    """The SPIFFE id in the certificate's URI SAN."""
    not_after: Rfc3339
    """End of the new certificate's validity."""
    previous_serial: SerialHex
    """The certificate the device presented to renew (hex serial)."""
    superseded: tuple[SerialHex, ...] | None = None
    """Serials revoked as superseded by this renewal (absent when none)."""


class RevokedMemberEntry(BaseModel):
    """One certificate of a device's line that a revocation changed."""

    model_config = _CONFIG

    serial: SerialHex
    """Its serial (hex)."""
    fingerprint: Hex64
    """Hex SHA-256 of its DER."""


class DutyStatementEntry(BaseModel):
    """What a security officer signed (``core.duty.Duty``, wire form)."""

    model_config = _CONFIG

    kind: Literal["ibx.duty/v1"]
    """The statement format."""
    origin: str
    """The ledger origin of the deployment it is for."""
    actor: str
    """The officer who signed."""
    action: str
    """The act (``certificate.revoke``)."""
    subject: str
    """What the act is about (the certificate serial, hex)."""
    details: dict[str, JsonValue]
    """What else the act fixes (``reason``)."""
    signed_at: Rfc3339
    """When the officer signed."""


class SignedDutyEntry(BaseModel):
    """A signed duty as recorded in an entry's ``duty`` member (``core.duty.SignedDuty``,
    whose parse it must pass; the signature is checked against the officer's key by
    ``ibx audit verify``, not here)."""

    model_config = _CONFIG

    statement: DutyStatementEntry
    """The statement signed."""
    signature: str
    """Base64 Ed25519 signature over the statement's RFC 8785 bytes."""

    @model_validator(mode="after")
    def _parses_as_duty(self) -> Self:
        try:
            SignedDuty.from_dict(self.model_dump(mode="json"))
        except DutyError as exc:
            raise ValueError(str(exc)) from exc
        return self


class CertificateRevokeEntry(_Entry):
    """``edge.certificate.revoke``: a certificate and the rest of its device's line revoked."""

    TYPE: ClassVar[str] = "edge.certificate.revoke"

    serial: SerialHex
    """The certificate the officer named (hex serial)."""
    fingerprint: Hex64
    """Hex SHA-256 of its DER."""
    reason: RevocationReason
    """RFC 5280 reason code."""
    enterprise: Name | None
    """The device's enterprise; ``null`` for a server certificate."""
    device: Name | None
    """The device; ``null`` for a server certificate."""
    revoked_at: Rfc3339
    """When the revocation took effect."""
    line: tuple[RevokedMemberEntry, ...]
    """Every certificate whose revocation this changed."""
    duty: SignedDutyEntry | None = None
    """The officer's signed duty for the revocation (absent on entries written before duties)."""


class ReadingsUploadEntry(_Entry):
    """``edge.readings.upload``: a device uploaded a sealed batch of readings (ciphertext)."""

    TYPE: ClassVar[str] = "edge.readings.upload"

    batch: int = Field(ge=0)
    """The stored batch's id."""
    enterprise: Name
    """The device's enterprise (the batch is sealed to its key)."""
    device: Name
    """The uploading device."""
    certificate_serial: SerialHex
    """Serial (hex) of the client certificate it authenticated with."""
    sha256: Hex64
    """Hex SHA-256 of the sealed batch."""
    bytes: int = Field(ge=0)
    """Size of the sealed batch."""


EnrolFailureReason = Literal[
    "token_unknown", "token_used", "token_expired", "token_refused", "csr_refused", "refused"
]
"""Why an enrolment was refused (the token's fault, the request's, or otherwise)."""


class EnrolFailureEntry(_Entry):
    """``edge.enrol.failure``: an EST ``simpleenroll`` refused, for a device one of the
    enterprise's bootstrap tokens names (actor: the device name as sent). Never the token."""

    TYPE: ClassVar[str] = "edge.enrol.failure"

    enterprise: Name
    """The enterprise whose token names the device."""
    device: Name
    """The device name the client sent."""
    reason: EnrolFailureReason
    """Why it was refused."""


ENTRY_TYPES: tuple[type[BaseModel], ...] = (
    CaInitEntry,
    TokenCreateEntry,
    CertificateIssueEntry,
    CertificateRenewEntry,
    CertificateRevokeEntry,
    ReadingsUploadEntry,
    EnrolFailureEntry,
)
"""Every entry type ``edge_tls`` writes."""
