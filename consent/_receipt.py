"""Consent receipts and revocations: the statements an enterprise signs with its own key.

A grant is a :class:`ConsentReceipt`; withdrawing it is a :class:`Revocation`.
Each is signed as the RFC 8785 canonical JSON of its ``to_dict()`` with
Ed25519; the signature covers those bytes exactly, so an auditor holding the
receipt, the signature and the enterprise's public key needs nothing from the
exchange to check it. The field names follow the Kantara Consent Receipt
(``consent_id`` ↔ ``consentReceiptID``, ``signed_at`` ↔ ``consentTimestamp``,
``scope`` ↔ ``piiCategory``, ``purposes``, ``public_key`` ↔ ``publicKey``,
``valid_until`` ↔ ``termination``) and the ISO/IEC 29184 notice (``notice``,
the recipients as ``requester``); see ``docs/consent.md`` and the JSON Schemas
in ``consent/schema/``.

Decoding is strict: lists must be sorted and free of duplicates and timestamps
must be in ibx's RFC 3339 form, so ``from_dict(d).to_dict() == d`` and the
bytes that were signed are the bytes that are re-encoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Final, TypeVar

from consent._vocab import Engine, Operation, Purpose
from consent.errors import BadConsentSignatureError, InvalidConsentError
from core.canonical import JsonValue, canonical_bytes
from core.clock import format_rfc3339, parse_rfc3339, require_aware
from core.keys import Ed25519PublicKey, Ed25519Signer, verify_ed25519

__all__ = [
    "RECEIPT_VERSION",
    "ConsentReceipt",
    "DatasetScope",
    "Requester",
    "Revocation",
    "SignedReceipt",
    "SignedRevocation",
    "new_consent_id",
    "new_nonce",
]

RECEIPT_VERSION: Final = "ibx.consent.v1"
_CONSENT_ID = re.compile(r"^cst_[0-9a-f]{32}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,86}$")
_MAX_NOTICE = 2000

E = TypeVar("E", Purpose, Operation, Engine)


def new_consent_id() -> str:
    """A fresh random consent id, ``cst_`` + 32 hex digits."""
    return "cst_" + uuid.uuid4().hex


def new_nonce() -> str:
    """128 random bits, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidConsentError(f"{what} must be a name of 1-128 letters, digits or . _ @ -")
    return value


def _check_time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidConsentError(f"{what} must be an RFC 3339 timestamp string")
    try:
        parsed = parse_rfc3339(value)
    except ValueError as exc:
        raise InvalidConsentError(f"{what}: {exc}") from exc
    if format_rfc3339(parsed) != value:
        raise InvalidConsentError(
            f"{what} must be UTC with microseconds, e.g. {format_rfc3339(parsed)}"
        )
    return parsed


def _sorted_unique(values: Iterable[str], what: str) -> tuple[str, ...]:
    items = tuple(values)
    if not items:
        raise InvalidConsentError(f"{what} must not be empty")
    if len(set(items)) != len(items):
        raise InvalidConsentError(f"{what} has duplicates")
    return tuple(sorted(items))


def _strict_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidConsentError(f"{what} must be a list of strings")
    if value != sorted(set(value)):
        raise InvalidConsentError(f"{what} must be sorted and without duplicates")
    return list(value)


def _enum_list(value: object, kind: type[E], what: str) -> tuple[E, ...]:
    names = _strict_list(value, what)
    try:
        return tuple(kind(v) for v in names)
    except ValueError as exc:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidConsentError(f"{what}: {exc}; allowed: {allowed}") from exc


