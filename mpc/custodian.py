"""The key custodian: one fresh HE key per job, decrypting only approved final aggregates.

Life of a job key:

1. :meth:`KeyCustodian.create_job` generates a secret context, stores it
   encrypted under the master key (aad binds the blob to the job id) and
   hands out only the public context. Recorded as ``mpc.key.generate``.
2. :meth:`KeyCustodian.release` takes the aggregator's checked contributions
   (with the vectors the aggregator deserialised, or bytes it loads itself),
   sums them *itself* (so what it decrypts is always a sum over the approved
   cohort, never one enterprise's ciphertext), decrypts once with the secret
   key, checks every slot against the job's bounds and the check slot where
   there is one, and returns only the finished result. Recorded as
   ``mpc.key.decrypt``. The release guard's stored approval for the job must
   name exactly the aggregate's contributors.
3. :meth:`KeyCustodian.end_job` erases the secret. Recorded as
   ``mpc.key.destroy``; later decryptions fail with :class:`KeyDestroyedError`.

Each event is written in the same database transaction as the custodian's
own row change, so a key operation and its ledger entry commit together.
:meth:`KeyCustodian.finish_job` does the guard's approval, step 2 and step 3
in one transaction: one durable commit per release.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import tenseal as ts
from sqlalchemy.orm import Session

from core.clock import format_rfc3339, utcnow
from core.db import Database
from core.errors import KeyDecryptionError
from core.events import Event, EventRecorder
from core.keys import MasterKey
from mpc._engine_queries import he_query
from mpc._tables import HeKeyRow, HePublicRow
from mpc.entries import KeyDecryptEntry, KeyDestroyEntry, KeyGenerateEntry
from mpc.errors import (
    AggregateIntegrityError,
    DecryptionRefusedError,
    InvalidContributionError,
    KeyDestroyedError,
    UnknownJobError,
)
from mpc.guard import (
    HARD_MIN_COHORT,
    Engine,
    ReleaseApproval,
    ReleaseGuard,
    ReleaseRequest,
    choose_engine,
)
from mpc.hazmat import he as raw
from mpc.hazmat.he import HeScheme
from mpc.he import (
    EncryptedAggregate,
    HeJobPublic,
    HeJobSpec,
    HeOperation,
    HeResult,
    HeVector,
    finalize,
)

__all__ = ["CustodianConfig", "KeyCustodian"]

logger = logging.getLogger(__name__)

_ACTIVE = "active"
_RELEASED = "released"
_DESTROYED = "destroyed"


@dataclass(frozen=True)
class CustodianConfig:
    """``actor`` is the name the custodian's ledger events are recorded under."""

    actor: str = "key-custodian"


