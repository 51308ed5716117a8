"""The HE engine of the pipeline: per-job keys, ciphertexts in, one decryption out.

:meth:`HeEngineJob.start` has the key custodian create the job's key pair
(``mpc.key.generate``); each agent fetches the public context
(``GET /v1/agent/jobs/{id}/he-context``), checks its SHA-256 against the
task's material and contributes ``{"key_fingerprint", "chunks"}``, whose hash
is :attr:`mpc.HeContribution.digest`. :meth:`HeEngineJob.compute` adds every
authenticated contribution to an :class:`mpc.HeAggregator` (an invalid one
is left out with its reason), then the custodian approves, decrypts once and
destroys the key in one transaction (:meth:`mpc.KeyCustodian.finish_job`);
differential privacy, when asked for, is added by the release guard.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import mpc
from consent import Operation
from core.canonical import JsonValue
from exchange.pipeline.engine import Answers, JobContext, Outcome, PayloadError, ReleaseRefused
from exchange.pipeline.request import EngineName
from mpc.errors import (
    CustodianError,
    InvalidContributionError,
    PrivacyBudgetExhaustedError,
    ReleaseRefusedError,
)

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = ["HeEngineJob", "he_engine", "he_spec"]

logger = logging.getLogger(__name__)

_OPERATIONS = {
    Operation.COUNT: mpc.HeOperation.COUNT,
    Operation.SUM: mpc.HeOperation.SUM,
    Operation.MEAN: mpc.HeOperation.MEAN,
    Operation.VARIANCE: mpc.HeOperation.VARIANCE,
    Operation.HISTOGRAM: mpc.HeOperation.HISTOGRAM,
    Operation.REGRESSION: mpc.HeOperation.LINEAR_REGRESSION,
}
_MAX_CHUNKS = 4096


def he_spec(job: JobContext) -> mpc.HeJobSpec:
    """The HE job spec of an authorized request.

    Raises:
        PayloadError: the operation does not run on HE.
        ValueError: parameters the spec refuses.
    """
    request = job.decision.request
    operation = _OPERATIONS.get(request.operation)
    if operation is None:
        raise PayloadError(f"{request.operation.value} does not run on HE")
    params = request.parameters
    if operation is mpc.HeOperation.LINEAR_REGRESSION:
        length = len(request.fields) - 1
    elif operation is mpc.HeOperation.HISTOGRAM:
        length = 1
    else:
        length = params.length
    return mpc.HeJobSpec(job.job_id, operation, length=length, bins=params.bins, bound=params.bound)


def _chunks(payload: Mapping[str, JsonValue]) -> tuple[str, tuple[bytes, ...]]:
    """The payload's key fingerprint and decoded ciphertext chunks.

    Raises:
        PayloadError: not ``{"key_fingerprint": hex, "chunks": [base64, ...]}``.
    """
    if set(payload) != {"key_fingerprint", "chunks"}:
        raise PayloadError('an HE payload is {"key_fingerprint", "chunks"}')
    fingerprint, chunks = payload["key_fingerprint"], payload["chunks"]
    if not isinstance(fingerprint, str) or not isinstance(chunks, list):
        raise PayloadError("key_fingerprint is hex and chunks a list of base64 strings")
    if not chunks or len(chunks) > _MAX_CHUNKS:
        raise PayloadError(f"an HE payload has 1 to {_MAX_CHUNKS} chunks")
    try:
        decoded = tuple(base64.b64decode(str(c), validate=True) for c in chunks)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError("a chunk is not base64") from exc
    return fingerprint, decoded


class HeEngineJob:
    """:class:`exchange.pipeline.engine.EngineJob` for HE (see the module docstring)."""

    engine = EngineName.HE

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def start(self, job: JobContext) -> None:
        """Create the job's key pair (``mpc.key.generate``).

        Raises:
            ValueError: parameters the HE spec refuses.
            CustodianError: a key for this job exists already.
        """
        self._runtime.key_custodian.create_job(he_spec(job))

    def rounds(self, job: JobContext) -> int:
        """One round."""
        return 1

    def material(
        self, job: JobContext, enterprise: str, round_no: int, answers: Answers
    ) -> Mapping[str, JsonValue] | None:
        """``{"spec": HeJobSpec dict, "context_sha256": hex}``."""
        public = self._runtime.key_custodian.public(job.job_id)
        spec = cast("dict[str, JsonValue]", public.spec.to_dict())  # JSON-ready by to_dict
        return {"spec": spec, "context_sha256": public.key_fingerprint}

    def public_context(self, job_id: str) -> bytes:
        """The job's public TenSEAL context (what agents encrypt under).

        Raises:
            UnknownJobError: no key for this job.
        """
        return self._runtime.key_custodian.public(job_id).public_context

    def payload_digest(
        self, job: JobContext, enterprise: str, round_no: int, payload: Mapping[str, JsonValue]
    ) -> str:
        """:attr:`mpc.HeContribution.digest` of the payload.

        Raises:
            PayloadError: not an HE payload.
        """
        fingerprint, chunks = _chunks(payload)
        return mpc.HeContribution(job.job_id, enterprise, fingerprint, chunks).digest

    def compute(self, job: JobContext, answers: Answers) -> Outcome:
        """Aggregate, approve, decrypt once and destroy the key; add DP noise if asked.

        Raises:
            ReleaseRefused: the guard refused (cohort, differencing, budget, dominance).
            CustodianError: the custodian refused to decrypt (the job fails).
        """
        custodian = self._runtime.key_custodian
        public = custodian.public(job.job_id)
        aggregator = mpc.HeAggregator(public)
        left_out: dict[str, str] = {}
        for enterprise in sorted(answers):
            if enterprise not in job.participants:
                continue
            payload = answers[enterprise].get(1)
            if payload is None:
                continue
            try:
                fingerprint, chunks = _chunks(payload)
                aggregator.add(mpc.HeContribution(job.job_id, enterprise, fingerprint, chunks))
            except (PayloadError, InvalidContributionError) as exc:
                left_out[enterprise] = str(exc)
        request = job.release
        spec = public.spec
        epsilon = job.decision.request.parameters.epsilon
        contributors = aggregator.contributors
        try:
            if not contributors or len(contributors) < request.min_cohort:
                raise mpc.errors.CohortTooSmallError(
                    f"{len(contributors)} authenticated contributions, the minimum cohort "
                    f"is {request.min_cohort}",
                    cohort=len(contributors),
                    minimum=request.min_cohort,
                )
            query = mpc.he_query(request.subject, spec, contributors)
            if epsilon is not None:
                self._runtime.release_guard.check_budget(request, query)
            result = custodian.finish_job(request, aggregator.aggregate(), left_out=left_out)
            values = list(result.values)
            if epsilon is not None:
                per_value = (
                    2
                    * spec.bound
                    / (result.cohort if spec.operation is mpc.HeOperation.MEAN else 1)
                )
                values = list(
                    self._runtime.release_guard.add_noise(
                        request, query, values, sensitivity=per_value * spec.length
                    )
                )
        except (ReleaseRefusedError, PrivacyBudgetExhaustedError) as exc:
            raise ReleaseRefused(f"{exc.title}: {exc}") from exc
        except CustodianError:
            raise
        return Outcome(
            cohort=result.cohort,
            values=_named(job, spec, values),
            epsilon=epsilon,
            left_out=left_out,
        )

    def end(self, job_id: str) -> None:
        """Destroy the job's key (idempotent; nothing to do for a job without one)."""
        try:
            self._runtime.key_custodian.end_job(job_id)
        except mpc.errors.UnknownJobError:
            return


def _named(job: JobContext, spec: mpc.HeJobSpec, values: list[float]) -> dict[str, list[float]]:
    """The released values by name, as ``docs/pipeline.md`` lists them."""
    op = spec.operation
    if op is mpc.HeOperation.HISTOGRAM:
        return {"counts": values}
    if op is mpc.HeOperation.LINEAR_REGRESSION:
        return {"coefficients": values}
    if op is mpc.HeOperation.VARIANCE:
        return {"means": values[: spec.length], "variances": values[spec.length :]}
    return {job.decision.request.operation.value: values}


def he_engine(runtime: Runtime) -> HeEngineJob:
    """The HE engine over ``runtime``'s key custodian and release guard."""
    return HeEngineJob(runtime)
