"""Errors of the pipeline (statuses in :mod:`exchange.error_table`).

::

    PipelineError
    ├── InvalidComputeRequestError   a malformed compute request (422)
    ├── RequestRefusedError          policy, consent or the cohort refused the request (403)
    ├── JobNotFoundError             no such job, or not one the caller may see (404)
    ├── JobStateError                the job's state does not allow it (409)
    │   └── ResultNotReadyError      the result is not released (409, names the state)
    ├── StatementRefusedError        an agent's statement that is not authentic or not for
    │                                this job, round or enterprise (403; logged)
    ├── AnswerConflictError          another answer for a round already answered (409)
    ├── NotCollectingError           the job no longer collects (410)
    ├── InvalidPayloadError          a payload of the wrong shape for its job (422)
    └── EngineUnavailableError       the engine's module is not installed here (501)
"""

from __future__ import annotations

from core.errors import IbxError

__all__ = [
    "AnswerConflictError",
    "EngineUnavailableError",
    "InvalidComputeRequestError",
    "InvalidPayloadError",
    "JobNotFoundError",
    "JobStateError",
    "NotCollectingError",
    "PipelineError",
    "RequestRefusedError",
    "ResultNotReadyError",
    "StatementRefusedError",
]


class PipelineError(IbxError):
    """Root of every pipeline error."""

    title = "pipeline error"


class InvalidComputeRequestError(PipelineError):
    """A compute request that is malformed."""

    title = "invalid compute request"


class RequestRefusedError(PipelineError):
    """Policy, consent or the minimum cohort refused the request; ``reason`` says which."""

    title = "compute request refused"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """``policy``, ``consent`` or ``cohort``."""


class JobNotFoundError(PipelineError):
    """No such job (or one the caller may not see: the same answer)."""

    title = "job not found"


class JobStateError(PipelineError):
    """The job's state does not allow this."""

    title = "job state conflict"

    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message)
        self.state = state


class ResultNotReadyError(JobStateError):
    """The job's result is not released."""

    title = "result not released"


class StatementRefusedError(PipelineError):
    """An agent's statement that is not authentic, or not for this job, round or caller."""

    title = "statement refused"


class AnswerConflictError(PipelineError):
    """Another answer for a round the enterprise already answered."""

    title = "round already answered"


class NotCollectingError(PipelineError):
    """The job no longer collects answers."""

    title = "job no longer collecting"

    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message)
        self.state = state


class InvalidPayloadError(PipelineError):
    """A contribution payload of the wrong shape for its job."""

    title = "invalid payload"


class EngineUnavailableError(PipelineError):
    """The engine's module is not part of this installation yet."""

    title = "engine unavailable"
