"""Homomorphic-encryption recipes: job specs, enterprise-side encryption, the aggregator.

An enterprise encrypts on its own side with the job's *public* context
(:class:`HeContributor`); the aggregator (:class:`HeAggregator`) checks each
contribution and collects it, holding only public material; the key custodian
(:mod:`mpc.custodian`) sums the collected ciphertexts itself and decrypts only
that sum, once the release guard approved the cohort.

A ciphertext made under another job's key cannot slip into a result
unnoticed, and detecting it never costs an extra ciphertext. Decrypted under
this job's key, a sum containing a foreign ciphertext is noise of magnitude
about ``q / scale`` (above 1e14 in every slot, measured: see
``docs/mpc.md``), far beyond any honest sum. So the custodian checks every
decrypted slot against the largest sum the job's bounds allow
(:meth:`HeJobSpec.slot_ceiling`), and when the last ciphertext has a spare
slot the contributor also puts a *check slot* there holding 1 (the custodian
weights it like the values): after summation it must equal the cohort size
(or the sum of weights). A payload that fills its ciphertexts exactly (4,096
CKKS values) has no check slot and relies on the range check over all its
4,096 slots.

Precision (tested against numpy in ``tests/mpc/test_he.py``): BFV results are
exact; CKKS sums and means of values with ``|x| <= 1e6`` over up to 1,000
contributors are within ``1e-6 * n`` absolute plus ``1e-9`` relative of the
float64 result, population variances within ``1e-8`` relative; weighted
sums within ``1e-6`` relative to ``sum(|w·x|)``; regression coefficients
within ``1e-6`` relative when XᵀX is well conditioned (condition number
below 1e4).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import tenseal as ts

from mpc.errors import (
    InvalidContributionError,
    NonNumericValueError,
    ReplayedContributionError,
    ValueOutOfRangeError,
    VectorLengthError,
    WrongJobKeyError,
)
from mpc.hazmat import he as raw
from mpc.hazmat.he import HeScheme

__all__ = [
    "EncryptedAggregate",
    "HeAggregator",
    "HeContribution",
    "HeContributor",
    "HeJobPublic",
    "HeJobSpec",
    "HeOperation",
    "HeResult",
    "HeVector",
    "RegressionInput",
    "finalize",
]

logger = logging.getLogger(__name__)

_BFV_HALF = raw.BFV_PLAIN_MODULUS // 2


class HeOperation(enum.Enum):
    """What the job computes across contributors."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    VARIANCE = "variance"
    HISTOGRAM = "histogram"
    WEIGHTED_SUM = "weighted_sum"
    LINEAR_REGRESSION = "linear_regression"

    @property
    def scheme(self) -> HeScheme:
        """BFV for exact integer results, CKKS for real ones."""
        if self in (HeOperation.COUNT, HeOperation.HISTOGRAM):
            return HeScheme.BFV
        return HeScheme.CKKS


@dataclass(frozen=True)
class RegressionInput:
    """One enterprise's rows for a linear regression: ``x`` is rows × features."""

    x: tuple[tuple[float, ...], ...]
    y: tuple[float, ...]


