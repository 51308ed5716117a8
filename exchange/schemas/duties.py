"""HTTP model of a signed duty (:mod:`core.duty`): what an administrator's act carries.

Wire form::

    {"statement": {"kind": "ibx.duty/v1", "origin": ..., "actor": ..., "action": ...,
                   "subject": ..., "details": {...}, "signed_at": "<RFC 3339>"},
     "signature": "<base64 Ed25519 over the RFC 8785 bytes of statement>"}

The shape is checked here; what it says (origin, act, subject, time, the
actor's ledgered key) is checked by the service that acts on it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.canonical import JsonValue
from core.duty import SignedDuty

__all__ = ["SignedDutyBody"]


class SignedDutyBody(BaseModel):
    """A signed duty as sent by the client (``core.duty.SignedDuty.to_dict()``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    statement: dict[str, Any] = Field(..., description="the duty statement (ibx.duty/v1)")
    signature: str = Field(
        ..., max_length=200, description="base64 Ed25519 signature over the statement's JCS bytes"
    )

    def to_signed(self) -> SignedDuty:
        """The duty as :class:`core.duty.SignedDuty`.

        Raises:
            DutyError: the statement or signature is malformed.
        """
        value: dict[str, JsonValue] = self.model_dump(mode="json")
        return SignedDuty.from_dict(value)

    @classmethod
    def of(cls, signed: SignedDuty) -> SignedDutyBody:
        """The wire form of ``signed``."""
        return cls.model_validate(signed.to_dict())
