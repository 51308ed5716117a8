"""The ledger entries :mod:`consent` writes, as typed payloads.

Each model is the exact payload of one entry type (``TYPE``): the service
writes payloads from them (``model.model_dump(mode="json")``, the same bytes as
before they were typed) and reads its own entries back through them; an
auditor parses every entry through them, and one that does not parse is a
finding. Signed documents inside an entry (a receipt, a revocation) are parsed
by their own strict decoders, so a malformed one does not validate::

    consent.grant     {consent_id, enterprise, receipt, receipt_hash, signature}
    consent.revoke    {consent_id, enterprise, revocation, receipt_hash, signature}
    consent.use       {decision_id, request, checked_at, consents: [ref...]}
    consent.job       {decision_id, job_id, status, reason, checked_at, consents: [ref...]}
    dataset.register  {dataset_id, owner, fields, classification, description, created_at}

    ref = {consent_id, enterprise, receipt_hash}

Subjects (the ledger's index, :attr:`core.events.Event.subjects`, not part of
the entry): a grant is indexed under its consent id, its enterprise and
``receipt:<receipt hash>`` (:func:`receipt_subject`); a revocation under the
consent id and the enterprise; a use and a job under every consent id they
cite; a dataset registration under the dataset id and its owner. The consent
service finds them there to check its rows at the moment of use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from consent._check import ConsentRequest
from consent._receipt import ConsentReceipt, Revocation, SignedReceipt, SignedRevocation
from consent._vocab import Classification
from consent.errors import InvalidConsentError
from core.canonical import canonical_bytes
from core.clock import parse_rfc3339

__all__ = [
    "ENTRY_TYPES",
    "RECEIPT_SUBJECT_PREFIX",
    "ConsentEntry",
    "ConsentRef",
    "DatasetRegisterEntry",
    "GrantEntry",
    "JobEntry",
    "RevokeEntry",
    "UseEntry",
    "receipt_subject",
]

RECEIPT_SUBJECT_PREFIX: Final = "receipt:"
_HASH = r"^[0-9a-f]{64}$"
_CONSENT_ID = r"^cst_[0-9a-f]{32}$"


def receipt_subject(receipt_hash: str) -> str:
    """The subject a grant is indexed under besides its consent id: ``receipt:<hash>``."""
    return RECEIPT_SUBJECT_PREFIX + receipt_hash


def _signature(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("signature is not base64") from exc
    if len(raw) != 64:
        raise ValueError("signature must be 64 bytes of Ed25519")
    return raw


def _rfc3339(value: str) -> str:
    try:
        parse_rfc3339(value)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 UTC time: {exc}") from exc
    return value


class ConsentEntry(BaseModel):
    """Common shape: frozen, no field beyond the payload's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]