def _exact_keys(obj: object, required: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise InvalidConsentError(f"{what} must be a JSON object")
    keys = set(obj)
    if keys != required:
        missing, extra = sorted(required - keys), sorted(keys - required)
        raise InvalidConsentError(f"{what}: missing {missing}, unexpected {extra}")
    return obj


def _b64decode(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidConsentError(f"{what} must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidConsentError(f"{what} is not valid base64") from exc


def _public_key(text: object) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey(_b64decode(text, "public_key"))
    except ValueError as exc:
        raise InvalidConsentError(f"public_key: {exc}") from exc


@dataclass(frozen=True)
class Requester:
    """Who a consent is for: one identity, or a group (a role, optionally within an industry)."""

    identity: str | None = None
    role: str | None = None
    industry: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.role is None):
            raise InvalidConsentError("a requester is either one identity or a role group")
        if self.identity is not None:
            if self.industry is not None:
                raise InvalidConsentError("a single-identity requester takes no industry")
            _check_name(self.identity, "requester identity")
        else:
            _check_name(self.role, "requester role")
            if self.industry is not None:
                _check_name(self.industry, "requester industry")

    @classmethod
    def one(cls, name: str) -> Requester:
        """The single identity ``name``.

        Raises:
            InvalidConsentError: a malformed name.
        """
        return cls(identity=name)

    @classmethod
    def group(cls, role: str, industry: str | None = None) -> Requester:
        """Every identity of ``role`` (within ``industry`` when given).

        Raises:
            InvalidConsentError: a malformed role or industry.
        """
        return cls(role=role, industry=industry)

    @property
    def key(self) -> str:
        """The index key: ``identity:NAME``, ``role:ROLE`` or ``role:ROLE/industry:IND``."""
        if self.identity is not None:
            return f"identity:{self.identity}"
        if self.industry is None:
            return f"role:{self.role}"
        return f"role:{self.role}/industry:{self.industry}"

    @staticmethod
    def keys_for(name: str, role: str | None, industry: str | None) -> tuple[str, ...]:
        """Every index key that matches the identity ``name`` with ``role`` and ``industry``."""
        keys = [f"identity:{name}"]
        if role is not None:
            keys.append(f"role:{role}")
            if industry is not None:
                keys.append(f"role:{role}/industry:{industry}")
        return tuple(keys)

    def describe(self) -> str:
        """A short human description."""
        if self.identity is not None:
            return self.identity
        if self.industry is None:
            return f"every {self.role}"
        return f"every {self.role} of {self.industry}"

    def to_dict(self) -> dict[str, JsonValue]:
        """``{"identity": N}`` or ``{"role": R, "industry": I-or-null}``."""
        if self.identity is not None:
            return {"identity": self.identity}
        return {"role": self.role, "industry": self.industry}

    @classmethod
    def from_dict(cls, obj: object) -> Requester:
        """Decode :meth:`to_dict` output.

        Raises:
            InvalidConsentError: any other shape.
        """
        if isinstance(obj, Mapping) and "identity" in obj:
            data = _exact_keys(obj, {"identity"}, "requester")
            return cls(identity=_check_name(data["identity"], "requester identity"))
        data = _exact_keys(obj, {"role", "industry"}, "requester")
        industry = data["industry"]
        if industry is not None and not isinstance(industry, str):
            raise InvalidConsentError("requester industry must be a string or null")
        return cls(role=_check_name(data["role"], "requester role"), industry=industry)


@dataclass(frozen=True)
class DatasetScope:
    """One dataset and the fields of it that a consent covers (sorted, unique)."""

    dataset: str
    fields: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_name(self.dataset, "dataset id")
        object.__setattr__(self, "fields", _sorted_unique(self.fields, f"fields of {self.dataset}"))
        for name in self.fields:
            if not _FIELD.fullmatch(name):
                raise InvalidConsentError(f"field {name!r} must be an identifier")

    def to_dict(self) -> dict[str, JsonValue]:
        """``{"dataset": ..., "fields": [...]}``."""
        return {"dataset": self.dataset, "fields": list(self.fields)}

    @classmethod
    def from_dict(cls, obj: object) -> DatasetScope:
        """Decode :meth:`to_dict` output.

        Raises:
            InvalidConsentError: any other shape, or unsorted fields.
        """
        data = _exact_keys(obj, {"dataset", "fields"}, "scope entry")
        return cls(
            _check_name(data["dataset"], "dataset id"),
            tuple(_strict_list(data["fields"], "fields")),
        )


_RECEIPT_KEYS = {
    "version",
    "kind",
    "consent_id",
    "origin",
    "enterprise",
    "public_key",
    "scope",
    "requester",
    "purposes",
    "operations",
    "engines",
    "min_cohort",
    "valid_from",
    "valid_until",
    "use_limit",
    "notice",
    "nonce",
    "signed_at",
}


@dataclass(frozen=True)
class ConsentReceipt:
    """A grant: enterprise ``enterprise`` lets ``requester`` use ``scope`` as stated.

    Lists are kept sorted and unique; times must be timezone-aware (stored in UTC).
    """

    consent_id: str
    origin: str
    enterprise: str
    public_key: Ed25519PublicKey
    scope: tuple[DatasetScope, ...]
    requester: Requester
    purposes: tuple[Purpose, ...]
    operations: tuple[Operation, ...]
    engines: tuple[Engine, ...]
    min_cohort: int
    valid_from: datetime
    valid_until: datetime
    signed_at: datetime
    nonce: str = field(default_factory=new_nonce)
    use_limit: int | None = None
    notice: str | None = None

    def __post_init__(self) -> None:
        if not _CONSENT_ID.fullmatch(self.consent_id):
            raise InvalidConsentError("consent_id must be 'cst_' + 32 lower-case hex digits")
        if not self.origin or any(c.isspace() for c in self.origin) or len(self.origin) > 200:
            raise InvalidConsentError("origin must be a non-empty token without spaces")
        _check_name(self.enterprise, "enterprise")
        if not _NONCE.fullmatch(self.nonce):
            raise InvalidConsentError("nonce must be 16-64 random bytes in base64url")
        try:
            for name in ("valid_from", "valid_until", "signed_at"):
                object.__setattr__(self, name, require_aware(getattr(self, name), what=name))
        except ValueError as exc:
            raise InvalidConsentError(str(exc)) from exc
        if self.valid_until <= self.valid_from:
            raise InvalidConsentError("valid_until must be after valid_from")
        scope = tuple(sorted(self.scope, key=lambda s: s.dataset))
        if not scope or len({s.dataset for s in scope}) != len(scope):
            raise InvalidConsentError("scope must name at least one dataset, each once")
        object.__setattr__(self, "scope", scope)
        for name, kind in (("purposes", Purpose), ("operations", Operation), ("engines", Engine)):
            try:
                values = tuple(kind(v) for v in getattr(self, name))
            except ValueError as exc:
                raise InvalidConsentError(f"{name}: {exc}") from exc
            ordered = _sorted_unique((v.value for v in values), name)
            object.__setattr__(self, name, tuple(kind(v) for v in ordered))
        if isinstance(self.min_cohort, bool) or not 1 <= self.min_cohort <= 1_000_000:
            raise InvalidConsentError("min_cohort must be an integer from 1 to 1000000")
        if self.use_limit is not None and (
            isinstance(self.use_limit, bool) or not 1 <= self.use_limit <= 1_000_000_000
        ):
            raise InvalidConsentError("use_limit must be a positive integer or absent")
        if self.notice is not None and len(self.notice) > _MAX_NOTICE:
            raise InvalidConsentError(f"notice must be at most {_MAX_NOTICE} characters")

    def covers_field(self, dataset: str, field_name: str) -> bool:
        """True when ``field_name`` of ``dataset`` is in scope."""
        return any(s.dataset == dataset and field_name in s.fields for s in self.scope)

    def datasets(self) -> tuple[str, ...]:
        """The dataset ids in scope, sorted."""
        return tuple(s.dataset for s in self.scope)

    def to_dict(self) -> dict[str, JsonValue]:
        """The signed object (see ``consent/schema/consent-receipt.schema.json``)."""
        return {
            "version": RECEIPT_VERSION,
            "kind": "grant",
            "consent_id": self.consent_id,
            "origin": self.origin,
            "enterprise": self.enterprise,
            "public_key": self.public_key.to_base64(),
            "scope": [s.to_dict() for s in self.scope],
            "requester": self.requester.to_dict(),
            "purposes": [p.value for p in self.purposes],
            "operations": [o.value for o in self.operations],
            "engines": [e.value for e in self.engines],
            "min_cohort": self.min_cohort,
            "valid_from": format_rfc3339(self.valid_from),
            "valid_until": format_rfc3339(self.valid_until),
            "use_limit": self.use_limit,
            "notice": self.notice,
            "nonce": self.nonce,
            "signed_at": format_rfc3339(self.signed_at),
        }

    def canonical(self) -> bytes:
        """The RFC 8785 bytes that the enterprise signs (encoded once: the receipt is frozen)."""
        return self._canonical

    @cached_property
    def _canonical(self) -> bytes:
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, obj: object) -> ConsentReceipt:
        """Decode a receipt object strictly.

        Raises:
            InvalidConsentError: wrong keys, types, values or non-canonical lists and times.
        """
        data = _exact_keys(obj, _RECEIPT_KEYS, "consent receipt")
        if data["version"] != RECEIPT_VERSION or data["kind"] != "grant":
            raise InvalidConsentError(f"not a {RECEIPT_VERSION} grant receipt")
        scope_raw = data["scope"]
        if not isinstance(scope_raw, list):
            raise InvalidConsentError("scope must be a list")
        scope = tuple(DatasetScope.from_dict(s) for s in scope_raw)
        if [s.dataset for s in scope] != sorted({s.dataset for s in scope}):
            raise InvalidConsentError("scope must be sorted by dataset, each dataset once")
        for name in ("min_cohort", "use_limit"):
            value = data[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidConsentError(f"{name} must be an integer")
        if data["min_cohort"] is None:
            raise InvalidConsentError("min_cohort is required")
        notice = data["notice"]
        if notice is not None and not isinstance(notice, str):
            raise InvalidConsentError("notice must be a string or null")
        for name in ("consent_id", "origin", "nonce"):
            if not isinstance(data[name], str):
                raise InvalidConsentError(f"{name} must be a string")
        return cls(
            consent_id=data["consent_id"],
            origin=data["origin"],
            enterprise=_check_name(data["enterprise"], "enterprise"),
            public_key=_public_key(data["public_key"]),
            scope=scope,
            requester=Requester.from_dict(data["requester"]),
            purposes=_enum_list(data["purposes"], Purpose, "purposes"),
            operations=_enum_list(data["operations"], Operation, "operations"),
            engines=_enum_list(data["engines"], Engine, "engines"),
            min_cohort=data["min_cohort"],
            valid_from=_check_time(data["valid_from"], "valid_from"),
            valid_until=_check_time(data["valid_until"], "valid_until"),
            use_limit=data["use_limit"],
            notice=notice,
            nonce=data["nonce"],
            signed_at=_check_time(data["signed_at"], "signed_at"),
        )

    def sign(self, signer: Ed25519Signer) -> SignedReceipt:
        """Sign with the enterprise's private key (on the enterprise's side).

        Raises:
            InvalidConsentError: ``signer`` is not the key named in ``public_key``.
        """
        if signer.public_key != self.public_key:
            raise InvalidConsentError("the signing key is not the receipt's public_key")
        return SignedReceipt(self, signer.sign(self.canonical()))


_REVOCATION_KEYS = {
    "version",
    "kind",
    "consent_id",
    "origin",
    "enterprise",
    "public_key",
    "reason",
    "nonce",
    "signed_at",
}


@dataclass(frozen=True)
class Revocation:
    """A signed withdrawal of consent ``consent_id`` by ``enterprise``."""

    consent_id: str
    origin: str
    enterprise: str
    public_key: Ed25519PublicKey
    signed_at: datetime
    nonce: str = field(default_factory=new_nonce)
    reason: str | None = None

    def __post_init__(self) -> None:
        if not _CONSENT_ID.fullmatch(self.consent_id):
            raise InvalidConsentError("consent_id must be 'cst_' + 32 lower-case hex digits")
        if not self.origin or any(c.isspace() for c in self.origin) or len(self.origin) > 200:
            raise InvalidConsentError("origin must be a non-empty token without spaces")
        _check_name(self.enterprise, "enterprise")
        if not _NONCE.fullmatch(self.nonce):
            raise InvalidConsentError("nonce must be 16-64 random bytes in base64url")
        try:
            object.__setattr__(self, "signed_at", require_aware(self.signed_at, what="signed_at"))
        except ValueError as exc:
            raise InvalidConsentError(str(exc)) from exc
        if self.reason is not None and len(self.reason) > _MAX_NOTICE:
            raise InvalidConsentError(f"reason must be at most {_MAX_NOTICE} characters")

    def to_dict(self) -> dict[str, JsonValue]:
        """The signed object (see ``consent/schema/consent-revocation.schema.json``)."""
        return {
            "version": RECEIPT_VERSION,
            "kind": "revocation",
            "consent_id": self.consent_id,
            "origin": self.origin,
            "enterprise": self.enterprise,
            "public_key": self.public_key.to_base64(),
            "reason": self.reason,
            "nonce": self.nonce,
            "signed_at": format_rfc3339(self.signed_at),
        }

    def canonical(self) -> bytes:
        """The RFC 8785 bytes that the enterprise signs."""
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, obj: object) -> Revocation:
        """Decode a revocation object strictly.

        Raises:
            InvalidConsentError: wrong keys, types or values.
        """
        data = _exact_keys(obj, _REVOCATION_KEYS, "revocation")
        if data["version"] != RECEIPT_VERSION or data["kind"] != "revocation":
            raise InvalidConsentError(f"not a {RECEIPT_VERSION} revocation")
        for name in ("consent_id", "origin", "nonce"):
            if not isinstance(data[name], str):
                raise InvalidConsentError(f"{name} must be a string")
        reason = data["reason"]
        if reason is not None and not isinstance(reason, str):
            raise InvalidConsentError("reason must be a string or null")
        return cls(
            consent_id=data["consent_id"],
            origin=data["origin"],
            enterprise=_check_name(data["enterprise"], "enterprise"),
            public_key=_public_key(data["public_key"]),
            reason=reason,
            nonce=data["nonce"],
            signed_at=_check_time(data["signed_at"], "signed_at"),
        )

    def sign(self, signer: Ed25519Signer) -> SignedRevocation:
        """Sign with the enterprise's private key.

        Raises:
            InvalidConsentError: ``signer`` is not the key named in ``public_key``.
        """
        if signer.public_key != self.public_key:
            raise InvalidConsentError("the signing key is not the revocation's public_key")
        return SignedRevocation(self, signer.sign(self.canonical()))


def _verify(public_key: Ed25519PublicKey, message: bytes, signature: bytes) -> None:
    if not verify_ed25519(public_key, message, signature):
        raise BadConsentSignatureError("the signature does not verify")


def _envelope(obj: object, what: str) -> tuple[Mapping[str, Any], bytes]:
    data = _exact_keys(obj, {"receipt", "signature"}, what)
    signature = _b64decode(data["signature"], "signature")
    if len(signature) != 64:
        raise InvalidConsentError("signature must be 64 bytes of Ed25519")
    return data, signature


class _SignedEnvelope:
    """What a signed receipt and a signed revocation share: the enterprise's Ed25519
    signature over the document's RFC 8785 bytes, and the ``{"receipt", "signature"}``
    wire form."""

    signature: bytes

    def _document(self) -> ConsentReceipt | Revocation:
        raise TypeError("subclasses name their signed document")

    def canonical(self) -> bytes:
        """The signed bytes."""
        return self._document().canonical()

    def receipt_hash(self) -> str:
        """Hex SHA-256 of the signed bytes: the document's identity on the ledger."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Check the signature under ``public_key``.

        Raises:
            BadConsentSignatureError: it does not verify (one opaque error).
        """
        _verify(public_key, self.canonical(), self.signature)

    def to_dict(self) -> dict[str, JsonValue]:
        """``{"receipt": {...}, "signature": base64}``: the wire and file form."""
        return {
            "receipt": self._document().to_dict(),
            "signature": base64.b64encode(self.signature).decode(),
        }


@dataclass(frozen=True)
class SignedReceipt(_SignedEnvelope):
    """A receipt and the enterprise's Ed25519 signature over its canonical bytes."""

    receipt: ConsentReceipt
    signature: bytes

    def _document(self) -> ConsentReceipt:
        return self.receipt

    @classmethod
    def from_dict(cls, obj: object) -> SignedReceipt:
        """Decode :meth:`to_dict` output (does not verify the signature).

        Raises:
            InvalidConsentError: malformed envelope or receipt.
        """
        data, signature = _envelope(obj, "signed receipt")
        return cls(ConsentReceipt.from_dict(data["receipt"]), signature)


@dataclass(frozen=True)
class SignedRevocation(_SignedEnvelope):
    """A revocation and the enterprise's Ed25519 signature over its canonical bytes."""

    revocation: Revocation
    signature: bytes

    def _document(self) -> Revocation:
        return self.revocation

    @classmethod
    def from_dict(cls, obj: object) -> SignedRevocation:
        """Decode :meth:`to_dict` output (does not verify the signature).

        Raises:
            InvalidConsentError: malformed envelope or revocation.
        """
        data, signature = _envelope(obj, "signed revocation")
        return cls(Revocation.from_dict(data["receipt"]), signature)
