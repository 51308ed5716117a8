"""``/v1/audit``: what an auditor needs from the exchange besides the ledger.

``GET /v1/audit/state``: the rows the exchange acts on (consents with their
revocation and use count, identities with role, status and key, the active
policy version), as stored, for ``ibx audit export`` to put in the export's
``state`` line and ``ibx audit verify`` to reconcile with the ledger. Who
consented to whom is audit detail: the route needs ``ledger_read`` (auditors;
witnesses, who read every entry anyway).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from core.canonical import JsonValue
from exchange.access import Grant
from exchange.audit_state import served_state
from exchange.auth import get_runtime, granted
from exchange.runtime import Runtime

__all__ = ["AuditStatePublic", "router"]

router = APIRouter(prefix="/v1/audit", tags=["audit"])

_STATE_EXAMPLE: dict[str, JsonValue] = {
    "consents": [
        {
            "consent_id": "cst_3f0c9e6a1b2d4c5e8f7a6b5c4d3e2f1a",
            "enterprise": "cathode-co",
            "receipt_hash": "9b1c" + "0" * 60,
            "ledger_index": 12,
            "revoked": False,
            "use_count": 3,
        }
    ],
    "identities": [
        {
            "name": "cathode-co",
            "role": "enterprise",
            "status": "active",
            "public_key": "MCowBQYDK2VwAyEA" + "A" * 28,
        }
    ],
    "active_policy": "4e7d" + "0" * 60,
}


class ConsentRowPublic(BaseModel):
    """A consent row as stored."""

    model_config = ConfigDict(extra="forbid")

    consent_id: str
    enterprise: str
    receipt_hash: str = Field(description="hex SHA-256 of the stored receipt's RFC 8785 bytes")
    ledger_index: int = Field(description="the consent.grant entry the row points at")
    revoked: bool
    use_count: int


class IdentityRowPublic(BaseModel):
    """An identity row as stored (never its token)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    role: str
    status: str
    public_key: str | None = Field(description="base64 Ed25519 key, or null")


class AuditStatePublic(BaseModel):
    """The rows ``ibx audit verify`` reconciles with the ledger (``audit.ServedState``)."""

    model_config = ConfigDict(extra="forbid")

    consents: list[ConsentRowPublic]
    identities: list[IdentityRowPublic]
    active_policy: str | None = Field(description="the active policy row's version hash")


@router.get(
    "/state",
    response_model=AuditStatePublic,
    responses={
        200: {
            "description": "the rows as stored: consents, identities, the active policy version",
            "content": {"application/json": {"example": _STATE_EXAMPLE}},
        },
        401: {"description": "no token, or an unknown, expired or revoked one"},
        403: {"description": "the active policy grants the caller no ledger_read"},
    },
)
def state(
    _grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> AuditStatePublic:
    """The exchange's rows as served, for reconciliation with the ledger (docs/audit.md).

    Raises:
        ForbiddenError: the caller may not read the ledger (403).
    """
    return AuditStatePublic.model_validate(served_state(runtime).to_dict())
