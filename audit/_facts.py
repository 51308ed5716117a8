"""What the cross-entry checks read from each entry, and what they remember.

``audit`` cannot import the packages that write entries (``consent``,
``policies``, ``mpc``, ``edge_tls``, ``exchange``): it receives each entry
already parsed through its typed class (:class:`ParsedEntryLike`, H4a's
``ParsedEntry``), so an entry of the wrong shape is already a finding. The
invariants then read the entry's canonical payload through :class:`Payload`,
which names each member it needs and its JSON type: a consent receipt must be
re-encoded from exactly the JSON that was signed, and reading the payload keeps
this verifier independent of the writers' model classes (the point of an
auditor's own tool). A member missing or of another type raises
:class:`PayloadShapeError`, which the invariants report as a finding instead
of failing.

The facts (:class:`IdentityFact`, :class:`ConsentFact`, :class:`JobFact`,
:class:`CertificateFact`...) are what the single pass in index order remembers
of earlier entries: who held which key when, which consents were granted,
used and revoked, which jobs were decided and released.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from core.canonical import JsonValue
from core.clock import parse_rfc3339
from core.keys import Ed25519PublicKey
from ledger import LedgerEntry

__all__ = [
    "ADMINISTRATIVE_ROLES",
    "CertificateFact",
    "ConsentFact",
    "IdentityFact",
    "JobFact",
    "ParsedEntryLike",
    "Payload",
    "PayloadShapeError",
    "TokenFact",
]

ADMINISTRATIVE_ROLES = frozenset({"security_officer", "auditor", "witness", "sysadmin"})
"""Roles registered only with a security officer's signed ``identity.create`` duty."""
OFFICER = "security_officer"


class ParsedEntryLike(Protocol):
    """One entry as the verifier parsed it (``audit._parse.ParsedEntry``)."""

    @property
    def index(self) -> int:
        """Its ledger index."""
        ...

    @property
    def entry(self) -> LedgerEntry:
        """The decoded entry (type, actor, time, payload, exact leaf bytes)."""
        ...

    @property
    def typed(self) -> object | None:
        """Its payload parsed through the entry type's class; None when it did not parse."""
        ...


class PayloadShapeError(ValueError):
    """A payload member the invariants need is missing or of another JSON type."""


