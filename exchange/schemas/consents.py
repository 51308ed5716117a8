"""HTTP models of the consent routes: signed statements in, receipts, checks and usage out.

A consent and its revocation are signed by the enterprise on its own machine;
the exchange receives the signed statement in its wire form
(``{"receipt": {...}, "signature": base64}``, the JSON Schemas in
``consent/schema/``) and decodes it strictly with :mod:`consent` — these
models only bound sizes and document shapes. The answers carry the same
fields as the CLI's ``--json`` output (docs/cli.md, Output).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consent import (
    ConsentRecord,
    ConsentUsage,
    CoverageReport,
    Engine,
    Operation,
    Purpose,
)
from core.clock import format_rfc3339

__all__ = [
    "ConsentCheck",
    "ConsentDetail",
    "ConsentKeyPublic",
    "ConsentKeyRegistrationCreate",
    "ConsentPublic",
    "ConsentRequestPublic",
    "ConsentStatus",
    "ConsentUsagePublic",
    "CoverageReportPublic",
    "OwnerCoverage",
    "RefusalPublic",
    "SignedReceiptCreate",
    "SignedRevocationCreate",
    "UsageEntryPublic",
]

ConsentStatus = Literal["active", "revoked", "expired", "not_yet_valid", "used_up"]
"""A consent's state at the exchange's clock (:meth:`consent.ConsentRecord.status`)."""

_SIGNATURE = Field(
    ...,
    min_length=88,
    max_length=88,
    description="standard base64 of the 64-byte Ed25519 signature over the RFC 8785 "
    "canonical bytes of `receipt`",
)

_RECEIPT_EXAMPLE: dict[str, Any] = {
    "version": "ibx.consent.v1",
    "kind": "grant",
    "consent_id": "cst_0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "origin": "ibx.localhost/ledger",
    "enterprise": "cathode-co",
    "public_key": "Pm2ZpPJ3X0Zr7b0T2oM8cF1wq9Q3k6v2bq9bq3b0S7U=",
    "scope": [{"dataset": "cathode-co.energy", "fields": ["energy_kwh", "output_units"]}],
    "requester": {"role": "subbrain", "industry": "lithium-battery"},
    "purposes": ["benchmarking"],
    "operations": ["mean"],
    "engines": ["he", "mpc"],
    "min_cohort": 3,
    "valid_from": "2026-11-25T08:00:00.000000Z",
    "valid_until": "2027-11-25T08:00:00.000000Z",
    "use_limit": None,
    "notice": None,
    "nonce": "q1w2e3r4t5y6u7i8o9p0aA",
    "signed_at": "2026-11-25T08:00:00.000000Z",
}
_SIGNATURE_EXAMPLE = base64.b64encode(bytes(64)).decode()


class SignedReceiptCreate(BaseModel):
    """A consent the enterprise signed with its own key (``consent/schema/consent-receipt``).

    The exchange verifies it against the public key registered to the
    enterprise; the private key never leaves the enterprise.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"receipt": _RECEIPT_EXAMPLE, "signature": _SIGNATURE_EXAMPLE}]
        },
    )

    receipt: dict[str, Any] = Field(
        ..., description="the consent receipt, exactly as signed (consent-receipt.schema.json)"
    )
    signature: str = _SIGNATURE


class SignedRevocationCreate(BaseModel):
    """A revocation the enterprise signed with its own key (``consent-revocation`` schema)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "receipt": {
                        "version": "ibx.consent.v1",
                        "kind": "revocation",
                        "consent_id": _RECEIPT_EXAMPLE["consent_id"],
                        "origin": "ibx.localhost/ledger",
                        "enterprise": "cathode-co",
                        "public_key": _RECEIPT_EXAMPLE["public_key"],
                        "reason": "contract ended",
                        "nonce": "a1s2d3f4g5h6j7k8l9z0xX",
                        "signed_at": "2026-12-01T08:00:00.000000Z",
                    },
                    "signature": _SIGNATURE_EXAMPLE,
                }
            ]
        },
    )

    receipt: dict[str, Any] = Field(
        ..., description="the revocation, exactly as signed (consent-revocation.schema.json)"
    )
    signature: str = _SIGNATURE


class ConsentPublic(BaseModel):
    """An accepted consent and its state at the exchange's clock."""

    model_config = ConfigDict(frozen=True)

    consent_id: str
    enterprise: str
    status: ConsentStatus
    use_count: int
    accepted_at: str
    ledger_index: int
    """Where the grant is recorded on the ledger."""
    revoked_at: str | None
    revocation_ledger_index: int | None
    receipt: dict[str, Any] = Field(
        ..., description="the signed receipt's content (consent-receipt.schema.json)"
    )

    @classmethod
    def of(cls, record: ConsentRecord, *, now: datetime) -> ConsentPublic:
        """``record`` as the API shows it, its status judged at the exchange's ``now``."""
        return cls(**_public_fields(record, now))


class ConsentDetail(ConsentPublic):
    """A consent in full: its content, the enterprise's signature and the receipt's hash."""

    signature: str = Field(..., description="base64 Ed25519 signature over the receipt")
    receipt_sha256: str = Field(..., description="hex SHA-256 of the signed receipt bytes")

    @classmethod
    def of(cls, record: ConsentRecord, *, now: datetime) -> ConsentDetail:
        """``record`` in full, its status judged at the exchange's ``now``."""
        return cls(
            **_public_fields(record, now),
            signature=base64.b64encode(record.signed.signature).decode(),
            receipt_sha256=record.signed.receipt_hash(),
        )


