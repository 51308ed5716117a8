"""The key custodian: one fresh HE key per job, decrypting only approved final aggregates.

Life of a job key:

1. :meth:`KeyCustodian.create_job` generates a secret context, stores it
   encrypted under the master key (aad binds the blob to the job id) and
   hands out only the public context. Recorded as ``mpc.key.generate``.
2. :meth:`KeyCustodian.release` takes the aggregator's checked contributions,
   sums them *itself* (so what it decrypts is always a sum over the approved
   cohort, never one enterprise's ciphertext), decrypts once, checks the
   check slot, and returns only the finished result. Recorded as
   ``mpc.key.decrypt``. The release guard's stored approval for the job must
   name exactly the aggregate's contributors.
3. :meth:`KeyCustodian.end_job` erases the secret. Recorded as
   ``mpc.key.destroy``; later decryptions fail with :class:`KeyDestroyedError`.

Each event is written in the same database transaction as the custodian's
own row change, so a key operation and its ledger entry commit together.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from core.clock import format_rfc3339, utcnow
from core.db import Database
from core.errors import KeyDecryptionError
from core.events import Event, EventRecorder
from core.keys import MasterKey
from mpc._tables import HeKeyRow
from mpc.errors import (
    AggregateIntegrityError,
    DecryptionRefusedError,
    KeyDestroyedError,
    UnknownJobError,
)
from mpc.guard import HARD_MIN_COHORT, ReleaseGuard
from mpc.hazmat import he as raw
from mpc.hazmat.he import HeScheme
from mpc.he import EncryptedAggregate, HeJobPublic, HeJobSpec, HeResult, finalize

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
        public = raw.public_bytes(ctx)
        blob = self._master.encrypt(raw.secret_bytes(ctx), aad=self._aad(spec.job_id))
        job = HeJobPublic(spec, public)
        with self._db.write() as session:
            if session.get(HeKeyRow, spec.job_id) is not None:
                raise DecryptionRefusedError(f"job {spec.job_id!r} already has a key")
            session.add(
                HeKeyRow(
                    job_id=spec.job_id,
                    scheme=spec.scheme.value,
                    spec_json=json.dumps(spec.to_dict()),
                    key_fingerprint=job.key_fingerprint,
                    public_context=public,
                    encrypted_secret=blob,
                    state=_ACTIVE,
                    created_at=format_rfc3339(utcnow()),
                )
            )
            session.flush()
            self._recorder.record(
                Event(
                    "mpc.key.generate",
                    self._config.actor,
                    {
                        "job_id": spec.job_id,
                        "scheme": spec.scheme.value,
                        "operation": spec.operation.value,
                        "key_fingerprint": job.key_fingerprint,
                    },
                ),
                session=session,
            )
        logger.info("job %s: generated a %s key", spec.job_id, spec.scheme.value)
        return job

    def public(self, job_id: str) -> HeJobPublic:
        """The job's spec and public context.

        Raises:
            UnknownJobError: no such job.
        """
        with self._db.read() as session:
            row = session.get(HeKeyRow, job_id)
            if row is None:
                raise UnknownJobError(f"no key for job {job_id!r}")
            return HeJobPublic(HeJobSpec.from_dict(json.loads(row.spec_json)), row.public_context)

    def release(self, aggregate: EncryptedAggregate) -> HeResult:
        """Sum the aggregate's contributions, decrypt the sum once, and finish the result.

        Raises:
            UnknownJobError: no such job.
            KeyDestroyedError: the job ended.
            DecryptionRefusedError: no approval for this job, an approval for another
                cohort, fewer than two contributions, or the job was already released.
            AggregateIntegrityError: the sum's check slot is wrong (a contribution
                was made under another key); nothing is released.
            ledger.LedgerError: the decryption could not be recorded; nothing is released.
        """
        job_id = aggregate.job_id
        approval = self._guard.approval(job_id)
        with self._db.write() as session:
            row = session.get(HeKeyRow, job_id)
            if row is None:
                raise UnknownJobError(f"no key for job {job_id!r}")
            if row.state == _DESTROYED or row.encrypted_secret is None:
                raise KeyDestroyedError(f"the key of job {job_id!r} was destroyed")
            if row.state == _RELEASED:
                raise DecryptionRefusedError(f"job {job_id!r} was already released once")
            contributors = aggregate.contributors
            if len(aggregate.contributions) < HARD_MIN_COHORT or len(contributors) != len(
                aggregate.contributions
            ):
                raise DecryptionRefusedError(
                    "only a sum over at least two distinct contributors is ever decrypted"
                )
            if approval is None:
                raise DecryptionRefusedError(f"the release of job {job_id!r} was not approved")
            if approval.contributors != contributors:
                raise DecryptionRefusedError(
                    "the aggregate's contributors are not the approved cohort"
                )
            if len(contributors) < approval.min_cohort:
                raise DecryptionRefusedError("the aggregate is below the approved minimum cohort")
            if any(c.job_id != job_id for c in aggregate.contributions):
                raise DecryptionRefusedError("the aggregate mixes contributions of other jobs")
            spec = HeJobSpec.from_dict(json.loads(row.spec_json))
            try:
                secret = self._master.decrypt(row.encrypted_secret, aad=self._aad(job_id))
            except KeyDecryptionError as exc:
                raise DecryptionRefusedError("the job key does not open") from exc
            plain = self._sum_and_decrypt(spec, secret, aggregate)
            del secret
            expected = sum(spec.weight_of(name) for name in contributors)
            check = plain[spec.payload_length]
            tolerance = 0.0 if spec.scheme is HeScheme.BFV else 1e-3 * max(1.0, abs(expected))
            if abs(check - expected) > tolerance:
                raise AggregateIntegrityError(
                    f"job {job_id!r}: the check slot is not the cohort total; some "
                    "contribution was made under another key, nothing released"
                )
            if spec.scheme is HeScheme.BFV:
                half = raw.BFV_PLAIN_MODULUS // 2
                if any(v < 0 or v > half for v in plain):
                    raise AggregateIntegrityError("a BFV sum wrapped around the plaintext modulus")
            result = finalize(spec, plain[: spec.payload_length], len(contributors))
            row.state = _RELEASED
            self._recorder.record(
                Event(
                    "mpc.key.decrypt",
                    self._config.actor,
                    {
                        "job_id": job_id,
                        "key_fingerprint": row.key_fingerprint,
                        "aggregate_sha256": aggregate.digest,
                        "contributors": len(contributors),
                    },
                ),
                session=session,
            )
        logger.info("job %s: decrypted the approved aggregate", job_id)
        return result

    @staticmethod
    def _sum_and_decrypt(
        spec: HeJobSpec, secret: bytes, aggregate: EncryptedAggregate
    ) -> list[float]:
        ctx = raw.load_context(secret)
        totals: list[object] = []
        for contribution in aggregate.contributions:
            weight = spec.weight_of(contribution.contributor)
            for index, chunk in enumerate(contribution.chunks):
                vector = raw.load_vector(ctx, spec.scheme, chunk)
                if spec.operation.value == "weighted_sum":
                    vector = vector * weight
                if index == len(totals):
                    totals.append(vector)
                else:
                    totals[index] = totals[index] + vector
        return raw.decrypt_chunks(totals)

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
            row.encrypted_secret = None
            row.state = _DESTROYED
            row.destroyed_at = format_rfc3339(utcnow())
            self._recorder.record(
                Event(
                    "mpc.key.destroy",
                    self._config.actor,
                    {"job_id": job_id, "key_fingerprint": row.key_fingerprint},
                ),
                session=session,
            )
        logger.info("job %s: key destroyed", job_id)
