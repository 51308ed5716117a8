"""HTTP models of the certificate routes: a revocation and what it changed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.canonical import JsonValue
from core.clock import format_rfc3339
from edge_tls import LineRevocation, RevocationReason

__all__ = ["RevocationCreate", "RevocationPublic", "RevokedPublic"]


class RevocationCreate(BaseModel):
    """A security officer revokes a certificate (and the rest of its device's line).

    ``duty`` is the officer's signed ``certificate.revoke`` on the serial (lower-case
    hex) with details ``{"reason": <reason>}`` (``core.duty.SignedDuty`` wire form).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: RevocationReason = Field(RevocationReason.UNSPECIFIED, description="RFC 5280 reason")
    duty: dict[str, Any] = Field(
        description=(
            'the officer\'s signed duty: {"statement": {"kind": "ibx.duty/v1", "origin", '
            '"actor", "action": "certificate.revoke", "subject": "<serial hex>", '
            '"details": {"reason"}, "signed_at"}, "signature": "<base64>"}'
        )
    )


class RevokedPublic(BaseModel):
    """One certificate the revocation changed (serial in lower-case hex)."""

    model_config = ConfigDict(frozen=True)

    serial: str
    reason: str


class RevocationPublic(BaseModel):
    """The certificate named, when and why it was revoked, and every certificate changed.

    The fields ``ibx pki revoke --json`` prints.
    """

    model_config = ConfigDict(frozen=True)

    serial: str
    reason: str
    revoked_at: str
    revoked: list[RevokedPublic]

    @classmethod
    def from_revocation(cls, revocation: LineRevocation) -> RevocationPublic:
        """The wire form of an applied revocation."""
        return cls(
            serial=f"{revocation.serial:x}",
            reason=revocation.reason.value,
            revoked_at=format_rfc3339(revocation.revoked_at),
            revoked=[
                RevokedPublic(serial=f"{e.serial:x}", reason=e.reason.value)
                for e in revocation.revoked
            ],
        )

    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON object."""
        value: dict[str, JsonValue] = self.model_dump(mode="json")
        return value
