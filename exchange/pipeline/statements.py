"""The statements the pipeline and the data agents exchange, and how they are signed.

Both sides import this module: the exchange writes a :class:`DecisionRecord`
on the ledger (event ``pipeline.decision``) before any agent is asked for
anything, and an agent reads it back from the ledger, with an inclusion
proof, before it reads any data. An agent's contribution or refusal is an
:class:`AgentStatement`, signed with the enterprise's own Ed25519 key (the
consent key, whose private half never reaches the exchange) over its RFC 8785
form; the exchange verifies it against the key the enterprise registered.

Formats (all JSON, RFC 8785 where hashed or signed):

* ``pipeline.decision`` payload: :meth:`DecisionRecord.to_payload`.
* Contribution statement: ``{"kind": "ibx.contribution/v1", "job_id", "enterprise",
  "round", "payload_sha256"}``; refusal: ``{"kind": "ibx.refusal/v1", "job_id",
  "enterprise", "round", "reason"}``. The signature is base64 Ed25519 over
  ``canonical_bytes(statement)``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from core.canonical import JsonValue, canonical_bytes
from core.clock import format_rfc3339, parse_rfc3339
from core.keys import Ed25519PublicKey, Ed25519Signer, verify_ed25519
from exchange.pipeline.entries import DecisionEntry
from exchange.pipeline.request import ComputeRequest, EngineName, InvalidRequestError

__all__ = [
    "CONTRIBUTION_KIND",
    "DECISION_EVENT",
    "REFUSAL_KIND",
    "AgentStatement",
    "DecisionRecord",
    "LeftOut",
    "Participant",
    "StatementError",
    "new_job_id",
]

DECISION_EVENT = DecisionEntry.TYPE
"""Ledger event type of an authorization decision (actor: the requester)."""

CONTRIBUTION_KIND = "ibx.contribution/v1"
REFUSAL_KIND = "ibx.refusal/v1"

_JOB_ID = re.compile(r"job_[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def new_job_id() -> str:
    """A fresh job id: ``job_`` and 32 random lower-case hex digits."""
    import secrets

    return "job_" + secrets.token_hex(16)


class StatementError(ValueError):
    """A statement or decision payload that is malformed."""


@dataclass(frozen=True)
class Participant:
    """One owner included in a decision: its dataset and the consent that covers the use.

    ``public_key`` is the Ed25519 key the consent receipt names (recorded as
    base64): the key the enterprise signs its statements with. Another agent
    verifies this participant's signed statements (a PSI predecessor's
    contribution) with the key as the ledgered decision states it, never as
    the exchange serves it elsewhere.
    """

    enterprise: str
    dataset: str
    consent_id: str
    receipt_sha256: str
    """Hex SHA-256 of the consent receipt's signed RFC 8785 bytes."""
    min_cohort: int
    public_key: Ed25519PublicKey

    def to_dict(self) -> dict[str, JsonValue]:
        """The participant as recorded in the decision."""
        return {
            "enterprise": self.enterprise,
            "dataset": self.dataset,
            "consent_id": self.consent_id,
            "receipt_sha256": self.receipt_sha256,
            "min_cohort": self.min_cohort,
            "public_key": self.public_key.to_base64(),
        }


@dataclass(frozen=True)
class LeftOut:
    """An owner of a selected dataset left out of the job, and why."""

    owner: str
    reason: str

    def to_dict(self) -> dict[str, JsonValue]:
        """As recorded in the decision (``owner`` lets that enterprise read the entry)."""
        return {"owner": self.owner, "reason": self.reason}


@dataclass(frozen=True)
class DecisionRecord:
    """The authorization of one job, as it stands on the ledger (pipeline step 5).

    ``policy_version`` is the content hash of the policy version that decided;
    ``min_cohort`` the strictest of the policy's and the participants' consents';
    ``deadline`` the time by which the job is released or fails.
    """

    job_id: str
    requester: str
    request: ComputeRequest
    engine: EngineName
    policy_version: str
    participants: tuple[Participant, ...]
    left_out: tuple[LeftOut, ...]
    min_cohort: int
    decided_at: datetime
    deadline: datetime

    def to_entry(self) -> DecisionEntry:
        """The ``pipeline.decision`` entry (typed; validated in one pass).

        Raises:
            ValueError: the record breaks the entry's schema (a pydantic ``ValidationError``).
        """
        return DecisionEntry.model_validate(
            {
                "job_id": self.job_id,
                "requester": self.requester,
                "request": self.request.to_dict(),
                "request_sha256": self.request.digest(),
                "engine": self.engine.value,  # he, mpc or psi: resolved
                "policy_version": self.policy_version,
                "participants": [p.to_dict() for p in self.participants],
                "left_out": [o.to_dict() for o in self.left_out],
                "min_cohort": self.min_cohort,
                "decided_at": format_rfc3339(self.decided_at),
                "deadline": format_rfc3339(self.deadline),
            }
        )

    def to_payload(self) -> dict[str, JsonValue]:
        """The ``pipeline.decision`` ledger payload."""
        return self.to_entry().payload()

    @classmethod
    def from_payload(cls, payload: Mapping[str, JsonValue]) -> DecisionRecord:
        """Parse a ``pipeline.decision`` payload, checking the request hash it states.

        The payload is parsed through :class:`DecisionEntry` (its schema), then
        the request through :class:`ComputeRequest` (its own rules).

        Raises:
            StatementError: malformed, or ``request_sha256`` is not the request's hash.
        """
        try:  # strictly, as JSON: no number from a string, no integer from a boolean
            entry = DecisionEntry.model_validate_json(
                json.dumps(dict(payload), allow_nan=False), strict=True
            )
        except ValidationError as exc:
            raise StatementError(f"decision: {_first_error(exc)}") from exc
        except (TypeError, ValueError) as exc:
            raise StatementError(f"decision: not JSON: {exc}") from exc
        return cls.from_entry(entry)

    @classmethod
    def from_entry(cls, entry: DecisionEntry) -> DecisionRecord:
        """The decision a parsed ``pipeline.decision`` entry states.

        Raises:
            StatementError: the request breaks its own rules, or ``request_sha256``
                is not the request's hash.
        """
        try:
            request = ComputeRequest.from_dict(entry.request.model_dump(mode="json"))
            if not hmac.compare_digest(entry.request_sha256, request.digest()):
                raise StatementError("decision: request_sha256 is not the request's hash")
            return cls(
                job_id=entry.job_id,
                requester=entry.requester,
                request=request,
                engine=EngineName(entry.engine),
                policy_version=entry.policy_version,
                participants=tuple(
                    Participant(
                        enterprise=p.enterprise,
                        dataset=p.dataset,
                        consent_id=p.consent_id,
                        receipt_sha256=p.receipt_sha256,
                        min_cohort=p.min_cohort,
                        public_key=_public_key(p.public_key),
                    )
                    for p in entry.participants
                ),
                left_out=tuple(LeftOut(o.owner, o.reason) for o in entry.left_out),
                min_cohort=entry.min_cohort,
                decided_at=parse_rfc3339(entry.decided_at),
                deadline=parse_rfc3339(entry.deadline),
            )
        except StatementError:
            raise
        except (TypeError, ValueError, InvalidRequestError) as exc:
            raise StatementError(f"decision: {exc}") from exc

    def participant(self, enterprise: str) -> Participant | None:
        """``enterprise``'s participation, or None when the decision does not include it."""
        return next((p for p in self.participants if p.enterprise == enterprise), None)


