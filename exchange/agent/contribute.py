"""What an agent sends for a verified task: exactly the payloads of docs/pipeline.md.

* HE: the job's public TenSEAL context (its SHA-256 must be the material's
  ``context_sha256``; one already fetched for that SHA-256 is reused, not
  fetched again), the values encrypted under it
  (:class:`mpc.HeContributor`): ``{"key_fingerprint", "chunks": [base64...]}``,
  hashed as :attr:`mpc.HeContribution.digest`; the raw chunks ride along
  (:attr:`Contribution.he_chunks`) for the binary form of
  :mod:`exchange.pipeline.frames`.
* MPC: one value, Shamir-shared and each share sealed to its party's key
  (:class:`mpc.ShareDealer`): ``{"shares": [SealedShare...]}``; with ``ranks``
  the agent keeps its secret rank tag to find its own rank after release.
* PSI: round 1 its column's distinct values blinded with a fresh secret scalar;
  later rounds another participant's points blinded again with the same
  scalar: ``{"points": [base64...]}``. The scalar is kept in the state dir
  between rounds (``psi/<job>.json``, 0600), so a restarted agent goes on.

MPC and PSI payloads are hashed as SHA-256 of their RFC 8785 form. Values are
read from the source only here, after the task was verified, and only the
request's fields. A value that does not fit the job (not a number, beyond the
bound, the wrong number of rows) refuses the task, without naming the value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import mpc
from consent import Operation
from core.canonical import JsonValue, canonical_sha256
from exchange.agent.errors import SourceError, TaskRefused
from exchange.agent.journal import AgentState
from exchange.agent.sources import FieldReader
from exchange.agent.task import Task
from exchange.pipeline.request import EngineName, Reduce
from mpc.errors import MpcError, NonNumericValueError

__all__ = ["HE_OPERATION", "Contribution", "Contributor", "reduce_column"]

HE_OPERATION: Mapping[Operation, str] = {
    Operation.COUNT: "count",
    Operation.SUM: "sum",
    Operation.MEAN: "mean",
    Operation.VARIANCE: "variance",
    Operation.HISTOGRAM: "histogram",
    Operation.REGRESSION: "linear_regression",
}
"""The HE job operation (:class:`mpc.HeOperation` value) each request operation runs as."""


@dataclass(frozen=True)
class Contribution:
    """A payload ready to sign and send, its hash, and the rank tag it dealt (MPC ranks)."""

    payload: Mapping[str, JsonValue]
    payload_sha256: str
    rank_tag: int | None = field(default=None, repr=False)
    he_chunks: tuple[bytes, ...] | None = field(default=None, repr=False)
    """HE: the ciphertext chunks the payload holds in base64, for the binary form."""


CONTEXTS_KEPT = 2
"""Public HE contexts (about 0.5 MB each) kept in memory by their SHA-256."""


ContextFetcher = Callable[[str], bytes]
"""Fetches a job's public HE context (``GET /v1/agent/jobs/{id}/he-context``)."""


def reduce_column(values: Sequence[float], how: Reduce) -> float:
    """One value from a column: its sum, mean or last value.

    Raises:
        SourceError: the column has no rows.
    """
    if not values:
        raise SourceError("the column has no rows")
    if how is Reduce.SUM:
        return float(sum(values))
    if how is Reduce.MEAN:
        return float(sum(values)) / len(values)
    if how is Reduce.LAST:
        return values[-1]
    raise SourceError(f"cannot reduce a column to one value with {how.value}")