@dataclass(frozen=True)
class Payload:
    """Typed reads of one JSON object (an entry payload or a member of one)."""

    data: Mapping[str, JsonValue]
    where: str = "payload"

    def raw(self, key: str) -> JsonValue:
        """The member ``key`` as it is.

        Raises:
            PayloadShapeError: no such member.
        """
        if key not in self.data:
            raise PayloadShapeError(f"{self.where} has no {key!r}")
        return self.data[key]

    def text(self, key: str) -> str:
        """The string member ``key``.

        Raises:
            PayloadShapeError: missing or not a string.
        """
        value = self.raw(key)
        if not isinstance(value, str):
            raise PayloadShapeError(f"{self.where}.{key} is not a string")
        return value

    def opt_text(self, key: str) -> str | None:
        """The string member ``key``, or None when absent or null.

        Raises:
            PayloadShapeError: present and neither null nor a string.
        """
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise PayloadShapeError(f"{self.where}.{key} is not a string")
        return value

    def integer(self, key: str) -> int:
        """The integer member ``key``.

        Raises:
            PayloadShapeError: missing or not an integer.
        """
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PayloadShapeError(f"{self.where}.{key} is not an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        """The integer member ``key``, or None when absent or null.

        Raises:
            PayloadShapeError: present and neither null nor an integer.
        """
        if self.data.get(key) is None:
            return None
        return self.integer(key)

    def flag(self, key: str) -> bool:
        """The boolean member ``key`` (absent: False).

        Raises:
            PayloadShapeError: present and not a boolean.
        """
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            raise PayloadShapeError(f"{self.where}.{key} is not a boolean")
        return value

    def obj(self, key: str) -> Payload:
        """The object member ``key``.

        Raises:
            PayloadShapeError: missing or not an object.
        """
        value = self.raw(key)
        if not isinstance(value, dict):
            raise PayloadShapeError(f"{self.where}.{key} is not an object")
        return Payload(value, f"{self.where}.{key}")

    def opt_obj(self, key: str) -> Payload | None:
        """The object member ``key``, or None when absent or null.

        Raises:
            PayloadShapeError: present and neither null nor an object.
        """
        if self.data.get(key) is None:
            return None
        return self.obj(key)

    def objs(self, key: str) -> list[Payload]:
        """The list-of-objects member ``key``.

        Raises:
            PayloadShapeError: missing, not a list, or an item that is not an object.
        """
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise PayloadShapeError(f"{self.where}.{key} is not a list of objects")
        return [Payload(v, f"{self.where}.{key}[{i}]") for i, v in enumerate(value)]

    def texts(self, key: str) -> list[str]:
        """The list-of-strings member ``key`` (absent or null: empty).

        Raises:
            PayloadShapeError: present and not a list of strings.
        """
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PayloadShapeError(f"{self.where}.{key} is not a list of strings")
        return [str(v) for v in value]

    def time(self, key: str) -> datetime:
        """The RFC 3339 member ``key``.

        Raises:
            PayloadShapeError: missing or not an RFC 3339 time.
        """
        text = self.text(key)
        try:
            return parse_rfc3339(text)
        except ValueError as exc:
            raise PayloadShapeError(f"{self.where}.{key} is not an RFC 3339 time") from exc

    def key(self, key: str) -> Ed25519PublicKey:
        """The base64 Ed25519 public key member ``key``.

        Raises:
            PayloadShapeError: missing or not 32 bytes of base64.
        """
        try:
            return Ed25519PublicKey.from_base64(self.text(key))
        except ValueError as exc:
            raise PayloadShapeError(f"{self.where}.{key} is not an Ed25519 public key") from exc


@dataclass
class IdentityFact:
    """An identity as the ledger has registered it so far."""

    name: str
    role: str
    created: int
    key: Ed25519PublicKey | None
    key_index: int
    """The entry that registered :attr:`key` (the creation, or the latest key change)."""
    revoked: int | None = None

    @property
    def active(self) -> bool:
        """Not revoked (so far in the pass)."""
        return self.revoked is None


@dataclass
class ConsentFact:
    """A granted consent: what its receipt allows, and what happened to it since."""

    consent_id: str
    enterprise: str
    granted: int
    receipt_hash: str
    valid_from: datetime
    valid_until: datetime
    use_limit: int | None
    min_cohort: int
    nonce: str
    uses: list[int] = field(default_factory=list)
    revoked: int | None = None
    revoked_at: datetime | None = None

    def valid_at(self, at: datetime) -> bool:
        """Within ``[valid_from, valid_until)``."""
        return self.valid_from <= at < self.valid_until


@dataclass
class JobFact:
    """A compute job: its decision, its moves, its key operations, its release."""

    job_id: str
    decided: int
    min_cohort: int
    participants: Mapping[str, str]
    """enterprise → consent id."""
    state: str = "authorized"
    computing: int | None = None
    released: int | None = None
    ended: int | None = None
    decryptions: list[int] = field(default_factory=list)


@dataclass
class TokenFact:
    """An edge bootstrap token: for which device, until when, and whether it was used."""

    index: int
    enterprise: str
    device: str
    expires_at: datetime
    used: int | None = None


@dataclass
class CertificateFact:
    """A certificate the ledger says was issued: whose, until when, revoked when."""

    serial: str
    issued: int
    owner: Sequence[str]
    """``(enterprise, device)`` for a device, ``(name,)`` for an administrator."""
    not_after: datetime | None
    revoked: int | None = None