def _public_key(value: JsonValue) -> Ed25519PublicKey:
    if not isinstance(value, str):
        raise StatementError("decision: a participant's public_key is base64")
    try:
        return Ed25519PublicKey.from_base64(value)
    except ValueError as exc:
        raise StatementError(f"decision: a participant's public_key: {exc}") from exc


def _first_error(exc: ValidationError) -> str:
    """The first problem pydantic found, as ``where: what``."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "payload"
    return f"{where}: {error['msg']}"


def _int(value: JsonValue) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StatementError("expected an integer")
    return value


@dataclass(frozen=True)
class AgentStatement:
    """A data agent's signed word on one round of one job: a contribution or a refusal.

    ``payload_sha256`` (contribution) is the hex SHA-256 the engine defines
    over what the agent sends (see ``docs/pipeline.md``); ``reason``
    (refusal) says why the agent will not take part.
    """

    kind: str
    job_id: str
    enterprise: str
    round: int
    payload_sha256: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.kind == CONTRIBUTION_KIND:
            if self.payload_sha256 is None or not _HEX64.fullmatch(self.payload_sha256):
                raise StatementError("a contribution states its payload's SHA-256 (64 hex)")
            if self.reason is not None:
                raise StatementError("a contribution carries no reason")
        elif self.kind == REFUSAL_KIND:
            if not self.reason or len(self.reason) > 2000 or self.payload_sha256 is not None:
                raise StatementError("a refusal states its reason (1-2000 characters) only")
        else:
            raise StatementError(f"unknown statement kind {self.kind!r}")
        if not _JOB_ID.fullmatch(self.job_id):
            raise StatementError("malformed job_id")
        if not self.enterprise or isinstance(self.round, bool) or not 1 <= self.round <= 16:
            raise StatementError("a statement names its enterprise and a round from 1 to 16")

    def to_dict(self) -> dict[str, JsonValue]:
        """The statement as signed (RFC 8785 of this object)."""
        body: dict[str, JsonValue] = {
            "kind": self.kind,
            "job_id": self.job_id,
            "enterprise": self.enterprise,
            "round": self.round,
        }
        if self.kind == CONTRIBUTION_KIND:
            body["payload_sha256"] = self.payload_sha256
        else:
            body["reason"] = self.reason
        return body

    @classmethod
    def from_dict(cls, obj: Mapping[str, JsonValue]) -> AgentStatement:
        """Parse a statement.

        Raises:
            StatementError: malformed or unknown members.
        """
        allowed = {"kind", "job_id", "enterprise", "round", "payload_sha256", "reason"}
        if set(obj) - allowed:
            raise StatementError(f"statement: unexpected {sorted(set(obj) - allowed)}")
        try:
            digest = obj.get("payload_sha256")
            reason = obj.get("reason")
            return cls(
                kind=str(obj["kind"]),
                job_id=str(obj["job_id"]),
                enterprise=str(obj["enterprise"]),
                round=_int(obj["round"]),
                payload_sha256=None if digest is None else str(digest),
                reason=None if reason is None else str(reason),
            )
        except KeyError as exc:
            raise StatementError(f"statement: missing {exc}") from exc

    def signed_bytes(self) -> bytes:
        """What the signature covers: the statement's RFC 8785 bytes."""
        return canonical_bytes(self.to_dict())

    def sign(self, signer: Ed25519Signer) -> str:
        """Base64 Ed25519 signature by ``signer`` (the enterprise's consent key)."""
        return base64.b64encode(signer.sign(self.signed_bytes())).decode()

    def verify(self, key: Ed25519PublicKey, signature: str) -> bool:
        """Whether ``signature`` (base64) is ``key``'s signature of this statement."""
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        return verify_ed25519(key, self.signed_bytes(), raw)