@dataclass(frozen=True)
class HeJobSpec:
    """What every party agrees on before a job starts.

    ``length`` is the vector length per contributor (features, for a
    regression); ``bins`` are histogram edges; ``weights`` (contributor →
    weight) are public; ``bound`` is the largest magnitude a CKKS value may
    have; ``max_contributors`` sizes the BFV range check against wrap-around.
    """

    job_id: str
    operation: HeOperation
    length: int = 1
    bins: tuple[float, ...] = ()
    weights: tuple[tuple[str, float], ...] = ()
    bound: float = 1e6
    max_contributors: int = 10_000

    def __post_init__(self) -> None:
        if not self.job_id or len(self.job_id) > 200:
            raise ValueError("job_id must be a non-empty name of at most 200 characters")
        if self.length < 1:
            raise ValueError("length must be at least 1")
        if self.operation is HeOperation.HISTOGRAM and (
            len(self.bins) < 2 or list(self.bins) != sorted(set(self.bins))
        ):
            raise ValueError("a histogram needs at least two strictly increasing bin edges")
        if self.operation is HeOperation.WEIGHTED_SUM and not self.weights:
            raise ValueError("a weighted sum needs public weights")
        if not (0 < self.bound <= 1e12) or self.max_contributors < 2:
            raise ValueError("bound must be in (0, 1e12] and max_contributors at least 2")
        if self.operation is HeOperation.LINEAR_REGRESSION and not self.has_check_slot:
            raise ValueError("a regression of this width leaves no room for the check slot")

    @property
    def scheme(self) -> HeScheme:
        """The scheme the operation needs."""
        return self.operation.scheme

    @property
    def payload_length(self) -> int:
        """Slots holding values (without the check slot)."""
        op = self.operation
        if op is HeOperation.VARIANCE:
            return 2 * self.length
        if op is HeOperation.HISTOGRAM:
            return len(self.bins) - 1
        if op is HeOperation.LINEAR_REGRESSION:
            d = self.length + 1  # with an intercept column
            return d * d + d
        return self.length

    @property
    def has_check_slot(self) -> bool:
        """Whether the last ciphertext has room for the check slot (it never gets its own)."""
        return self.payload_length % raw.slots(self.scheme) != 0

    @property
    def slot_count(self) -> int:
        """Slots per contribution: the payload, and the check slot where it fits."""
        return self.payload_length + int(self.has_check_slot)

    @property
    def chunk_count(self) -> int:
        """Ciphertexts per contribution."""
        return math.ceil(self.payload_length / raw.slots(self.scheme))

    def slot_ceiling(self, total_weight: float) -> float | None:
        """The largest magnitude any slot of an honest CKKS sum can have.

        ``total_weight`` is the cohort size, or the sum of the absolute
        weights of a weighted sum. None for BFV (its range is checked
        against the plaintext modulus) and for a regression, whose XᵀX grows
        with an enterprise's row count (its payload always leaves room for
        the check slot: see ``__post_init__``).
        """
        op = self.operation
        if self.scheme is HeScheme.BFV or op is HeOperation.LINEAR_REGRESSION:
            return None
        per_contributor = (
            max(self.bound, self.bound**2) if op is HeOperation.VARIANCE else self.bound
        )
        return per_contributor * total_weight

    def weight_of(self, contributor: str) -> float:
        """The public weight of ``contributor`` (1 unless it is a weighted sum).

        Raises:
            InvalidContributionError: a weighted sum without a weight for this contributor.
        """
        if self.operation is not HeOperation.WEIGHTED_SUM:
            return 1.0
        for name, weight in self.weights:
            if name == contributor:
                return weight
        raise InvalidContributionError("has no public weight in this job", contributor=contributor)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (stored by the custodian)."""
        return {
            "job_id": self.job_id,
            "operation": self.operation.value,
            "length": self.length,
            "bins": list(self.bins),
            "weights": [[n, w] for n, w in self.weights],
            "bound": self.bound,
            "max_contributors": self.max_contributors,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> HeJobSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: a malformed spec.
        """
        try:
            weights = data["weights"]
            bins = data["bins"]
            assert isinstance(weights, list) and isinstance(bins, list)
            return cls(
                job_id=str(data["job_id"]),
                operation=HeOperation(data["operation"]),
                length=int(str(data["length"])),
                bins=tuple(float(b) for b in bins),
                weights=tuple((str(n), float(w)) for n, w in weights),
                bound=float(str(data["bound"])),
                max_contributors=int(str(data["max_contributors"])),
            )
        except (KeyError, TypeError, AssertionError) as exc:
            raise ValueError(f"malformed HE job spec: {exc}") from exc


