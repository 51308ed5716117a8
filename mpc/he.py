"""Homomorphic-encryption recipes: job specs, enterprise-side encryption, the aggregator.

An enterprise encrypts on its own side with the job's *public* context
(:class:`HeContributor`); the aggregator (:class:`HeAggregator`) checks each
contribution and collects it, holding only public material; the key custodian
(:mod:`mpc.custodian`) sums the collected ciphertexts itself and decrypts only
that sum, once the release guard approved the cohort.

Encodings and the slot layout are in :mod:`mpc._he_spec` (what the parties
agree on) and :mod:`mpc._he_encode` (the enterprise side); the released
values are computed in :mod:`mpc._he_finalize`.

A ciphertext made under another job's key cannot slip into a result
unnoticed. Decrypted under this job's key, a sum containing a foreign
ciphertext is noise: about ``q / scale`` in every CKKS slot (above 1e14,
measured: see ``docs/mpc.md``), uniform over the plaintext space for BFV. So
the custodian checks every decrypted slot against the largest honest sum the
job's public bounds allow, and the *check slots*: a CKKS or count job puts
one (holding 1, or the contributor's weight) where its last ciphertext has a
spare slot, an exact job (variance, regression) one in every ciphertext;
summed, each must equal the cohort size (or the sum of weights), exactly for
BFV.

Precision (proved against numpy and exact fractions in
``tests/mpc/test_he_accuracy.py``, for values within the job's bound up to
1e12 and 1 to 1,000 contributors): ``count`` and ``histogram`` are exact;
``sum``, ``mean`` and ``weighted_sum`` are within ``2^-45 · bound · Σ|w|``
(w = 1 for sum and mean; divided by n for a mean) of the exact result;
``variance`` (means and population variances) and ``linear_regression``
(coefficients) are the exact results for the inputs quantised at
``2^-99`` of the bound's power of two, rounded once to float64 — a variance
within ``1e-9`` relative whenever the standard deviation is at least
``1e-20 · bound``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import tenseal as ts

from mpc._he_encode import encode
from mpc._he_finalize import HeResult, finalize
from mpc._he_spec import HeJobSpec, HeOperation, RegressionInput
from mpc.errors import (
    InvalidContributionError,
    ReplayedContributionError,
    VectorLengthError,
    WrongJobKeyError,
)
from mpc.hazmat import he as raw

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


class HeContributor:
    """The enterprise side: validates and encrypts its own values with the public context."""

    def __init__(self, job: HeJobPublic) -> None:
        self._job = job
        self._ctx = job.context

    def encrypt(
        self, contributor: str, values: Sequence[object] | RegressionInput
    ) -> HeContribution:
        """Encode ``values`` for the job's operation and encrypt them.

        Raises:
            NonNumericValueError: a value that is not a finite number.
            ValueOutOfRangeError: a value beyond the job's bound (or the BFV range).
            VectorLengthError: a vector of the wrong length.
            InvalidContributionError: input of the wrong shape for the operation.
        """
        spec = self._job.spec
        payload = encode(spec, contributor, values)
        weight = spec.weight_of(contributor)
        chunks = [
            chunk
            for values_of_chunk in spec.pack(payload, check=weight)
            for chunk in raw.encrypt_chunks(self._ctx, spec.scheme, values_of_chunk)
        ]
        return HeContribution(spec.job_id, contributor, self._job.key_fingerprint, tuple(chunks))


class HeAggregator:
    """Collects contributions for one job, checking each; holds only public material."""

    def __init__(self, job: HeJobPublic) -> None:
        self._job = job
        self._ctx = job.context
        self._by_contributor: dict[str, HeContribution] = {}
        self._vectors: dict[str, tuple[HeVector, ...]] = {}
        self._seen: set[str] = set()
        self._sizes = job.spec.chunk_sizes

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
        if len(self._by_contributor) >= spec.max_contributors:
            raise InvalidContributionError(
                f"the job already has its {spec.max_contributors} contributors", contributor=who
            )
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