class KeyCustodian:
    """Generates, guards, uses once, and destroys each HE job's secret key."""

    def __init__(
        self,
        db: Database,
        master: MasterKey,
        recorder: EventRecorder,
        guard: ReleaseGuard,
        config: CustodianConfig | None = None,
    ) -> None:
        self._db = db
        self._master = master
        self._recorder = recorder
        self._guard = guard
        self._config = config or CustodianConfig()
        self._jobs: dict[str, HeJobPublic] = {}
        """Public halves of the jobs this custodian created and has not finished:
        their contexts stay deserialised for the aggregator and the enterprises."""

    @staticmethod
    def _aad(job_id: str) -> bytes:
        return b"ibx/mpc/he-secret-context/" + job_id.encode()

    def create_job(self, spec: HeJobSpec) -> HeJobPublic:
        """Generate the job's key pair and return the public half.

        Raises:
            DecryptionRefusedError: a key for this job id exists already.
            ledger.LedgerError: the generation could not be recorded (nothing stored).
        """
        ctx = raw.new_secret_context(spec.scheme)
        job = HeJobPublic.from_context(spec, raw.public_context(ctx))
        public = job.public_context
        blob = self._master.encrypt(raw.secret_bytes(ctx), aad=self._aad(spec.job_id))
        del ctx
        with self._db.write() as session:
            if session.get(HeKeyRow, spec.job_id) is not None:
                raise DecryptionRefusedError(f"job {spec.job_id!r} already has a key")
            session.add(
                HeKeyRow(
                    job_id=spec.job_id,
                    scheme=spec.scheme.value,
                    spec_json=json.dumps(spec.to_dict()),
                    key_fingerprint=job.key_fingerprint,
                    encrypted_secret=blob,
                    state=_ACTIVE,
                    created_at=format_rfc3339(utcnow()),
                )
            )
            session.add(HePublicRow(job_id=spec.job_id, public_context=public))
            session.flush()
            self._recorder.record(
                Event(
                    KeyGenerateEntry.TYPE,
                    self._config.actor,
                    KeyGenerateEntry(
                        job_id=spec.job_id,
                        scheme=spec.scheme,
                        operation=spec.operation,
                        key_fingerprint=job.key_fingerprint,
                    ).model_dump(mode="json"),
                ),
                session=session,
            )
        self._jobs[spec.job_id] = job
        logger.info("job %s: generated a %s key", spec.job_id, spec.scheme.value)
        return job

    def public(self, job_id: str) -> HeJobPublic:
        """The job's spec and public context.

        Raises:
            UnknownJobError: no such job.
        """
        cached = self._jobs.get(job_id)
        if cached is not None:
            return cached
        with self._db.read() as session:
            row = session.get(HeKeyRow, job_id)
            public = session.get(HePublicRow, job_id)
            if row is None or public is None:
                raise UnknownJobError(f"no key for job {job_id!r}")
            return HeJobPublic(
                HeJobSpec.from_dict(json.loads(row.spec_json)), public.public_context
            )

    def release(self, aggregate: EncryptedAggregate) -> HeResult:
        """Sum the aggregate's contributions, decrypt the sum once, and finish the result.

        Needs the release guard's stored approval (:meth:`ReleaseGuard.approve`)
        for exactly the aggregate's contributors. :meth:`finish_job` does the
        approval, this and :meth:`end_job` in a single transaction.

        Raises:
            UnknownJobError: no such job.
            KeyDestroyedError: the job ended.
            DecryptionRefusedError: no approval for this job, an approval for another
                cohort, fewer than two contributions, or the job was already released.
            AggregateIntegrityError: a decrypted slot is out of range or the check
                slot is wrong (a contribution was made under another key); nothing
                is released.
            InvalidContributionError: an aggregate assembled from bytes holds one
                that is not a ciphertext of the job's shape.
            ledger.LedgerError: the decryption could not be recorded; nothing is released.
        """
        job_id = aggregate.job_id
        with self._db.write() as session:
            row = self._usable_row(session, job_id)
            self._check_cohort(aggregate)
            approval = self._guard.approval(job_id, session=session)
            if approval is None:
                raise DecryptionRefusedError(f"the release of job {job_id!r} was not approved")
            result = self._decrypt(row, aggregate, approval)
            row.state = _RELEASED
            self._recorder.record(self._decrypt_event(row, aggregate), session=session)
        self._jobs.pop(job_id, None)
        logger.info("job %s: decrypted the approved aggregate", job_id)
        return result

    def finish_job(
        self,
        request: ReleaseRequest,
        aggregate: EncryptedAggregate,
        *,
        left_out: Mapping[str, str] | None = None,
    ) -> HeResult:
        """Approve the release, decrypt the aggregate and destroy the key, in one transaction.

        The guard judges the release by what the job computes (its operation,
        public weights and bin edges, over exactly the aggregate's
        contributors; ``left_out`` says who was left out and why, kept for
        the enterprise and auditors). The guard's approval, its reduced
        forms, the key's state change and the two ledger entries
        (``mpc.key.decrypt``, ``mpc.key.destroy``) commit together in one
        durable commit, or not at all: a refused or failed decryption leaves
        no approval behind. Histogram bins under the minimum cohort come
        back as NaN (suppressed).

        Raises:
            UnknownJobError: no such job.
            KeyDestroyedError: the job ended.
            DecryptionRefusedError: the request is for another job, fewer than two
                contributions, or the job was already released.
            EngineChoiceError: the policy applies a dominance rule, which HE cannot check.
            ReleaseRefusedError: the release guard refused (cohort, weights, or what the
                requester's group could solve with its earlier releases).
            CohortTooSmallError: fewer contributors than the strictest minimum.
            DifferencingError: the job was already released, or (LinearDisclosureError)
                with the group's earlier releases one value would be solvable.
            AggregateIntegrityError: a decrypted slot is out of range or the check
                slot is wrong (a contribution was made under another key); nothing
                is released or approved, and the key is kept.
            InvalidContributionError: an aggregate assembled from bytes holds one
                that is not a ciphertext of the job's shape.
            ledger.LedgerError: the key operations could not be recorded; nothing is
                released.
        """
        job_id = aggregate.job_id
        if request.job_id != job_id:
            raise DecryptionRefusedError(
                f"the release request is for job {request.job_id!r}, not {job_id!r}"
            )
        choose_engine(request.policy, Engine.HE)  # dominance needs MPC: refused here
        with self._db.write() as session:
            row = self._usable_row(session, job_id)
            self._check_cohort(aggregate)
            spec = HeJobSpec.from_dict(json.loads(row.spec_json))
            query = he_query(request.subject, spec, aggregate.contributors)
            approval = self._guard.approve(request, query, left_out=left_out, session=session)
            result = self._decrypt(row, aggregate, approval)
            if spec.operation is HeOperation.HISTOGRAM:
                kept = self._guard.suppress_small_bins(request, result.values)
                values = tuple(math.nan if v is None else v for v in kept)
                result = dataclasses.replace(result, values=values)
            decrypted = self._decrypt_event(row, aggregate)
            self._erase(row)
            self._recorder.record_batch([decrypted, self._destroy_event(row)], session=session)
        self._jobs.pop(job_id, None)
        logger.info("job %s: decrypted the approved aggregate and destroyed the key", job_id)
        return result

    @staticmethod
    def _usable_row(session: Session, job_id: str) -> HeKeyRow:
        row = session.get(HeKeyRow, job_id)
        if row is None:
            raise UnknownJobError(f"no key for job {job_id!r}")
        if row.state == _DESTROYED or row.encrypted_secret is None:
            raise KeyDestroyedError(f"the key of job {job_id!r} was destroyed")
        if row.state == _RELEASED:
            raise DecryptionRefusedError(f"job {job_id!r} was already released once")
        return row

    @staticmethod
    def _check_cohort(aggregate: EncryptedAggregate) -> None:
        contributions = aggregate.contributions
        if len(contributions) < HARD_MIN_COHORT or len(aggregate.contributors) != len(
            contributions
        ):
            raise DecryptionRefusedError(
                "only a sum over at least two distinct contributors is ever decrypted"
            )
        if any(c.job_id != aggregate.job_id for c in contributions):
            raise DecryptionRefusedError("the aggregate mixes contributions of other jobs")

    def _decrypt(
        self, row: HeKeyRow, aggregate: EncryptedAggregate, approval: ReleaseApproval
    ) -> HeResult:
        job_id = aggregate.job_id
        contributors = aggregate.contributors
        if approval.contributors != contributors:
            raise DecryptionRefusedError("the aggregate's contributors are not the approved cohort")
        if len(contributors) < approval.min_cohort:
            raise DecryptionRefusedError("the aggregate is below the approved minimum cohort")
        spec = HeJobSpec.from_dict(json.loads(row.spec_json))
        assert row.encrypted_secret is not None  # checked by _usable_row
        try:
            secret = self._master.decrypt(row.encrypted_secret, aad=self._aad(job_id))
        except KeyDecryptionError as exc:
            raise DecryptionRefusedError("the job key does not open") from exc
        plain = _sum_and_decrypt(spec, raw.load_context(secret), aggregate)
        del secret
        payload = _check_integrity(spec, job_id, contributors, plain)
        return finalize(spec, payload, len(contributors))

    def _decrypt_event(self, row: HeKeyRow, aggregate: EncryptedAggregate) -> Event:
        """``cohort_sha256`` names the encryptions summed: contributor and fingerprint."""
        return Event(
            KeyDecryptEntry.TYPE,
            self._config.actor,
            KeyDecryptEntry(
                job_id=row.job_id,
                key_fingerprint=row.key_fingerprint,
                cohort_sha256=aggregate.cohort_digest,
                contributors=len(aggregate.contributors),
            ).model_dump(mode="json"),
        )

    def _destroy_event(self, row: HeKeyRow) -> Event:
        return Event(
            KeyDestroyEntry.TYPE,
            self._config.actor,
            KeyDestroyEntry(job_id=row.job_id, key_fingerprint=row.key_fingerprint).model_dump(
                mode="json"
            ),
        )

    @staticmethod
    def _erase(row: HeKeyRow) -> None:
        row.encrypted_secret = None
        row.state = _DESTROYED
        row.destroyed_at = format_rfc3339(utcnow())

    def end_job(self, job_id: str) -> None:
        """Destroy the job's secret key (idempotent).

        Raises:
            UnknownJobError: no such job.
            ledger.LedgerError: the destruction could not be recorded; the key is kept.
        """
        with self._db.write() as session:
            row = session.get(HeKeyRow, job_id)
            if row is None:
                raise UnknownJobError(f"no key for job {job_id!r}")
            if row.state == _DESTROYED:
                return
            self._erase(row)
            self._recorder.record(self._destroy_event(row), session=session)
        self._jobs.pop(job_id, None)
        logger.info("job %s: key destroyed", job_id)


