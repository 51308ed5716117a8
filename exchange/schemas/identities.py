"""HTTP models of the identity routes: a registration, a revocation and their answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.canonical import JsonValue
from core.clock import format_rfc3339
from exchange.identities import Identity, IssuedIdentity, Role

__all__ = ["IdentityCreate", "IdentityPublic", "IdentityRevocation", "NewIdentity"]

_DUTY = (
    'a security officer\'s signed duty: {"statement": {"kind": "ibx.duty/v1", "origin", '
    '"actor", "action", "subject": "<name>", "details", "signed_at"}, "signature": "<base64>"}'
)


class IdentityCreate(BaseModel):
    """Register an identity; an administrator with its key and an officer's
    ``identity.create`` duty (details ``{"role", "public_key"}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    role: Role
    industry: str | None = Field(None, max_length=64)
    public_key: str | None = Field(None, max_length=100, description="base64 Ed25519 key")
    duty: dict[str, Any] | None = Field(None, description=_DUTY)


class IdentityRevocation(BaseModel):
    """Revoke an identity; an administrator with an officer's ``identity.revoke`` duty
    (details ``{"role"}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duty: dict[str, Any] | None = Field(None, description=_DUTY)


class IdentityPublic(BaseModel):
    """An identity as the registry knows it (never its token)."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: str
    industry: str | None
    status: str
    public_key: str | None
    token_expires_at: str

    @classmethod
    def of(cls, identity: Identity) -> IdentityPublic:
        """The wire form of ``identity``."""
        return cls(
            name=identity.name,
            role=identity.role.value,
            industry=identity.industry,
            status=identity.status.value,
            public_key=identity.public_key.to_base64() if identity.public_key else None,
            token_expires_at=format_rfc3339(identity.token_expires_at),
        )

    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON object."""
        value: dict[str, JsonValue] = self.model_dump(mode="json")
        return value


class NewIdentity(IdentityPublic):
    """A new identity and its bearer token, shown this once."""

    token: str = Field(examples=["ibx_…"])

    @classmethod
    def issued(cls, issued: IssuedIdentity) -> NewIdentity:
        """The wire form of a registration's answer."""
        return cls(**IdentityPublic.of(issued.identity).model_dump(), token=issued.token)
