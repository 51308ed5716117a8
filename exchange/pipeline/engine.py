"""What the pipeline asks of an engine (HE, MPC, PSI) for one job.

The pipeline core (authorization, jobs, the agents' routes, the release
terms) is engine-neutral; each engine implements :class:`EngineJob`:

* :meth:`EngineJob.start` — after the decision is on the ledger (HE: the key
  custodian creates the job's keys);
* :meth:`EngineJob.rounds` and :meth:`EngineJob.material` — what each agent
  is handed for each round (PSI needs several rounds; HE and MPC one);
* :meth:`EngineJob.payload_digest` — the hash an agent's signed statement
  must state for a payload (a payload of the wrong shape is refused);
* :meth:`EngineJob.compute` — from the authenticated contributions only, the
  computation *and* the release step (the guard's approval and a decryption
  commit together), giving an :class:`Outcome` or raising a refusal;
* :meth:`EngineJob.end` — whatever happens, release the job's resources (HE:
  destroy the key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import mpc
from core.canonical import JsonValue
from exchange.pipeline.request import EngineName
from exchange.pipeline.statements import DecisionRecord

__all__ = ["Answers", "EngineJob", "JobContext", "Outcome", "PayloadError", "ReleaseRefused"]


class PayloadError(ValueError):
    """A contribution payload of the wrong shape for its job (the API answers 422)."""


class ReleaseRefused(Exception):  # noqa: N818 - a verdict, not a malfunction
    """The release step refused the result (the job ends ``refused`` with this reason)."""


@dataclass(frozen=True)
class JobContext:
    """Everything an engine needs to know about one authorized job.

    ``release`` is the release guard's request: the policy's release terms
    for the data's classification (minimum cohort, order statistics,
    dominance, DP), each participant's consent terms (its minimum cohort and
    DP budget) and the requester's group for differencing.
    ``participants`` are the enterprises whose consent is still valid when
    the job computes (a revoked one is no longer here).
    """

    decision: DecisionRecord
    release: mpc.ReleaseRequest
    classification: str
    participants: tuple[str, ...]

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.decision.job_id


Answers = Mapping[str, Mapping[int, Mapping[str, JsonValue]]]
"""Authenticated payloads: enterprise → round → payload."""


@dataclass(frozen=True)
class Outcome:
    """A released result.

    ``values`` maps each released statistic to its numbers (see
    ``docs/pipeline.md``); ``shares`` maps an enterprise to what it alone
    may read (e.g. ``{"rank_tags": [...]}``); ``left_out`` says which
    contributions the engine refused and why (never told to the requester).
    """

    cohort: int
    values: Mapping[str, list[float]]
    epsilon: float | None = None
    shares: Mapping[str, Mapping[str, JsonValue]] = field(default_factory=dict)
    left_out: Mapping[str, str] = field(default_factory=dict)


class EngineJob(Protocol):
    """One engine's part of a job (see the module docstring)."""

    engine: EngineName

    def start(self, job: JobContext) -> None:
        """Prepare the job once its decision is recorded.

        Raises:
            Exception: the job cannot start (it fails with the reason).
        """
        ...

    def rounds(self, job: JobContext) -> int:
        """How many rounds each participant answers (1 for HE and MPC)."""
        ...

    def material(
        self, job: JobContext, enterprise: str, round_no: int, answers: Answers
    ) -> Mapping[str, JsonValue] | None:
        """What ``enterprise``'s agent is handed for ``round_no``; None: not ready yet."""
        ...

    def payload_digest(
        self, job: JobContext, enterprise: str, round_no: int, payload: Mapping[str, JsonValue]
    ) -> str:
        """The hex SHA-256 a statement must state for ``payload``.

        Raises:
            PayloadError: the payload does not have the job's shape.
        """
        ...

    def compute(self, job: JobContext, answers: Answers) -> Outcome:
        """Compute from the authenticated ``answers`` and pass the release step.

        Raises:
            ReleaseRefused: the release guard refused (cohort, differencing, budget,
                dominance); the job ends ``refused``.
            Exception: anything else fails the job.
        """
        ...

    def end(self, job_id: str) -> None:
        """Free the job's resources (idempotent)."""
        ...