class Contributor:
    """Builds this enterprise's contribution to a verified task."""

    def __init__(
        self,
        enterprise: str,
        reader: FieldReader,
        he_context: ContextFetcher,
        state: AgentState | None = None,
    ) -> None:
        self.enterprise = enterprise
        self._state = state
        self._reader = reader
        self._he_context = he_context
        self._contexts: dict[str, bytes] = {}
        """Public HE contexts by SHA-256 (at most :data:`CONTEXTS_KEPT`, newest last)."""
        self._psi: dict[str, mpc.PsiParty] = {}
        """PSI sessions by job id; their keys are also kept in ``state`` for a restart."""

    def contribute(self, task: Task, engine: EngineName) -> Contribution:
        """The payload for ``task`` on ``engine`` (the decision's engine).

        Raises:
            TaskRefused: the material is malformed or not the authorized job's, the
                source cannot give the values, or they do not fit the job.
        """
        try:
            if engine is EngineName.HE:
                return self._he(task)
            if engine is EngineName.MPC:
                return self._mpc(task)
            if engine is EngineName.PSI:
                return self._psi_round(task)
        except NonNumericValueError as exc:
            raise TaskRefused("a value of the source is not a finite number") from exc
        except MpcError as exc:
            raise TaskRefused(f"the values do not fit the job: {exc.title}: {exc}") from exc
        raise TaskRefused(f"unknown engine {engine.value}")

    # -- HE ------------------------------------------------------------------------------

    def _he(self, task: Task) -> Contribution:
        material = task.material
        try:
            spec = mpc.HeJobSpec.from_dict(dict(_object(material["spec"])))
            expected_sha = str(material["context_sha256"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TaskRefused(f"the HE material is malformed: {exc}") from exc
        request = task.request
        if spec.job_id != task.job_id:
            raise TaskRefused(f"the HE spec is for job {spec.job_id}, not {task.job_id}")
        if spec.operation.value != HE_OPERATION.get(request.operation):
            raise TaskRefused(
                f"the HE job computes {spec.operation.value}, the request {request.operation.value}"
            )
        if tuple(spec.bins) != tuple(request.parameters.bins):
            raise TaskRefused("the HE job's bins are not the request's")
        context = self._context(task.job_id, expected_sha)
        values = self._he_values(task, spec)
        job = mpc.HeJobPublic(spec, context)
        try:
            if job.context.is_private():
                raise TaskRefused("the HE context served holds a secret key")
        except ValueError as exc:
            raise TaskRefused("the HE context served is not a TenSEAL context") from exc
        contribution = mpc.HeContributor(job).encrypt(self.enterprise, values)
        payload: dict[str, JsonValue] = {
            "key_fingerprint": contribution.key_fingerprint,
            "chunks": [base64.b64encode(c).decode() for c in contribution.chunks],
        }
        return Contribution(payload, contribution.digest, he_chunks=tuple(contribution.chunks))

    def _context(self, job_id: str, sha256: str) -> bytes:
        """The public HE context whose SHA-256 is ``sha256``: kept, else fetched and kept.

        Raises:
            TaskRefused: the context served has another SHA-256.
        """
        kept = self._contexts.get(sha256)
        if kept is not None:
            return kept
        context = self._he_context(job_id)
        if not hmac.compare_digest(hashlib.sha256(context).hexdigest(), sha256):
            raise TaskRefused("the HE context served is not the one the task names (SHA-256)")
        self._contexts[sha256] = context
        while len(self._contexts) > CONTEXTS_KEPT:
            del self._contexts[next(iter(self._contexts))]
        return context

    def _he_values(self, task: Task, spec: mpc.HeJobSpec) -> Sequence[object] | mpc.RegressionInput:
        request = task.request
        if spec.operation is mpc.HeOperation.LINEAR_REGRESSION:
            rows = self._reader.rows(request.fields)
            if not rows:
                raise SourceError("the source has no rows")
            return mpc.RegressionInput(tuple(r[1:] for r in rows), tuple(r[0] for r in rows))
        column = self._reader.numbers(request.fields[0])
        if spec.operation is mpc.HeOperation.HISTOGRAM:
            return column
        how = request.reduce(EngineName.HE)
        if how is Reduce.NONE:
            if len(column) != spec.length:
                raise SourceError(f"the source has {len(column)} rows, the job takes {spec.length}")
            return column
        return (reduce_column(column, how),)

    # -- MPC -----------------------------------------------------------------------------

    def _mpc(self, task: Task) -> Contribution:
        material = task.material
        try:
            spec = mpc.MpcJobSpec.from_dict(dict(_object(material["spec"])))
            keys = [
                base64.b64decode(str(k), validate=True) for k in _list(material["box_public_keys"])
            ]
            threshold = material["threshold"]
            ranks = material.get("ranks", False)
            if isinstance(threshold, bool) or not isinstance(threshold, int):
                raise TypeError("threshold must be an integer")
            if not isinstance(ranks, bool):
                raise TypeError("ranks must be true or false")
            if not 1 <= threshold < len(keys) or any(len(k) != 32 for k in keys):
                raise ValueError("threshold or party keys out of shape")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise TaskRefused(f"the MPC material is malformed: {exc}") from exc
        if spec.job_id != task.job_id:
            raise TaskRefused(f"the MPC spec is for job {spec.job_id}, not {task.job_id}")
        column = self._reader.numbers(task.request.fields[0])
        value = reduce_column(column, task.request.reduce(EngineName.MPC))
        dealt = mpc.ShareDealer.for_job(spec, keys, threshold).deal(
            self.enterprise, value, with_rank_key=ranks
        )
        payload: dict[str, JsonValue] = {"shares": [_json(s.to_dict()) for s in dealt.envelopes]}
        tag = dealt.rank_key.tag if dealt.rank_key is not None else None
        return Contribution(payload, canonical_sha256(payload).hex(), tag)

    # -- PSI -----------------------------------------------------------------------------

    def _psi_round(self, task: Task) -> Contribution:
        material = task.material
        try:
            session = str(material["session"])
            points = None
            parties = 0
            if task.round == 1:
                given_parties = material["parties"]
                if type(given_parties) is not int or given_parties < 2:
                    raise ValueError("parties must be an integer of at least 2")
                parties = given_parties
            else:
                given = _list(material["points"])
                points = tuple(base64.b64decode(str(p), validate=True) for p in given)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise TaskRefused(f"the PSI material is malformed: {exc}") from exc
        if session != task.job_id:
            raise TaskRefused(f"the PSI session is {session}, not the job {task.job_id}")
        if points is None:
            items = self._reader.texts(task.request.fields[0])
            party = mpc.PsiParty(session, items, mpc.PsiMode.CARDINALITY)
            self._psi[task.job_id] = party
            if self._state is not None:
                self._state.keep_psi_key(task.job_id, party.export_key(), parties)
            out = party.blinded().points
        else:
            party = self._psi_party(task, session)
            out = party.reblind(mpc.BlindedSet(session, points)).points
            kept = self._state.psi_key(task.job_id) if self._state is not None else None
            if kept is not None and task.round >= kept[1]:
                self.forget(task.job_id)
        payload: dict[str, JsonValue] = {"points": [base64.b64encode(p).decode() for p in out]}
        return Contribution(payload, canonical_sha256(payload).hex())

    def _psi_party(self, task: Task, session: str) -> mpc.PsiParty:
        party = self._psi.get(task.job_id)
        if party is not None:
            return party
        kept = self._state.psi_key(task.job_id) if self._state is not None else None
        if kept is None:
            raise TaskRefused(
                "this agent holds no PSI key of this job's round 1 (lost), "
                "so it cannot blind later rounds"
            )
        items = self._reader.texts(task.request.fields[0])
        party = mpc.PsiParty.restore(session, items, mpc.PsiMode.CARDINALITY, kept[0])
        self._psi[task.job_id] = party
        return party

    def forget(self, job_id: str) -> None:
        """Drop what the agent holds for a job (its PSI key, in memory and on disk)."""
        self._psi.pop(job_id, None)
        if self._state is not None:
            self._state.forget_psi_key(job_id)


def _object(value: object) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value


def _json(value: Mapping[str, object]) -> JsonValue:
    return dict(value.items())  # type: ignore[arg-type]
