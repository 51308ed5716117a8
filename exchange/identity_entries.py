"""The ledger entries the identity registry writes, as typed payloads.

Each model is one entry type (``TYPE``), its fields exactly the payload:
writers build the payload from the model (:meth:`IdentityEntry.to_payload`)
and readers parse it back (``Model.model_validate(entry.payload)``), so an
entry of the wrong shape is refused instead of read with ``.get()``. The
registry of every package's entry types (``exchange/ledger_types.py``) takes
:data:`ENTRY_TYPES` from here.

``duty`` (on ``identity.create`` of an administrator, ``identity.revoke`` of
one, and ``identity.certificate.revoke``) is the signed duty's wire form
(:meth:`core.duty.SignedDuty.to_dict`); it is parsed through
:meth:`core.duty.SignedDuty.from_dict`, so a malformed one does not validate.
``bootstrap`` marks the two security officers ``ibx init`` registers, the only
administrators registered without a duty.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.canonical import JsonValue
from core.duty import DutyError, SignedDuty

__all__ = [
    "ENTRY_TYPES",
    "AuthLockoutEntry",
    "CertificateIssueEntry",
    "CertificateRevokeEntry",
    "IdentityCreateEntry",
    "IdentityEntry",
    "IdentityRevokeEntry",
    "PublicKeyEntry",
    "TokenRotateEntry",
    "parse_duty",
]

_NAME = Field(min_length=1, max_length=128)


def parse_duty(value: dict[str, Any]) -> SignedDuty:
    """The signed duty of an entry's ``duty`` field.

    Raises:
        DutyError: not the wire form of a signed duty.
    """
    return SignedDuty.from_dict(value)


class IdentityEntry(BaseModel):
    """Common shape: frozen, no field beyond the payload's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]
    _OMIT_UNSET: ClassVar[frozenset[str]] = frozenset()
    """Optional fields left out of the payload when unset (entries written before them)."""

    def to_payload(self) -> dict[str, JsonValue]:
        """The ledger payload: the JSON form, optional fields left out when unset."""
        data: dict[str, JsonValue] = self.model_dump(mode="json")
        for name in self._OMIT_UNSET:
            if data.get(name) in (None, False):
                data.pop(name, None)
        return data

    @field_validator("duty", mode="after", check_fields=False)
    @classmethod
    def _duty_parses(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                parse_duty(value)
            except DutyError as exc:
                raise ValueError(str(exc)) from exc
        return value


class IdentityCreateEntry(IdentityEntry):
    """``identity.create``: a new identity (an administrator's with its officer's duty)."""

    TYPE: ClassVar[str] = "identity.create"
    _OMIT_UNSET: ClassVar[frozenset[str]] = frozenset({"duty", "bootstrap"})

    name: str = _NAME
    role: str
    industry: str | None
    public_key: str | None
    token_expires_at: str
    duty: dict[str, Any] | None = None
    bootstrap: bool = False


class IdentityRevokeEntry(IdentityEntry):
    """``identity.revoke``: the identity's token stops working (administrators: with a duty)."""

    TYPE: ClassVar[str] = "identity.revoke"
    _OMIT_UNSET: ClassVar[frozenset[str]] = frozenset({"duty"})

    name: str = _NAME
    role: str
    duty: dict[str, Any] | None = None


class PublicKeyEntry(IdentityEntry):
    """``identity.public_key``: the identity's Ed25519 key registered or rotated."""

    TYPE: ClassVar[str] = "identity.public_key"

    name: str = _NAME
    public_key: str


class TokenRotateEntry(IdentityEntry):
    """``identity.token_rotate``: a new bearer token (never the token itself)."""

    TYPE: ClassVar[str] = "identity.token_rotate"

    name: str = _NAME
    role: str
    token_expires_at: str


class AuthLockoutEntry(IdentityEntry):
    """``identity.auth_lockout``: a client address locked out after failed authentications."""

    TYPE: ClassVar[str] = "identity.auth_lockout"

    source: str
    failures: int = Field(ge=0)
    window_seconds: int = Field(ge=0)
    locked_until: str


class CertificateIssueEntry(IdentityEntry):
    """``identity.certificate.issue``: an administrator's client certificate."""

    TYPE: ClassVar[str] = "identity.certificate.issue"

    name: str = _NAME
    role: str
    serial: str
    fingerprint: str
    subject_uri: str
    not_after: str
    superseded: list[str]


class CertificateRevokeEntry(IdentityEntry):
    """``identity.certificate.revoke``: administrator certificates revoked (by an officer's
    ``certificate.revoke`` duty, from now on)."""

    TYPE: ClassVar[str] = "identity.certificate.revoke"
    _OMIT_UNSET: ClassVar[frozenset[str]] = frozenset({"duty", "reason"})

    name: str = _NAME
    serials: list[str]
    revoked_at: str
    reason: str | None = None
    duty: dict[str, Any] | None = None


ENTRY_TYPES: Final[tuple[type[IdentityEntry], ...]] = (
    IdentityCreateEntry,
    IdentityRevokeEntry,
    PublicKeyEntry,
    TokenRotateEntry,
    AuthLockoutEntry,
    CertificateIssueEntry,
    CertificateRevokeEntry,
)
"""Every entry type the identity registry, its lockout guard and the administrators'
certificates write."""
