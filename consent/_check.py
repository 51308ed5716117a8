"""Requests, stored consents and the pure check of one consent against one request.

No I/O and no clock here: :mod:`consent._service` loads candidates through
indexes and calls :func:`evaluate` on each, passing the exchange's time as
``at``; the result says which consents cover the request for each owner and,
for the rest, why not. :func:`authenticity_refusal` and
:func:`validity_refusal` are the parts a release re-checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from consent._receipt import SignedReceipt
from consent._vocab import Engine, Operation, Purpose
from consent.errors import (
    BadConsentSignatureError,
    ConsentExpiredError,
    ConsentNotYetValidError,
    ConsentRefusedError,
    ConsentRevokedError,
    ForeignKeyError,
    InvalidConsentError,
    NoConsentError,
    NoRegisteredKeyError,
    ScopeMismatchError,
    UseLimitReachedError,
    WrongOriginError,
)
from core.canonical import JsonValue
from core.clock import format_rfc3339, parse_rfc3339, require_aware
from core.keys import Ed25519PublicKey, verify_ed25519

__all__ = [
    "ConsentRecord",
    "ConsentRequest",
    "CoverageReport",
    "Refusal",
    "authenticity_refusal",
    "evaluate",
    "validity_refusal",
]


def _str_tuple(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidConsentError(f"request {what} must be a non-empty list of strings")
    return tuple(value)


@dataclass(frozen=True)
class ConsentRequest:
    """What a requester wants to do with whose data (the check's input).

    ``time`` is the time the requester *says* it asks at, and is optional. It
    never decides whether a consent is valid: the service judges validity at
    its own clock and refuses a stated time further from that clock than
    ``ConsentConfig.request_skew`` (:class:`~consent.errors.RequestTimeSkewError`).
    """

    requester: str
    purpose: Purpose
    operation: Operation
    engine: Engine
    datasets: tuple[str, ...]
    fields: tuple[str, ...]
    time: datetime | None = None

    def __post_init__(self) -> None:
        if not self.requester:
            raise InvalidConsentError("request needs a requester")
        if not self.datasets or not self.fields:
            raise InvalidConsentError("request needs at least one dataset and one field")
        object.__setattr__(self, "datasets", tuple(sorted(set(self.datasets))))
        object.__setattr__(self, "fields", tuple(sorted(set(self.fields))))
        try:
            object.__setattr__(self, "purpose", Purpose(self.purpose))
            object.__setattr__(self, "operation", Operation(self.operation))
            object.__setattr__(self, "engine", Engine(self.engine))
            if self.time is not None:
                object.__setattr__(self, "time", require_aware(self.time, what="request time"))
        except ValueError as exc:
            raise InvalidConsentError(f"request: {exc}") from exc

    def to_dict(self) -> dict[str, JsonValue]:
        """The request as JSON (the form ``ibx consent check --request`` takes)."""
        return {
            "requester": self.requester,
            "purpose": self.purpose.value,
            "operation": self.operation.value,
            "engine": self.engine.value,
            "datasets": list(self.datasets),
            "fields": list(self.fields),
            "time": None if self.time is None else format_rfc3339(self.time),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, JsonValue]) -> ConsentRequest:
        """Decode a request; ``time`` (optional, RFC 3339) is the requester's stated time.

        Raises:
            InvalidConsentError: missing or malformed members.
        """
        allowed = {"requester", "purpose", "operation", "engine", "datasets", "fields", "time"}
        unknown = sorted(set(obj) - allowed)
        missing = sorted(allowed - {"time"} - set(obj))
        if unknown or missing:
            raise InvalidConsentError(f"request: missing {missing}, unexpected {unknown}")
        for name in ("requester", "purpose", "operation", "engine"):
            if not isinstance(obj[name], str):
                raise InvalidConsentError(f"request {name} must be a string")
        time_text = obj.get("time")
        if time_text is not None and not isinstance(time_text, str):
            raise InvalidConsentError("request time must be an RFC 3339 string")
        try:
            stated = parse_rfc3339(time_text) if time_text is not None else None
        except ValueError as exc:
            raise InvalidConsentError(f"request time: {exc}") from exc
        try:
            return cls(
                requester=str(obj["requester"]),
                purpose=Purpose(str(obj["purpose"])),
                operation=Operation(str(obj["operation"])),
                engine=Engine(str(obj["engine"])),
                datasets=_str_tuple(obj["datasets"], "datasets"),
                fields=_str_tuple(obj["fields"], "fields"),
                time=stated,
            )
        except ValueError as exc:
            raise InvalidConsentError(f"request: {exc}") from exc


@dataclass(frozen=True)
class ConsentRecord:
    """An accepted consent as the exchange holds it."""

    signed: SignedReceipt
    accepted_at: datetime
    ledger_index: int
    use_count: int
    revoked_at: datetime | None = None
    revocation_ledger_index: int | None = None

    @property
    def consent_id(self) -> str:
        """The receipt's consent id."""
        return self.signed.receipt.consent_id

    @property
    def enterprise(self) -> str:
        """The granting enterprise."""
        return self.signed.receipt.enterprise

    def status(self, at: datetime) -> str:
        """``revoked``, ``expired``, ``not_yet_valid``, ``used_up`` or ``active`` at ``at``."""
        receipt = self.signed.receipt
        if self.revoked_at is not None:
            return "revoked"
        if at >= receipt.valid_until:
            return "expired"
        if at < receipt.valid_from:
            return "not_yet_valid"
        if receipt.use_limit is not None and self.use_count >= receipt.use_limit:
            return "used_up"
        return "active"


@dataclass(frozen=True)
class Refusal:
    """Why one owner's consent (or lack of one) does not cover a request."""

    owner: str
    error: ConsentRefusedError

    @property
    def reason(self) -> str:
        """The stable reason code, e.g. ``revoked``."""
        return self.error.reason

    @property
    def consent_id(self) -> str | None:
        """The consent refused, or None when there was none."""
        return self.error.consent_id

    def to_dict(self) -> dict[str, JsonValue]:
        """``{"owner", "consent_id", "reason", "detail"}``."""
        return {
            "owner": self.owner,
            "consent_id": self.consent_id,
            "reason": self.reason,
            "detail": str(self.error),
        }


@dataclass(frozen=True)
class CoverageReport:
    """Per owner of the requested datasets: the consents that cover the request, or why none.

    ``covering`` and ``refusals`` are keyed by owner; an owner with no covering
    consent appears in ``refusals`` only. ``at`` is the exchange's time the
    consents were judged at.
    """

    request: ConsentRequest
    owners: tuple[str, ...]
    at: datetime
    covering: Mapping[str, tuple[ConsentRecord, ...]] = field(default_factory=dict)
    refusals: Mapping[str, tuple[Refusal, ...]] = field(default_factory=dict)

    def covered_owners(self) -> tuple[str, ...]:
        """Owners with at least one covering consent."""
        return tuple(o for o in self.owners if self.covering.get(o))

    def chosen(self) -> dict[str, ConsentRecord]:
        """One consent per owner that can be included, honouring every minimum cohort.

        Each owner's consent with the smallest ``min_cohort`` is chosen (ties:
        latest signed); then owners whose consent demands a larger cohort than
        the number of owners still included are dropped, until stable.
        """
        choice: dict[str, ConsentRecord] = {}
        for owner in self.covered_owners():
            records = self.covering[owner]
            choice[owner] = min(
                records,
                key=lambda r: (
                    r.signed.receipt.min_cohort,
                    -r.signed.receipt.signed_at.timestamp(),
                ),
            )
        while True:
            keep = {o: r for o, r in choice.items() if r.signed.receipt.min_cohort <= len(choice)}
            if len(keep) == len(choice):
                return keep
            choice = keep

    def raise_for(self, owner: str) -> None:
        """Raise the first refusal for ``owner`` if nothing covers it.

        Raises:
            ConsentRefusedError: the precise leaf (revoked, expired, scope mismatch...).
        """
        if self.covering.get(owner):
            return
        refusals = self.refusals.get(owner, ())
        if refusals:
            raise refusals[0].error
        raise NoConsentError(f"{owner} has no consent for this request")

    def to_dict(self) -> dict[str, JsonValue]:
        """The report as JSON (what ``ibx consent check --json`` prints)."""
        return {
            "request": self.request.to_dict(),
            "checked_at": format_rfc3339(self.at),
            "owners": {
                owner: {
                    "covered_by": [r.consent_id for r in self.covering.get(owner, ())],
                    "refusals": [r.to_dict() for r in self.refusals.get(owner, ())],
                }
                for owner in self.owners
            },
            "included": sorted(self.chosen()),
        }


def authenticity_refusal(
    record: ConsentRecord,
    *,
    registered_key: Ed25519PublicKey | None,
    origin: str,
    verify_signature: bool = True,
    signed_bytes: bytes | None = None,
) -> ConsentRefusedError | None:
    """None when ``record`` is signed by its enterprise's current key for this deployment.

    Run before any other check, so that the dates and scope judged afterwards
    are the ones the enterprise signed, not a database edit. ``signed_bytes``,
    when given, are the stored bytes the signature is checked over (the receipt
    was decoded from them); otherwise the receipt is re-encoded.
    """
    receipt = record.signed.receipt
    cid = receipt.consent_id
    if registered_key is None:
        return NoRegisteredKeyError(
            f"{receipt.enterprise} has no registered consent key", consent_id=cid
        )
    if receipt.public_key != registered_key:
        return ForeignKeyError(
            f"{cid} is signed with a key that is not {receipt.enterprise}'s registered key",
            consent_id=cid,
        )
    if verify_signature:
        message = signed_bytes if signed_bytes is not None else record.signed.canonical()
        if not verify_ed25519(registered_key, message, record.signed.signature):
            return BadConsentSignatureError(
                f"{cid}: the stored receipt's signature does not verify", consent_id=cid
            )
    if receipt.origin != origin:
        return WrongOriginError(
            f"{cid} was made for {receipt.origin!r}, not {origin!r}", consent_id=cid
        )
    return None


def validity_refusal(record: ConsentRecord, *, at: datetime) -> ConsentRefusedError | None:
    """None when ``record`` is unrevoked and inside its validity window at ``at``.

    ``at`` is the exchange's own time (its clock), never a time a requester
    stated. The window is half-open: ``valid_from <= at < valid_until``.
    """
    receipt = record.signed.receipt
    cid = receipt.consent_id
    if record.revoked_at is not None:
        return ConsentRevokedError(
            f"{cid} was revoked at {format_rfc3339(record.revoked_at)}", consent_id=cid
        )
    if at < receipt.valid_from:
        return ConsentNotYetValidError(
            f"{cid} is valid from {format_rfc3339(receipt.valid_from)}", consent_id=cid
        )
    if at >= receipt.valid_until:
        return ConsentExpiredError(
            f"{cid} expired at {format_rfc3339(receipt.valid_until)}", consent_id=cid
        )
    return None


def evaluate(
    record: ConsentRecord,
    request: ConsentRequest,
    *,
    at: datetime,
    owner_datasets: tuple[str, ...],
    requester_keys: tuple[str, ...],
    registered_key: Ed25519PublicKey | None,
    origin: str,
    verify_signature: bool = True,
    signed_bytes: bytes | None = None,
) -> ConsentRefusedError | None:
    """None when ``record`` covers ``request`` for ``owner_datasets`` at ``at``, else the refusal.

    The checks run in a fixed order (key and signature, origin, revocation,
    validity at ``at``, requester, datasets and fields, purpose, operation,
    engine, use limit), and the first failure is the reason given. ``at`` is
    the exchange's time; ``request.time`` plays no part here.
    """
    refusal = authenticity_refusal(
        record,
        registered_key=registered_key,
        origin=origin,
        verify_signature=verify_signature,
        signed_bytes=signed_bytes,
    )
    if refusal is None:
        refusal = validity_refusal(record, at=at)
    if refusal is not None:
        return refusal
    receipt = record.signed.receipt
    cid = receipt.consent_id
    if receipt.requester.key not in requester_keys:
        return ScopeMismatchError(
            f"{cid} is for {receipt.requester.describe()}, not {request.requester}",
            dimension="requester",
            consent_id=cid,
        )
    for dataset in owner_datasets:
        if dataset not in receipt.datasets():
            return ScopeMismatchError(
                f"{cid} does not cover dataset {dataset}", dimension="dataset", consent_id=cid
            )
        for name in request.fields:
            if not receipt.covers_field(dataset, name):
                return ScopeMismatchError(
                    f"{cid} does not cover field {name} of {dataset}",
                    dimension="field",
                    consent_id=cid,
                )
    checks = (
        ("purpose", request.purpose, receipt.purposes),
        ("operation", request.operation, receipt.operations),
        ("engine", request.engine, receipt.engines),
    )
    for dimension, wanted, allowed in checks:
        if wanted not in allowed:
            return ScopeMismatchError(
                f"{cid} does not allow {dimension} {wanted.value} "
                f"(allows {', '.join(a.value for a in allowed)})",
                dimension=dimension,
                consent_id=cid,
            )
    if receipt.use_limit is not None and record.use_count >= receipt.use_limit:
        return UseLimitReachedError(
            f"{cid} has been used {record.use_count} of {receipt.use_limit} times",
            consent_id=cid,
        )
    return None
