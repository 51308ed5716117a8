"""``/v1/me``: who the token is, and replacing one's own token."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from core.clock import format_rfc3339
from exchange.access import Grant
from exchange.auth import granted

__all__ = ["Me", "router"]

router = APIRouter(prefix="/v1/me", tags=["identity"])


class Me(BaseModel):
    """The caller as the registry knows it."""

    name: str
    role: str
    industry: str | None
    public_key: str | None
    token_expires_at: str
    policy_version: str | None
    """The policy version that authorized this call."""


@router.get("", response_model=Me)
def me(grant: Grant = Depends(granted)) -> Me:  # noqa: B008
    """Who this token is, its role and when it expires."""
    identity = grant.identity
    return Me(
        name=identity.name,
        role=identity.role.value,
        industry=identity.industry,
        public_key=identity.public_key.to_base64() if identity.public_key else None,
        token_expires_at=format_rfc3339(identity.token_expires_at),
        policy_version=grant.policy_version,
    )
