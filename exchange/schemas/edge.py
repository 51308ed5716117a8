"""HTTP models of the edge routes: bootstrap token requests and answers, sealed batches."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BootstrapTokenCreate", "BootstrapTokenPublic", "SealedBatchPublic"]


class BootstrapTokenCreate(BaseModel):
    """An enterprise asks for a one-time enrolment token for one of its devices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field(..., min_length=1, max_length=64, description="the device's name")
    ttl_seconds: int | None = Field(
        None, ge=60, le=30 * 86400, description="lifetime [default 24 h, at most 30 days]"
    )
    enterprise: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="the enterprise the caller means to act as: refused (403) unless the caller",
    )


class BootstrapTokenPublic(BaseModel):
    """The token, shown once; the exchange keeps only its hash."""

    model_config = ConfigDict(frozen=True)

    enterprise: str
    device: str
    token: str
    expires_at: datetime


class SealedBatchPublic(BaseModel):
    """One sealed batch as its enterprise pulls it: ciphertext only, opened by the caller."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 17,
                    "device": "kiln-3",
                    "sha256": "9f2c" + "0" * 60,
                    "received_at": "2026-12-02T04:35:02Z",
                    "ciphertext": "base64 of the sealed box",
                }
            ]
        },
    )

    id: int = Field(..., ge=1, description="the batch id, increasing in upload order")
    device: str = Field(..., description="the device the exchange stored it under")
    sha256: str = Field(..., description="SHA-256 of the ciphertext (hex), as on the ledger")
    received_at: str = Field(..., description="when the exchange stored it (RFC 3339, UTC)")
    ciphertext: str = Field(..., description="the sealed box, base64")