def _vector_rows(
    spec: HeJobSpec, secret: ts.Context, aggregate: EncryptedAggregate
) -> Iterator[tuple[HeVector, ...]]:
    """The aggregator's deserialised vectors, or the bytes loaded here (checked alike)."""
    if aggregate.vectors:
        if len(aggregate.vectors) != len(aggregate.contributions) or any(
            len(row) != spec.chunk_count for row in aggregate.vectors
        ):
            raise DecryptionRefusedError("the aggregate's vectors do not match its contributions")
        yield from aggregate.vectors
        return
    sizes = spec.chunk_sizes
    for contribution in aggregate.contributions:
        who = contribution.contributor
        if len(contribution.chunks) != spec.chunk_count:
            raise InvalidContributionError("has the wrong number of ciphertexts", contributor=who)
        row: list[HeVector] = []
        for index, chunk in enumerate(contribution.chunks):
            try:
                vector = raw.load_vector(secret, spec.scheme, chunk)
            except ValueError as exc:
                raise InvalidContributionError(
                    f"ciphertext {index} is not a {spec.scheme.value} ciphertext", contributor=who
                ) from exc
            if vector.size() != sizes[index]:
                raise InvalidContributionError(
                    f"ciphertext {index} has the wrong size", contributor=who
                )
            row.append(vector)
        yield tuple(row)


