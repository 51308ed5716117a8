"""The ledger entries the pipeline writes, as typed payloads.

One model per entry type; ``TYPE`` is the entry type, the fields are exactly
the payload, unknown members are refused. Writers record :meth:`payload`
(an optional member the entry does not state is absent, not ``null``);
readers parse with ``Model.model_validate(entry.payload)``; an auditor parses every
``pipeline.*`` entry through these (``docs/audit.md``, "Typed entries"; JSON
Schema in ``docs/schemas/ledger/``).

* ``pipeline.decision`` — :class:`DecisionEntry` (built and read by
  :class:`exchange.pipeline.statements.DecisionRecord`, which adds the checks
  a schema cannot state: the request's own rules and its hash)
* ``pipeline.job`` — :class:`JobEntry`: a job moved between states
* ``pipeline.contribution`` / ``pipeline.refusal`` — :class:`ContributionEntry` /
  :class:`RefusalEntry`: a data agent's signed statement on one round
* ``pipeline.withdrawal`` — :class:`WithdrawalEntry`: an owner left out after its
  consent changed
* ``pipeline.result`` — :class:`ResultEntry`: a result was released (its hash)
* ``pipeline.denial`` — :class:`DenialEntry`: the pipeline refused a compute request
  (policy, consent or the cohort), before any decision

This module imports no other pipeline module but :mod:`exchange.pipeline.request`
(the request's vocabulary), so every pipeline module may import it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from consent import Operation, Purpose
from core.canonical import JsonValue
from exchange.pipeline.request import EngineName, Reduce

__all__ = [
    "ENTRY_TYPES",
    "ContributionEntry",
    "ContributionStatementEntry",
    "DecisionEntry",
    "DenialEntry",
    "HandOffEntry",
    "JobEntry",
    "JobStateName",
    "LeftOutEntry",
    "ParametersEntry",
    "ParticipantEntry",
    "RefusalEntry",
    "RefusalStatementEntry",
    "RequestEntry",
    "ResultEntry",
    "WithdrawalEntry",
]

JobId = Annotated[str, Field(pattern=r"^job_[0-9a-f]{32}$")]
"""``job_`` and 32 lower-case hex digits."""
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
"""Lower-case hex SHA-256."""
Name = Annotated[str, Field(min_length=1, max_length=200)]
"""An identity's name (enterprise, requester)."""
Rfc3339 = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})$"
    ),
]
"""An RFC 3339 timestamp."""
Round = Annotated[int, Field(ge=1, le=16)]
"""A protocol round, 1 to 16."""
JobStateName = Literal[
    "authorized", "collecting", "computing", "released", "refused", "failed", "cancelled"
]
"""The values of :class:`exchange.pipeline.jobs.JobState`."""

_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class _Part(BaseModel):
    model_config = _CONFIG


class _Entry(_Part):
    def payload(self) -> dict[str, JsonValue]:
        """The ledger payload: the JSON form; an optional member left unset is absent.

        A member that is required but may be ``null`` is stated as ``null``.
        """
        unset = {
            name
            for name, info in type(self).model_fields.items()
            if not info.is_required() and getattr(self, name) is None
        }
        return self.model_dump(mode="json", exclude=unset)


class ParametersEntry(_Part):
    """A compute request's parameters, every member stated (``Parameters.to_dict``)."""

    length: int = Field(ge=1, le=1_000_000)
    """HE: values per enterprise and field."""
    reduce: Reduce | None
    """How an agent reduces its column; ``null``: the engine's default."""
    bound: float = Field(gt=0, le=1e12)
    """Largest magnitude of a value."""
    bins: tuple[float, ...]
    """Histogram bin edges (empty unless a histogram)."""
    epsilon: Annotated[float, Field(gt=0)] | None
    """Differential privacy budget of the release, or ``null``."""
    deadline_seconds: int = Field(ge=1, le=3600)
    """Seconds the job may take from authorization to release."""


class RequestEntry(_Part):
    """The compute request as authorized (``ComputeRequest.to_dict``)."""

    purpose: Purpose
    """What the result is for (the consent vocabulary)."""
    operation: Operation
    """What is computed."""
    fields: tuple[str, ...] = Field(min_length=1)
    """The dataset fields read, in order."""
    datasets: tuple[str, ...]
    """The datasets selected by id (empty when an industry selects them)."""
    industry: str | None
    """The industry whose datasets are selected, or ``null``."""
    engine: EngineName
    """The engine asked for (``auto`` lets the exchange choose)."""
    parameters: ParametersEntry
    """The request's parameters."""


class ParticipantEntry(_Part):
    """An owner included in a decision, with the consent that covers the use."""

    enterprise: Name
    """The data owner."""
    dataset: str = Field(min_length=1)
    """Its dataset read."""
    consent_id: str = Field(min_length=1)
    """The consent that covers the use."""
    receipt_sha256: Hex64
    """Hex SHA-256 of the consent receipt's signed RFC 8785 bytes."""
    min_cohort: int = Field(ge=0)
    """The consent's minimum cohort."""
    public_key: str = Field(min_length=1)
    """Base64 Ed25519 key the enterprise signs its statements with (from its receipt)."""


class LeftOutEntry(_Part):
    """An owner of a selected dataset left out of the job."""

    owner: Name
    """The owner left out."""
    reason: str
    """Why (no consent, revoked, used up...)."""


