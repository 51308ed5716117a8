"""The PSI engine of the pipeline: how many items every participant holds, on a blinding ring.

The job's n participants (its decision's, in order of name) form a ring; the
session is the job id. In round 1 each agent posts its own distinct values,
hashed into the Ed25519 group and blinded with its secret key
(:meth:`mpc.PsiParty.blinded`). In round r (2..n) participant i is handed
what its predecessor on the ring, participant i − 1, posted in round r − 1 —
the set of participant i − (r − 1), blinded by r − 1 keys — and posts it
blinded once more (:meth:`mpc.PsiParty.reblind`, which also sorts the
points). The round-r material names the predecessor (``from``) and the
ledger index of its round r − 1 ``pipeline.contribution`` entry
(``contribution_index``), whose signed statement states the SHA-256 of
exactly the points handed on: the agent checks that entry on the ledger and
its signature with the predecessor's key as the decision states it, so the
exchange cannot hand an agent points of its own choosing (a guessed item's
hash passed round the ring would test whether the item is in the sets). That
entry names the successor (``"to": {"enterprise": successor}``,
:func:`psi_successor`), so the successor may read it and its inclusion
proof with its own-scope ledger read. After round n, participant i's answer
is the set of participant i + 1 blinded by every key exactly once; the
engine counts the points common to all those fully-blinded sets
(:func:`mpc.common_size`). The items are never revealed, to the exchange or
anyone: only the size is released.

A set is counted only if its whole chain is sound (every round answered,
each answer as many points as it was handed, none of them unchanged) and its
owner is still a participant (a revoked consent removes it). What the
exchange learns that the requester does not: the sizes of the sets and of
their overlaps (it holds the fully-blinded sets).

Release: the cohort (sets counted) must reach the strictest minimum; the
release is approved by the guard as a count over the cohort
(:class:`mpc.StatisticKind.COUNT` with the parameter ``operation =
set_intersection_size``), so it is recorded and judged against the group's
earlier releases about the same field like any other: two results over
cohorts that differ by one enterprise are refused.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select

import mpc
from core.canonical import JsonValue, canonical_sha256
from exchange.pipeline.engine import (
    Answers,
    JobContext,
    Outcome,
    PayloadError,
    ReleaseRefused,
)
from exchange.pipeline.request import EngineName
from exchange.pipeline.tables import AnswerRow
from mpc.errors import CohortTooSmallError, PsiError, ReleaseRefusedError

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = [
    "MAX_POINTS",
    "ContributionIndex",
    "PsiEngineJob",
    "psi_engine",
    "psi_predecessor",
    "psi_ring",
    "psi_successor",
]

logger = logging.getLogger(__name__)

MAX_POINTS = 100_000
"""The most points one payload may carry (each 32 bytes, about 45 characters in JSON)."""

_B64_POINT = 44
"""Length of a 32-byte point in padded base64."""


def psi_ring(job: JobContext) -> tuple[str, ...]:
    """The job's ring: its decision's participants in order of name.

    Raises:
        ValueError: fewer than two participants.
    """
    ring = tuple(sorted(p.enterprise for p in job.decision.participants))
    if len(ring) < 2:
        raise ValueError("a set intersection needs at least two participants")
    return ring


ContributionIndex = Callable[[str, str, int], int | None]
"""(job id, enterprise, round) → the ledger index of that stored contribution, None if none."""


def psi_predecessor(ring: Sequence[str], enterprise: str) -> str:
    """Who hands ``enterprise`` its set to blind in every round after the first.

    Raises:
        ValueError: ``enterprise`` is not on the ring.
    """
    return ring[(ring.index(enterprise) - 1) % len(ring)]


def psi_successor(job: JobContext, enterprise: str, round_no: int) -> str | None:
    """Who is handed ``enterprise``'s round ``round_no`` answer; None after the last round.

    Raises:
        ValueError: fewer than two participants, or ``enterprise`` is not on the ring.
    """
    ring = psi_ring(job)
    if enterprise not in ring:
        raise ValueError(f"{enterprise!r} is not a participant of job {job.job_id}")
    if not 1 <= round_no < len(ring):
        return None
    return ring[(ring.index(enterprise) + 1) % len(ring)]


def _points(payload: Mapping[str, JsonValue]) -> list[bytes]:
    """The payload's points, decoded and checked.

    Raises:
        PayloadError: not ``{"points": [...]}``, none or too many, duplicates, or a
            point that is not a canonical encoding of a group element.
    """
    if set(payload) != {"points"}:
        raise PayloadError('a PSI payload is {"points": [base64, ...]}')
    raw = payload["points"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_POINTS:
        raise PayloadError(f"a PSI payload holds 1 to {MAX_POINTS} points")
    points = []
    for item in raw:
        if not isinstance(item, str) or len(item) != _B64_POINT:
            raise PayloadError("a point is 32 bytes in base64")
        try:
            points.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise PayloadError("a point is not base64") from exc
    try:
        return list(mpc.BlindedSet.checked("payload", points).points)
    except PsiError as exc:
        raise PayloadError(str(exc)) from exc


class PsiEngineJob:
    """The PSI engine (see the module docstring); one instance serves every PSI job."""

    engine = EngineName.PSI

    def __init__(self, guard: mpc.ReleaseGuard, contribution_index: ContributionIndex) -> None:
        """An engine releasing through ``guard``; ``contribution_index`` finds where a
        stored contribution is on the ledger (named in the next round's material)."""
        self._guard = guard
        self._contribution_index = contribution_index

    def start(self, job: JobContext) -> None:
        """Check that the job can form a ring.

        Raises:
            ValueError: fewer than two participants.
        """
        psi_ring(job)

    def rounds(self, job: JobContext) -> int:
        """n rounds for n participants (each set passes every key once).

        Raises:
            ValueError: fewer than two participants.
        """
        return len(psi_ring(job))

    def material(
        self, job: JobContext, enterprise: str, round_no: int, answers: Answers
    ) -> Mapping[str, JsonValue] | None:
        """Round 1: the session and the number of parties; round r: the set to blind again.

        Round r: ``{"session", "points", "from": predecessor, "contribution_index":
        i}``, ``i`` the ledger index of the predecessor's round r − 1 contribution
        (the agent checks the points against its signed statement). None while
        the predecessor's answer to the round before is missing.

        Raises:
            ValueError: ``enterprise`` is not on the ring, or no such round.
        """
        ring = psi_ring(job)
        if enterprise not in ring:
            raise ValueError(f"{enterprise!r} is not a participant of job {job.job_id}")
        if not 1 <= round_no <= len(ring):
            raise ValueError(f"a PSI job of {len(ring)} participants has rounds 1 to {len(ring)}")
        if round_no == 1:
            return {"session": job.job_id, "parties": len(ring)}
        before = psi_predecessor(ring, enterprise)
        handed = answers.get(before, {}).get(round_no - 1)
        if handed is None:
            return None
        index = self._contribution_index(job.job_id, before, round_no - 1)
        if index is None:
            return None
        return {
            "session": job.job_id,
            "points": handed["points"],
            "from": before,
            "contribution_index": index,
        }

    def payload_digest(
        self, job: JobContext, enterprise: str, round_no: int, payload: Mapping[str, JsonValue]
    ) -> str:
        """SHA-256 of the payload's RFC 8785 form, once its points are checked.

        Raises:
            PayloadError: no such round, or points that are malformed (see :func:`_points`).
        """
        ring = psi_ring(job)
        if enterprise not in ring or not 1 <= round_no <= len(ring):
            raise PayloadError(f"no round {round_no} for {enterprise!r} in this job")
        _points(payload)
        return canonical_sha256(dict(payload)).hex()

    def compute(self, job: JobContext, answers: Answers) -> Outcome:
        """Count the points common to every sound fully-blinded set; the release step.

        Raises:
            ReleaseRefused: fewer sound sets than the minimum cohort, or the guard
                refused (differencing against the group's earlier releases).
            ValueError: fewer than two participants.
        """
        ring = psi_ring(job)
        left_out: dict[str, str] = {}
        sets: dict[str, mpc.BlindedSet] = {}
        for origin in ring:
            if origin not in job.participants:
                left_out[origin] = "no longer a participant (its consent was withdrawn)"
                continue
            try:
                sets[origin] = mpc.BlindedSet(job.job_id, tuple(_chain(ring, origin, answers)))
            except (_BrokenChainError, PayloadError) as exc:
                left_out[origin] = str(exc)
        request = job.release
        try:
            if len(sets) < max(request.min_cohort, 2):
                raise CohortTooSmallError(
                    f"{len(sets)} complete sets, the minimum cohort is {request.min_cohort}",
                    cohort=len(sets),
                    minimum=request.min_cohort,
                )
            size = mpc.common_size(list(sets.values()))
            query = mpc.ReleaseQuery.uniform(
                request.subject,
                (mpc.StatisticKind.COUNT,),
                sorted(sets),
                (("operation", "set_intersection_size"),),
            )
            self._guard.approve(request, query, left_out=left_out)
        except ReleaseRefusedError as exc:
            raise ReleaseRefused(f"{exc.title}: {exc}") from exc
        logger.info(
            "PSI job %s released over %d sets (%d left out)", job.job_id, len(sets), len(left_out)
        )
        return Outcome(cohort=len(sets), values={"size": [float(size)]}, left_out=left_out)

    def end(self, job_id: str) -> None:
        """Nothing to free: the exchange holds no PSI key."""


class _BrokenChainError(Exception):
    """A set's passage around the ring is incomplete or was tampered with."""


def _chain(ring: Sequence[str], origin: str, answers: Answers) -> list[bytes]:
    """``origin``'s set after every key blinded it once, with each step checked.

    Raises:
        _BrokenChainError: a step is missing, changed the number of points, or left a
            point unchanged (not blinded).
        PayloadError: a stored answer that is malformed.
    """
    n = len(ring)
    start = ring.index(origin)
    points: list[bytes] | None = None
    for round_no in range(1, n + 1):
        holder = ring[(start + round_no - 1) % n]
        payload = answers.get(holder, {}).get(round_no)
        if payload is None:
            raise _BrokenChainError(
                f"its set is incomplete: {holder} did not answer round {round_no}"
            )
        step = _points(payload)
        if points is not None:
            if len(step) != len(points):
                raise _BrokenChainError(
                    f"{holder} answered round {round_no} with {len(step)} points, "
                    f"it was handed {len(points)}"
                )
            if not set(step).isdisjoint(points):
                raise _BrokenChainError(f"{holder} did not blind its round {round_no} set")
        points = step
    assert points is not None
    return points


def psi_engine(runtime: Runtime) -> PsiEngineJob:
    """The PSI engine of ``runtime`` (contributions' ledger indices from its answers table)."""

    def contribution_index(job_id: str, enterprise: str, round_no: int) -> int | None:
        with runtime.db.read() as session:
            index = session.execute(
                select(AnswerRow.ledger_index).where(
                    AnswerRow.job_id == job_id,
                    AnswerRow.enterprise == enterprise,
                    AnswerRow.round == round_no,
                    AnswerRow.kind == "contribution",
                )
            ).scalar_one_or_none()
        return None if index is None else int(index)

    return PsiEngineJob(runtime.release_guard, contribution_index)