def _sum_and_decrypt(
    spec: HeJobSpec, secret: ts.Context, aggregate: EncryptedAggregate
) -> list[float]:
    """The custodian's own sum over every contribution, decrypted once.

    The first contribution's vectors are never modified (they may be the
    aggregator's); the running totals are new objects added to in place. A
    weighted sum needs no multiplication here: each contributor encrypted its
    values times its public weight (see :class:`mpc.he.HeContributor`).
    """
    totals: list[HeVector] = []
    owned: list[bool] = []
    rows = _vector_rows(spec, secret, aggregate)
    for vectors in rows:
        for index, vector in enumerate(vectors):
            if index == len(totals):
                totals.append(vector)
                owned.append(False)
            elif owned[index]:
                totals[index] += vector
            else:
                totals[index] = totals[index] + vector
                owned[index] = True
    if len(totals) != spec.chunk_count:
        raise DecryptionRefusedError("the aggregate holds no contributions")
    return raw.decrypt_chunks(totals, secret)


def _check_integrity(
    spec: HeJobSpec, job_id: str, contributors: frozenset[str], plain: list[float]
) -> list[float]:
    """Refuse a sum that a ciphertext under another key (or a wrap-around) turned to noise.

    Returns the payload slots (the check slots removed). An honest sum never
    fails: the check slots' tolerance and the ranges follow from the job's
    public bounds, whatever their size (docs/mpc.md, *Another job's key*).
    """
    if len(plain) != spec.slot_count:
        raise AggregateIntegrityError(f"job {job_id!r}: the sum has the wrong number of slots")
    if len(contributors) > spec.max_contributors:
        raise AggregateIntegrityError(
            f"job {job_id!r}: more contributors than the job's max_contributors, "
            "whose sums BFV could wrap; nothing released"
        )
    payload, checks = spec.unpack(plain)
    values = np.asarray(payload, dtype=float)
    total_weight = sum(abs(spec.weight_of(name)) for name in contributors)
    ceiling = spec.slot_ceiling(total_weight)
    expected = sum(spec.weight_of(name) for name in contributors)
    if spec.scheme is HeScheme.BFV:
        tolerance = 0.0
    else:
        assert ceiling is not None  # CKKS
        # CKKS keeps ~2^-50 of the largest magnitude in a ciphertext, in every slot
        tolerance = 1e-3 * max(1.0, abs(expected)) + ceiling * 2.0**-40
    if any(not abs(check - expected) <= tolerance for check in checks):
        raise AggregateIntegrityError(
            f"job {job_id!r}: a check slot is not the cohort total; some "
            "contribution was made under another key, nothing released"
        )
    if spec.operation.exact:
        limits = np.asarray(spec.layout.slot_limits(len(contributors)), dtype=float)
        in_range = bool(np.all(np.abs(values) <= limits))
    elif spec.scheme is HeScheme.BFV:
        in_range = bool(np.all((values >= 0) & (values <= raw.BFV_PLAIN_MODULUS // 2)))
    else:
        assert ceiling is not None  # CKKS
        in_range = bool(np.all(np.abs(values) <= ceiling * (1 + 1e-6) + 1.0))
    if not in_range:
        raise AggregateIntegrityError(
            f"job {job_id!r}: a summed slot exceeds what the job's bounds allow; some "
            "contribution was made under another key, nothing released"
        )
    return payload