class DecisionEntry(_Entry):
    """``pipeline.decision``: a compute request was authorized (step 5; actor: the requester)."""

    TYPE: ClassVar[str] = "pipeline.decision"

    job_id: JobId
    """The job the decision opens."""
    requester: Name
    """Who asked."""
    request: RequestEntry
    """The request authorized."""
    request_sha256: Hex64
    """Hex SHA-256 of the request's RFC 8785 form."""
    engine: Literal["he", "mpc", "psi"]
    """The engine that computes it (``auto`` resolved)."""
    policy_version: str = Field(min_length=1)
    """Content hash of the policy version that decided."""
    participants: tuple[ParticipantEntry, ...]
    """The owners included."""
    left_out: tuple[LeftOutEntry, ...]
    """Owners of selected datasets left out, and why."""
    min_cohort: int = Field(ge=0)
    """The strictest minimum cohort of the policy and the participants' consents."""
    decided_at: Rfc3339
    """When the decision was made."""
    deadline: Rfc3339
    """When the job is released or fails."""


class JobEntry(_Entry):
    """``pipeline.job``: a job moved from one state to another."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        serialize_by_alias=True,
        validate_by_name=True,
    )

    TYPE: ClassVar[str] = "pipeline.job"

    job_id: JobId
    """The job."""
    requester: Name
    """Its requester (who may read the entry)."""
    from_: JobStateName = Field(alias="from")
    """The state before."""
    state: JobStateName
    """The state after."""
    reason: str | None
    """Why (a failure, a cancellation), or ``null``."""


class ContributionStatementEntry(_Part):
    """A contribution statement as the agent signed it (``AgentStatement.to_dict``)."""

    kind: Literal["ibx.contribution/v1"]
    """The statement format."""
    job_id: JobId
    """The job."""
    enterprise: Name
    """The contributing enterprise."""
    round: Round
    """The round contributed to."""
    payload_sha256: Hex64
    """The engine's hex SHA-256 of what the agent sent."""


class RefusalStatementEntry(_Part):
    """A refusal statement as the agent signed it (``AgentStatement.to_dict``)."""

    kind: Literal["ibx.refusal/v1"]
    """The statement format."""
    job_id: JobId
    """The job."""
    enterprise: Name
    """The refusing enterprise."""
    round: Round
    """The round refused."""
    reason: str = Field(min_length=1, max_length=2000)
    """Why the agent will not take part."""


class HandOffEntry(_Part):
    """Who a PSI contribution is handed on to (lets that enterprise read the entry)."""

    enterprise: Name
    """The next enterprise on the ring."""


class ContributionEntry(_Entry):
    """``pipeline.contribution``: a data agent's signed contribution to one round (actor: it)."""

    TYPE: ClassVar[str] = "pipeline.contribution"

    job_id: JobId
    """The job."""
    enterprise: Name
    """The contributing enterprise."""
    round: Round
    """The round."""
    statement: ContributionStatementEntry
    """The signed statement."""
    signature: str = Field(min_length=1)
    """Base64 Ed25519 signature by the enterprise's consent key over the statement's RFC 8785."""
    to: HandOffEntry | None = None
    """PSI: the enterprise the points are handed on to (absent otherwise)."""


class RefusalEntry(_Entry):
    """``pipeline.refusal``: a data agent's signed refusal of one round (actor: it)."""

    TYPE: ClassVar[str] = "pipeline.refusal"

    job_id: JobId
    """The job."""
    enterprise: Name
    """The refusing enterprise."""
    round: Round
    """The round."""
    statement: RefusalStatementEntry
    """The signed statement."""
    signature: str = Field(min_length=1)
    """Base64 Ed25519 signature by the enterprise's consent key over the statement's RFC 8785."""
    to: HandOffEntry | None = None
    """PSI: the enterprise the round was to be handed on to (absent otherwise)."""


class WithdrawalEntry(_Entry):
    """``pipeline.withdrawal``: a participant was withdrawn because its consent changed."""

    TYPE: ClassVar[str] = "pipeline.withdrawal"

    job_id: JobId
    """The job."""
    requester: Name
    """Its requester."""
    enterprise: Name
    """The participant withdrawn."""
    consent_id: str = Field(min_length=1)
    """Its consent."""
    reason: str
    """Why (``the consent is revoked``...)."""


class ResultEntry(_Entry):
    """``pipeline.result``: a job's result was released; its hash, cohort and contributors."""

    TYPE: ClassVar[str] = "pipeline.result"

    job_id: JobId
    """The job."""
    requester: Name
    """Who receives the result."""
    result_sha256: Hex64
    """Hex SHA-256 of the released result's RFC 8785 form."""
    cohort: int = Field(ge=0)
    """How many enterprises the result is over."""
    contributors: tuple[Name, ...]
    """The enterprises whose contributions it is computed from (sorted)."""


class DenialEntry(_Entry):
    """``pipeline.denial``: a compute request refused before a decision (actor: the requester)."""

    TYPE: ClassVar[str] = "pipeline.denial"

    requester: Name
    """Who asked."""
    reason: Literal["policy", "consent", "cohort"]
    """What refused it."""
    detail: str = Field(min_length=1, max_length=2000)
    """The refusal as the requester was told it."""
    request_sha256: Hex64
    """Hex SHA-256 of the request's RFC 8785 form."""


ENTRY_TYPES: tuple[type[BaseModel], ...] = (
    DecisionEntry,
    DenialEntry,
    JobEntry,
    ContributionEntry,
    RefusalEntry,
    WithdrawalEntry,
    ResultEntry,
)
"""Every entry type the pipeline writes."""