class ConsentRef(BaseModel):
    """A consent cited by a use or a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    consent_id: str = Field(..., pattern=_CONSENT_ID, description="the consent's id")
    enterprise: str = Field(..., min_length=1, description="the enterprise that granted it")
    receipt_hash: str = Field(
        ..., pattern=_HASH, description="hex SHA-256 of the receipt's signed RFC 8785 bytes"
    )


class GrantEntry(ConsentEntry):
    """``consent.grant``: an enterprise's signed receipt, verified and accepted.

    ``receipt`` is the signed receipt object (``consent/schema``); ``receipt_hash``
    the hex SHA-256 of its RFC 8785 bytes; ``signature`` the enterprise's Ed25519
    signature over those bytes, in base64.
    """

    TYPE: ClassVar[str] = "consent.grant"

    consent_id: str = Field(..., pattern=_CONSENT_ID, description="the receipt's consent id")
    enterprise: str = Field(..., min_length=1, description="the granting enterprise")
    receipt: dict[str, Any] = Field(..., description="the signed receipt (consent receipt v1)")
    receipt_hash: str = Field(..., pattern=_HASH, description="hex SHA-256 of the signed bytes")
    signature: str = Field(..., description="base64 Ed25519 signature over the signed bytes")

    @field_validator("receipt")
    @classmethod
    def _receipt_decodes(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            ConsentReceipt.from_dict(value)
        except InvalidConsentError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("signature")
    @classmethod
    def _signature_decodes(cls, value: str) -> str:
        _signature(value)
        return value

    @model_validator(mode="after")
    def _agrees(self) -> GrantEntry:
        receipt = ConsentReceipt.from_dict(self.receipt)
        if receipt.consent_id != self.consent_id or receipt.enterprise != self.enterprise:
            raise ValueError("consent_id and enterprise must be the receipt's")
        if hashlib.sha256(canonical_bytes(self.receipt)).hexdigest() != self.receipt_hash:
            raise ValueError("receipt_hash is not the hash of the receipt")
        return self

    @classmethod
    def of(cls, signed: SignedReceipt) -> GrantEntry:
        """The entry recording ``signed``."""
        receipt = signed.receipt
        return cls(
            consent_id=receipt.consent_id,
            enterprise=receipt.enterprise,
            receipt=receipt.to_dict(),
            receipt_hash=signed.receipt_hash(),
            signature=base64.b64encode(signed.signature).decode(),
        )

    def signed(self) -> SignedReceipt:
        """The signed receipt recorded (its signature is not verified here)."""
        return SignedReceipt(ConsentReceipt.from_dict(self.receipt), _signature(self.signature))


class RevokeEntry(ConsentEntry):
    """``consent.revoke``: an enterprise's signed revocation, verified and accepted.

    ``revocation`` is the signed revocation object; ``receipt_hash`` the hex
    SHA-256 of *its* RFC 8785 bytes; ``signature`` the enterprise's Ed25519
    signature over them, in base64.
    """

    TYPE: ClassVar[str] = "consent.revoke"

    consent_id: str = Field(..., pattern=_CONSENT_ID, description="the consent revoked")
    enterprise: str = Field(..., min_length=1, description="the revoking enterprise")
    revocation: dict[str, Any] = Field(..., description="the signed revocation (v1)")
    receipt_hash: str = Field(
        ..., pattern=_HASH, description="hex SHA-256 of the revocation's signed bytes"
    )
    signature: str = Field(..., description="base64 Ed25519 signature over the signed bytes")

    @field_validator("revocation")
    @classmethod
    def _revocation_decodes(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Revocation.from_dict(value)
        except InvalidConsentError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("signature")
    @classmethod
    def _signature_decodes(cls, value: str) -> str:
        _signature(value)
        return value

    @model_validator(mode="after")
    def _agrees(self) -> RevokeEntry:
        revocation = Revocation.from_dict(self.revocation)
        if revocation.consent_id != self.consent_id or revocation.enterprise != self.enterprise:
            raise ValueError("consent_id and enterprise must be the revocation's")
        if hashlib.sha256(canonical_bytes(self.revocation)).hexdigest() != self.receipt_hash:
            raise ValueError("receipt_hash is not the hash of the revocation")
        return self

    @classmethod
    def of(cls, signed: SignedRevocation) -> RevokeEntry:
        """The entry recording ``signed``."""
        revocation = signed.revocation
        return cls(
            consent_id=revocation.consent_id,
            enterprise=revocation.enterprise,
            revocation=revocation.to_dict(),
            receipt_hash=signed.receipt_hash(),
            signature=base64.b64encode(signed.signature).decode(),
        )

    def signed(self) -> SignedRevocation:
        """The signed revocation recorded (its signature is not verified here)."""
        return SignedRevocation(Revocation.from_dict(self.revocation), _signature(self.signature))


class UseEntry(ConsentEntry):
    """``consent.use``: a decision relied on these consents, counted once each.

    ``request`` is the consent request checked (:meth:`consent.ConsentRequest.to_dict`);
    ``checked_at`` the exchange's time of the check (RFC 3339, UTC); ``consents``
    one reference per included owner, sorted by enterprise.
    """

    TYPE: ClassVar[str] = "consent.use"

    decision_id: str = Field(..., min_length=1, max_length=128, description="the decision")
    request: dict[str, Any] = Field(..., description="the consent request checked")
    checked_at: str = Field(..., description="the exchange's time of the check (RFC 3339)")
    consents: list[ConsentRef] = Field(..., min_length=1, description="the consents used")

    @field_validator("request")
    @classmethod
    def _request_decodes(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            ConsentRequest.from_dict(value)
        except InvalidConsentError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("checked_at")
    @classmethod
    def _time(cls, value: str) -> str:
        return _rfc3339(value)

    def consent_request(self) -> ConsentRequest:
        """The request as the service's type."""
        return ConsentRequest.from_dict(self.request)


class JobEntry(ConsentEntry):
    """``consent.job``: before a job released its result, its decision's consents re-checked.

    ``status`` is ``released`` (all still valid) or ``stopped`` (``reason`` says
    why: a refusal's reason code such as ``revoked``); ``checked_at`` the
    exchange's time of the re-check; ``consents`` the decision's consents.
    """

    TYPE: ClassVar[str] = "consent.job"

    decision_id: str = Field(..., min_length=1, max_length=128, description="the decision")
    job_id: str = Field(..., min_length=1, description="the job releasing")
    status: Literal["released", "stopped"] = Field(..., description="the verdict")
    reason: str | None = Field(..., description="why it stopped (a refusal reason), or null")
    checked_at: str = Field(..., description="the exchange's time of the re-check (RFC 3339)")
    consents: list[ConsentRef] = Field(..., min_length=1, description="the decision's consents")

    @field_validator("checked_at")
    @classmethod
    def _time(cls, value: str) -> str:
        return _rfc3339(value)

    @model_validator(mode="after")
    def _reason_iff_stopped(self) -> JobEntry:
        if (self.status == "stopped") != (self.reason is not None):
            raise ValueError("a stopped job states its reason, a released one none")
        return self


class DatasetRegisterEntry(ConsentEntry):
    """``dataset.register``: an enterprise registered a dataset (metadata only).

    ``fields`` sorted; ``classification`` one of ``general``, ``important``,
    ``core``; ``created_at`` RFC 3339, UTC.
    """

    TYPE: ClassVar[str] = "dataset.register"

    dataset_id: str = Field(..., min_length=1, max_length=128, description="the dataset's id")
    owner: str = Field(..., min_length=1, description="the owning enterprise")
    fields: list[str] = Field(..., min_length=1, description="its field names, sorted")
    classification: Classification = Field(..., description="its data classification")
    description: str | None = Field(..., description="free text, or null")
    created_at: str = Field(..., description="when it was registered (RFC 3339)")

    @field_validator("created_at")
    @classmethod
    def _time(cls, value: str) -> str:
        return _rfc3339(value)


ENTRY_TYPES: Final[tuple[type[ConsentEntry], ...]] = (
    GrantEntry,
    RevokeEntry,
    UseEntry,
    JobEntry,
    DatasetRegisterEntry,
)
"""Every entry type consent writes."""
