"""HTTP models of the consent drafts: the terms in, the unsigned statement and its bytes out.

A draft is what a browser (or any client without ``consent``'s code) needs to
sign a grant or a revocation itself: the exchange fills in what it knows (the
caller's name and registered key, the deployment's origin, a fresh id, nonce
and signing time) and answers the statement with the exact RFC 8785 bytes to
sign. Nothing is recorded; the client signs with its own key and submits
``{"receipt": statement, "signature": ...}`` to ``POST /v1/consents`` (or the
revocation route), which verifies it like any other.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consent import Engine, Operation, Purpose

__all__ = [
    "ConsentDraftCreate",
    "DatasetScopeCreate",
    "RequesterCreate",
    "RevocationDraftCreate",
    "StatementDraftPublic",
]

_NAME = Field(..., min_length=1, max_length=128)


class DatasetScopeCreate(BaseModel):
    """One dataset of the caller's and the fields of it the consent covers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = _NAME
    fields: list[str] = Field(..., min_length=1, max_length=256)


class RequesterCreate(BaseModel):
    """Who the consent is for: ``identity``, or ``role`` (and optionally ``industry``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity: str | None = Field(None, min_length=1, max_length=128)
    role: str | None = Field(None, min_length=1, max_length=128)
    industry: str | None = Field(None, min_length=1, max_length=128)


class ConsentDraftCreate(BaseModel):
    """The terms of a consent the caller means to sign (as ``ibx consent grant`` takes them)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "scope": [{"dataset": "cathode-co.energy", "fields": ["energy_kwh"]}],
                    "requester": {"role": "subbrain", "industry": "lithium-battery"},
                    "purposes": ["benchmarking"],
                    "operations": ["mean"],
                    "engines": ["he", "mpc"],
                    "min_cohort": 3,
                    "days": 365,
                    "use_limit": 100,
                }
            ]
        },
    )

    scope: list[DatasetScopeCreate] = Field(..., min_length=1, max_length=64)
    requester: RequesterCreate
    purposes: list[Purpose] = Field(..., min_length=1, max_length=16)
    operations: list[Operation] = Field(..., min_length=1, max_length=32)
    engines: list[Engine] = Field(
        default_factory=lambda: [Engine.HE, Engine.MPC], min_length=1, max_length=8
    )
    min_cohort: int = Field(3, ge=1, le=1_000_000)
    valid_from: str | None = Field(None, max_length=40, description="RFC 3339 [default: now]")
    valid_until: str | None = Field(
        None, max_length=40, description="RFC 3339 [default: valid_from + days]"
    )
    days: int = Field(365, ge=1, le=36_500, description="validity when no valid_until")
    use_limit: int | None = Field(None, ge=1, le=1_000_000_000)
    notice: str | None = Field(None, max_length=2000)


class RevocationDraftCreate(BaseModel):
    """Why the caller revokes (recorded with the revocation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str | None = Field(None, max_length=2000)


class StatementDraftPublic(BaseModel):
    """An unsigned statement and the exact bytes to sign (Ed25519, nothing else)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["grant", "revocation"]
    statement: dict[str, Any] = Field(
        ...,
        description="the grant receipt (consent-receipt.schema.json) or the revocation "
        "(consent-revocation.schema.json), to submit unchanged as `receipt`",
    )
    canonical: str = Field(
        ..., description="standard base64 of the statement's RFC 8785 bytes: what is signed"
    )
    sha256: str = Field(..., description="hex SHA-256 of those bytes (the receipt hash)")
    submit_to: str = Field(..., description="where the signed statement goes (POST)")