@dataclass(frozen=True)
class HeJobPublic:
    """A job's spec and public context: all an enterprise or the aggregator gets."""

    spec: HeJobSpec
    public_context: bytes = field(repr=False)

    @classmethod
    def from_context(cls, spec: HeJobSpec, context: ts.Context) -> HeJobPublic:
        """The job of a public context already in memory (saves loading it again).

        Raises:
            ValueError: ``context`` holds a secret key.
        """
        if context.is_private():
            raise ValueError("a job's public half must not hold the secret key")
        job = cls(spec, raw.public_bytes(context))
        job.__dict__["context"] = context  # seeds the cached property below
        return job

    @functools.cached_property
    def key_fingerprint(self) -> str:
        """Hex SHA-256 of the public context."""
        return raw.context_fingerprint(self.public_context)

    @functools.cached_property
    def context(self) -> ts.Context:
        """The public context, deserialized once per :class:`HeJobPublic`.

        Raises:
            ValueError: the bytes are not a TenSEAL context.
        """
        return raw.load_context(self.public_context)


@dataclass(frozen=True)
class HeContribution:
    """One enterprise's encrypted vector for one job."""

    job_id: str
    contributor: str
    key_fingerprint: str
    chunks: tuple[bytes, ...] = field(repr=False)

    @functools.cached_property
    def digest(self) -> str:
        """Hex SHA-256 over the ciphertext chunks (detects replays)."""
        h = hashlib.sha256()
        for chunk in self.chunks:
            h.update(len(chunk).to_bytes(8, "big"))
            h.update(chunk)
        return h.hexdigest()

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hex SHA-256 over each ciphertext's length and first :data:`FINGERPRINT_BYTES`.

        Names one encryption: past a few header bytes a ciphertext is its
        fresh encryption randomness, so two encryptions differ within the
        first bytes (even of the same values) and a verbatim resubmission has
        the same fingerprint. It catches every replay :attr:`digest` catches
        (a copy changed anywhere, or re-randomised by adding an encryption
        of zero with the public key, escapes both), at a fixed cost instead
        of hashing 331 kB per ciphertext. The custodian's ledger entry names
        the cohort by fingerprints (:attr:`EncryptedAggregate.cohort_digest`);
        :attr:`digest` hashes every byte for callers who want that.
        """
        h = hashlib.sha256()
        for chunk in self.chunks:
            h.update(len(chunk).to_bytes(8, "big"))
            h.update(chunk[:FINGERPRINT_BYTES])
        return h.hexdigest()


FINGERPRINT_BYTES = 4096
"""Bytes of each ciphertext a :attr:`HeContribution.fingerprint` covers."""

HeVector: TypeAlias = ts.CKKSVector | ts.BFVVector


@dataclass(frozen=True)
class EncryptedAggregate:
    """The checked contributions of one job, ready for the custodian to sum.

    ``vectors`` are the aggregator's deserialisation of each contribution's
    chunks (same order), so the custodian does not deserialise every
    ciphertext a second time; empty when the aggregate was assembled from
    the bytes alone, and then the custodian loads the bytes itself.
    """

    job_id: str
    contributions: tuple[HeContribution, ...]
    vectors: tuple[tuple[HeVector, ...], ...] = field(default=(), repr=False, compare=False)

    @property
    def contributors(self) -> frozenset[str]:
        """Who contributed."""
        return frozenset(c.contributor for c in self.contributions)

    @property
    def cohort_digest(self) -> str:
        """Hex SHA-256 over ``contributor:fingerprint`` lines, in order (what the ledger names)."""
        return hashlib.sha256(
            "\n".join(f"{c.contributor}:{c.fingerprint}" for c in self.contributions).encode()
        ).hexdigest()

    @property
    def digest(self) -> str:
        """Hex SHA-256 over the full contribution digests, in order (hashes every byte)."""
        return hashlib.sha256(
            "\n".join(f"{c.contributor}:{c.digest}" for c in self.contributions).encode()
        ).hexdigest()


@dataclass(frozen=True)
class HeResult:
    """A released result: aggregate values only, with the cohort size."""

    job_id: str
    operation: HeOperation
    values: tuple[float, ...]
    cohort: int


def _finite(value: object, contributor: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise NonNumericValueError(f"{value!r} is not a number", contributor=contributor)
    number = float(value)
    if not math.isfinite(number):
        raise NonNumericValueError(f"{number!r} is not finite", contributor=contributor)
    return number


class HeContributor:
    """The enterprise side: validates and encrypts its own values with the public context."""

    def __init__(self, job: HeJobPublic) -> None:
        self._job = job
        self._ctx = job.context

    def encrypt(
        self, contributor: str, values: Sequence[float] | RegressionInput
    ) -> HeContribution:
        """Encode ``values`` for the job's operation and encrypt them.

        Raises:
            NonNumericValueError: a value that is not a finite number.
            ValueOutOfRangeError: a value beyond the job's bound (or the BFV range).
            VectorLengthError: a vector of the wrong length.
            InvalidContributionError: input of the wrong shape for the operation.
        """
        spec = self._job.spec
        payload = self._encode(spec, contributor, values)
        spec.weight_of(contributor)
        if spec.has_check_slot:
            payload.append(1.0)
        chunks = raw.encrypt_chunks(self._ctx, spec.scheme, payload)
        return HeContribution(spec.job_id, contributor, self._job.key_fingerprint, tuple(chunks))

    def _encode(
        self, spec: HeJobSpec, who: str, values: Sequence[float] | RegressionInput
    ) -> list[float]:
        op = spec.operation
        if op is HeOperation.LINEAR_REGRESSION:
            if not isinstance(values, RegressionInput):
                raise InvalidContributionError(
                    "a regression needs RegressionInput", contributor=who
                )
            return self._regression(spec, who, values)
        if isinstance(values, RegressionInput):
            raise InvalidContributionError("expected a vector of numbers", contributor=who)
        numbers = [_finite(v, who) for v in values]
        if op is HeOperation.HISTOGRAM:
            counts, _ = np.histogram(np.asarray(numbers, dtype=float), bins=np.asarray(spec.bins))
            self._check_bfv(spec, who, counts.tolist())
            return [float(c) for c in counts]
        if len(numbers) != spec.length:
            raise VectorLengthError(
                f"has {len(numbers)} values, the job expects {spec.length}", contributor=who
            )
        if op is HeOperation.COUNT:
            if any(not n.is_integer() or n < 0 for n in numbers):
                raise ValueOutOfRangeError("counts must be non-negative integers", contributor=who)
            self._check_bfv(spec, who, numbers)
            return numbers
        if any(abs(n) > spec.bound for n in numbers):
            raise ValueOutOfRangeError(f"a value exceeds the bound {spec.bound:g}", contributor=who)
        if op is HeOperation.VARIANCE:
            return numbers + [n * n for n in numbers]
        return numbers

    @staticmethod
    def _check_bfv(spec: HeJobSpec, who: str, numbers: Sequence[float]) -> None:
        limit = _BFV_HALF // spec.max_contributors
        if any(n > limit for n in numbers):
            raise ValueOutOfRangeError(
                f"a count exceeds {limit}, which could wrap the BFV sum", contributor=who
            )

    @staticmethod
    def _regression(spec: HeJobSpec, who: str, data: RegressionInput) -> list[float]:
        if len(data.x) != len(data.y) or not data.y:
            raise VectorLengthError(
                "x and y need the same, non-zero number of rows", contributor=who
            )
        if any(len(row) != spec.length for row in data.x):
            raise VectorLengthError(f"each row needs {spec.length} features", contributor=who)
        x = np.array([[_finite(v, who) for v in row] for row in data.x], dtype=float)
        y = np.array([_finite(v, who) for v in data.y], dtype=float)
        if np.abs(x).max() > spec.bound or np.abs(y).max() > spec.bound:
            raise ValueOutOfRangeError(f"a value exceeds the bound {spec.bound:g}", contributor=who)
        design = np.hstack([np.ones((x.shape[0], 1)), x])
        xtx = design.T @ design
        xty = design.T @ y
        return [float(v) for v in (*xtx.ravel(), *xty)]


class HeAggregator:
    """Collects contributions for one job, checking each; holds only public material."""

    def __init__(self, job: HeJobPublic) -> None:
        self._job = job
        self._ctx = job.context
        self._by_contributor: dict[str, HeContribution] = {}
        self._vectors: dict[str, tuple[HeVector, ...]] = {}
        self._seen: set[str] = set()
        spec = job.spec
        width = raw.slots(spec.scheme)
        self._sizes = tuple(
            min(width, spec.slot_count - index * width) for index in range(spec.chunk_count)
        )

    def add(self, contribution: HeContribution) -> None:
        """Check one contribution and keep it.

        Raises:
            WrongJobKeyError: made for another job or under another public key.
            ReplayedContributionError: the contributor or the same ciphertext came before.
            VectorLengthError: the wrong number or size of ciphertexts.
            InvalidContributionError: bytes that are not ciphertexts of this scheme.
        """
        spec = self._job.spec
        who = contribution.contributor
        if contribution.job_id != spec.job_id:
            raise WrongJobKeyError(
                f"was made for job {contribution.job_id!r}, not {spec.job_id!r}", contributor=who
            )
        if contribution.key_fingerprint != self._job.key_fingerprint:
            raise WrongJobKeyError("was encrypted under another public key", contributor=who)
        if who in self._by_contributor:
            raise ReplayedContributionError("already contributed to this job", contributor=who)
        fingerprint = contribution.fingerprint
        if fingerprint in self._seen:
            raise ReplayedContributionError(
                "sent a ciphertext another contributor already sent", contributor=who
            )
        if len(contribution.chunks) != len(self._sizes):
            raise VectorLengthError(
                f"sent {len(contribution.chunks)} ciphertexts, the job expects {len(self._sizes)}",
                contributor=who,
            )
        spec.weight_of(who)
        vectors: list[HeVector] = []
        for index, (chunk, expected) in enumerate(
            zip(contribution.chunks, self._sizes, strict=True)
        ):
            try:
                vector = raw.load_vector(self._ctx, spec.scheme, chunk)
            except ValueError as exc:
                raise InvalidContributionError(
                    f"ciphertext {index} is not a {spec.scheme.value} ciphertext", contributor=who
                ) from exc
            if vector.size() != expected:
                raise VectorLengthError(
                    f"ciphertext {index} holds {vector.size()} values, expected {expected}",
                    contributor=who,
                )
            vectors.append(vector)
        self._by_contributor[who] = contribution
        self._vectors[who] = tuple(vectors)
        self._seen.add(fingerprint)
        logger.debug("job %s: accepted a contribution from %s", spec.job_id, who)

    @property
    def contributors(self) -> frozenset[str]:
        """Who has contributed so far."""
        return frozenset(self._by_contributor)

    def aggregate(self) -> EncryptedAggregate:
        """Everything collected so far, in a stable order."""
        names = sorted(self._by_contributor)
        return EncryptedAggregate(
            self._job.spec.job_id,
            tuple(self._by_contributor[name] for name in names),
            tuple(self._vectors[name] for name in names),
        )


def finalize(spec: HeJobSpec, plain: Sequence[float], cohort: int) -> HeResult:
    """Turn a decrypted sum (without any check slot) into the released values.

    Raises:
        ValueError: a regression whose summed XᵀX is singular.
    """
    op = spec.operation
    values: list[float]
    if op in (HeOperation.COUNT, HeOperation.HISTOGRAM):
        values = [float(round(v)) for v in plain]
    elif op in (HeOperation.SUM, HeOperation.WEIGHTED_SUM):
        values = list(plain)
    elif op is HeOperation.MEAN:
        values = [v / cohort for v in plain]
    elif op is HeOperation.VARIANCE:
        n = spec.length
        means = [s / cohort for s in plain[:n]]
        values = [
            *means,
            *(max(q / cohort - m * m, 0.0) for q, m in zip(plain[n:], means, strict=True)),
        ]
    else:
        d = spec.length + 1
        xtx = np.array(plain[: d * d]).reshape(d, d)
        xty = np.array(plain[d * d : d * d + d])
        try:
            values = [float(v) for v in np.linalg.solve(xtx, xty)]
        except np.linalg.LinAlgError as exc:
            raise ValueError("the summed XᵀX is singular; no unique regression") from exc
    return HeResult(spec.job_id, op, tuple(values), cohort)