def _public_fields(record: ConsentRecord, now: datetime) -> dict[str, Any]:
    revoked = record.revoked_at
    return {
        "consent_id": record.consent_id,
        "enterprise": record.enterprise,
        "status": record.status(now),
        "use_count": record.use_count,
        "accepted_at": format_rfc3339(record.accepted_at),
        "ledger_index": record.ledger_index,
        "revoked_at": format_rfc3339(revoked) if revoked is not None else None,
        "revocation_ledger_index": record.revocation_ledger_index,
        "receipt": record.signed.receipt.to_dict(),
    }


class ConsentCheck(BaseModel):
    """What a requester wants to do, to learn which consents on file would allow it now."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "purpose": "benchmarking",
                    "operation": "mean",
                    "engine": "he",
                    "datasets": ["cathode-co.energy"],
                    "fields": ["energy_kwh"],
                }
            ]
        },
    )

    requester: str | None = Field(
        None, max_length=128, description="the caller (the default); no one else's requests"
    )
    purpose: Purpose
    operation: Operation
    engine: Engine
    datasets: list[str] = Field(..., min_length=1, max_length=256)
    fields: list[str] = Field(..., min_length=1, max_length=256)
    time: str | None = Field(
        None,
        max_length=40,
        description="RFC 3339; checked against the exchange's clock, never used to judge",
    )


class ConsentRequestPublic(BaseModel):
    """The request as it was checked (the requester filled in)."""

    model_config = ConfigDict(frozen=True)

    requester: str
    purpose: Purpose
    operation: Operation
    engine: Engine
    datasets: list[str]
    fields: list[str]
    time: str | None


class RefusalPublic(BaseModel):
    """Why one consent (or the lack of one) does not cover the request."""

    model_config = ConfigDict(frozen=True)

    owner: str
    consent_id: str | None
    reason: str
    """A stable code: ``revoked``, ``expired``, ``scope_mismatch``, ``no_consent``..."""
    detail: str


class OwnerCoverage(BaseModel):
    """For one data owner: the consents that cover the request, and the refusals."""

    model_config = ConfigDict(frozen=True)

    covered_by: list[str]
    refusals: list[RefusalPublic]


class CoverageReportPublic(BaseModel):
    """Per owner of the requested datasets, what the consents on file allow now."""

    model_config = ConfigDict(frozen=True)

    request: ConsentRequestPublic
    checked_at: str
    """The exchange's time the consents were judged at."""
    owners: dict[str, OwnerCoverage]
    included: list[str]
    """The owners a computation would include now (every minimum cohort honoured)."""

    @classmethod
    def of(cls, report: CoverageReport) -> CoverageReportPublic:
        """The report as the API shows it (the fields of ``ibx consent check --json``)."""
        return cls.model_validate(report.to_dict())


class UsageEntryPublic(BaseModel):
    """One decision or job that relied on a consent, as the ledger recorded it."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["decision", "job"]
    time: str
    decision_id: str
    job_id: str | None
    status: str
    """``used`` (a decision), ``released`` or ``stopped`` (a job)."""
    requester: str
    purpose: str
    operation: str
    engine: str
    ledger_index: int


class ConsentUsagePublic(BaseModel):
    """One of an enterprise's consents and everything that relied on it."""

    model_config = ConfigDict(frozen=True)

    consent_id: str
    requester: str
    """Who the consent is for, described (``every subbrain of lithium-battery``)."""
    status: ConsentStatus
    decisions: int
    entries: list[UsageEntryPublic]

    @classmethod
    def of(cls, usage: ConsentUsage, *, now: datetime) -> ConsentUsagePublic:
        """``usage`` as the API shows it, the consent's status judged at ``now``."""
        receipt = usage.record.signed.receipt
        return cls(
            consent_id=receipt.consent_id,
            requester=receipt.requester.describe(),
            status=usage.record.status(now),
            decisions=sum(1 for e in usage.entries if e.kind == "decision"),
            entries=[
                UsageEntryPublic(
                    kind=e.kind,
                    time=format_rfc3339(e.time),
                    decision_id=e.decision_id,
                    job_id=e.job_id,
                    status=e.status,
                    requester=e.requester,
                    purpose=e.purpose,
                    operation=e.operation,
                    engine=e.engine,
                    ledger_index=e.ledger_index,
                )
                for e in usage.entries
            ],
        )


class ConsentKeyRegistrationCreate(BaseModel):
    """The caller registers (or rotates) its consent key: a statement signed by the new key
    and, when it replaces one, by the key registered now (:class:`consent.KeyRegistration`)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "registration": {
                        "version": "ibx.consent.v1",
                        "kind": "key-registration",
                        "origin": "ibx.localhost/ledger",
                        "enterprise": "cathode-co",
                        "public_key": _RECEIPT_EXAMPLE["public_key"],
                        "previous_key": None,
                        "signed_at": "2026-11-25T08:00:00.000000Z",
                    },
                    "signature": _SIGNATURE_EXAMPLE,
                    "previous_signature": None,
                }
            ]
        },
    )

    registration: dict[str, Any] = Field(
        ...,
        description="version, kind (key-registration), origin, enterprise, public_key, "
        "previous_key (the key registered now, or null), signed_at",
    )
    signature: str = Field(
        ..., min_length=88, max_length=88, description="base64 signature by the new key"
    )
    previous_signature: str | None = Field(
        None, min_length=88, max_length=88, description="base64 signature by the replaced key"
    )


class ConsentKeyPublic(BaseModel):
    """The consent key now registered to an enterprise."""

    model_config = ConfigDict(frozen=True)

    enterprise: str
    public_key: str
    """Base64 Ed25519 public key."""
    key_fingerprint: str
    """Hex SHA-256 of the raw key."""
