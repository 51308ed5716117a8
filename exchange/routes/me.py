"""``/v1/me``: who the token is, and replacing one's own token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from core.clock import format_rfc3339
from exchange.access import Grant
from exchange.auth import get_runtime, granted
from exchange.runtime import Runtime

__all__ = ["Me", "NewToken", "router"]

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


class NewToken(BaseModel):
    """A replacement bearer token, shown this once; the previous one no longer works."""

    name: str
    token: str = Field(examples=["ibx_…"])
    token_expires_at: str


@router.post(
    "/token",
    response_model=NewToken,
    responses={
        401: {"description": "missing, unknown, expired or revoked token"},
        429: {"description": "too many failed authentications from this address"},
    },
)
def rotate_token(
    response: Response,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> NewToken:
    """Replace the caller's token: the new one is returned once, the old one stops at once."""
    issued = runtime.identities.rotate_token(grant.identity.name, actor=grant.identity.name)
    response.headers["Cache-Control"] = "no-store"
    return NewToken(
        name=issued.identity.name,
        token=issued.token,
        token_expires_at=format_rfc3339(issued.identity.token_expires_at),
    )
