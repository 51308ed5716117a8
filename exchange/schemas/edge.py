"""HTTP models of the edge routes: bootstrap token requests and answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BootstrapTokenCreate", "BootstrapTokenPublic"]


class BootstrapTokenCreate(BaseModel):
    """An enterprise asks for a one-time enrolment token for one of its devices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field(..., min_length=1, max_length=64, description="the device's name")
    ttl_seconds: int | None = Field(
        None, ge=60, le=30 * 86400, description="lifetime [default 24 h, at most 30 days]"
    )


class BootstrapTokenPublic(BaseModel):
    """The token, shown once; the exchange keeps only its hash."""

    model_config = ConfigDict(frozen=True)

    enterprise: str
    device: str
    token: str
    expires_at: datetime
