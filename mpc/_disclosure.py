"""Exact linear disclosure tracking: the released queries in reduced row echelon form.

Every linear release (count, sum, mean, weighted sum, histogram bin, the sums
of a variance or the sufficient statistics of a regression) is one vector of
per-contributor weights ``w``: the requester learns ``Σ w_i · t(x_i)`` for
one or more per-contributor transforms ``t``. The requester's group can solve
for contributor ``i``'s value exactly iff the unit vector ``e_i`` lies in the
span of everything released to it, and for the difference of ``i`` and ``j``
iff ``e_i − e_j`` does (ADR 0006 shows why tracking the weight vectors alone,
with the transforms merged, can only err towards refusing).

:class:`LinearTracker` keeps that span as a reduced row echelon form (RREF)
over the prime field ``F_p``, ``p`` a random 31-bit prime drawn when the
tracker is created and kept with it. Weights are exact rationals (a float's
binary value), mapped into the field. A rank over ``F_p`` can only be lower
than over the rationals when ``p`` divides a minor of the released matrix;
with ``p`` unknown to the requester and drawn from ~5·10⁷ primes, crafting
weights for that succeeds with probability about 10⁻⁶ per attempt (ADR 0006).

In an RREF every row has 1 at its pivot column and 0 at every other pivot
column, so a vector ``u`` of the row space equals ``Σ u[pivot_k] · row_k``:

* ``e_i`` is in the span iff some row is exactly ``e_i`` (one non-zero);
* ``e_i − e_j`` is in the span iff some row is ``e_i − e_j`` (pivot ``i``,
  ``−1`` at the non-pivot ``j``), or two rows have identical non-pivot parts.

Adding a row reduces it against the form (one matrix-vector product),
eliminates its pivot column from the other rows (one outer product) and
checks the result: O(rank × contributors) per release, independent of how
many releases came before. Nothing here does I/O.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

__all__ = ["Disclosure", "LinearTracker", "random_prime"]

logger = logging.getLogger(__name__)

Matrix = npt.NDArray[np.int64]

_PRIME_LOW = 1 << 30
_PRIME_HIGH = 1 << 31
_SPLIT = 16
_LOW_MASK = (1 << _SPLIT) - 1


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3,215,031,751 (bases 2, 3, 5, 7)."""
    if n < 2:
        return False
    for small in (2, 3, 5, 7):
        if n % small == 0:
            return n == small
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for base in (2, 3, 5, 7):
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def random_prime() -> int:
    """A prime drawn uniformly from the primes in [2^30, 2^31) with the OS's randomness."""
    while True:
        candidate = _PRIME_LOW + secrets.randbelow(_PRIME_HIGH - _PRIME_LOW) | 1
        if _is_prime(candidate):
            return candidate


@dataclass(frozen=True)
class Disclosure:
    """What a set of releases pins down: one contributor's value, or a difference of two."""

    contributors: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.contributors) not in (1, 2):
            raise ValueError("a disclosure names one contributor or a pair")

    def describe(self) -> str:
        """A sentence for the operator's log and the refusal (names only count, not who)."""
        if len(self.contributors) == 1:
            return "one contributor's value"
        return "the difference of two contributors' values"


def _matvec(coefficients: Matrix, rows: Matrix, p: int) -> Matrix:
    """``coefficients @ rows mod p`` without int64 overflow (split into 16-bit halves)."""
    if coefficients.size == 0:
        return np.zeros(rows.shape[1], dtype=np.int64)
    low = (coefficients & _LOW_MASK) @ rows % p
    high = (coefficients >> _SPLIT) @ rows % p
    result: Matrix = (high * (1 << _SPLIT) + low) % p
    return result


class LinearTracker:
    """The span of the weight vectors released to one adversary about one variable set."""

    def __init__(
        self, prime: int, columns: Sequence[str], rows: Matrix, pivots: Sequence[int]
    ) -> None:
        if not _is_prime(prime) or prime >= _PRIME_HIGH:
            raise ValueError("the tracker's modulus must be a prime below 2^31")
        if rows.shape != (len(pivots), len(columns)):
            raise ValueError("one row per pivot, one column per contributor")
        self.prime = prime
        self.columns: tuple[str, ...] = tuple(columns)
        self._index = {name: i for i, name in enumerate(self.columns)}
        self.rows: Matrix = rows
        self.pivots: tuple[int, ...] = tuple(pivots)

    @classmethod
    def empty(cls, prime: int | None = None) -> LinearTracker:
        """A tracker that has seen nothing (a fresh random prime unless one is given)."""
        return cls(random_prime() if prime is None else prime, (), np.zeros((0, 0), np.int64), ())

    @property
    def rank(self) -> int:
        """How many independent linear facts were released."""
        return len(self.pivots)

    def _element(self, weight: Fraction) -> int:
        p = self.prime
        if weight.denominator % p == 0:
            raise ValueError("a weight's denominator is a multiple of the tracker's modulus")
        return weight.numerator % p * pow(weight.denominator, -1, p) % p

    def with_row(self, weights: Mapping[str, Fraction]) -> LinearTracker:
        """The tracker after also releasing ``Σ weights[c] · x_c`` (``self`` is unchanged).

        Raises:
            ValueError: no weights, or a weight that has no image in the field.
        """
        if not weights:
            raise ValueError("a release is computed over at least one contributor")
        columns = list(self.columns)
        columns.extend(sorted(name for name in weights if name not in self._index))
        n, r, p = len(columns), self.rank, self.prime
        rows = self.rows
        if n > len(self.columns):
            rows = np.zeros((r, n), dtype=np.int64)
            rows[:, : len(self.columns)] = self.rows
        index = {name: i for i, name in enumerate(columns)}
        vector = np.zeros(n, dtype=np.int64)
        for name, weight in weights.items():
            vector[index[name]] = self._element(weight)
        pivots = list(self.pivots)
        if pivots:
            vector = (vector - _matvec(vector[pivots], rows, p)) % p
        nonzero = np.flatnonzero(vector)
        if nonzero.size == 0:
            return LinearTracker(p, columns, rows, pivots)
        pivot = int(nonzero[0])
        vector = vector * pow(int(vector[pivot]), -1, p) % p
        reduced = np.empty((r + 1, n), dtype=np.int64)
        if r:
            # rows - column ⊗ vector, reduced once: every product is below 2^62
            body = reduced[:r]
            np.multiply.outer(rows[:, pivot], vector, out=body)
            np.subtract(rows, body, out=body)
            np.remainder(body, p, out=body)
        reduced[r] = vector
        pivots.append(pivot)
        return LinearTracker(p, columns, reduced, pivots)

    def disclosure(self) -> Disclosure | None:
        """A contributor value or pairwise difference the span pins down, if any."""
        if not self.pivots:
            return None
        rows = self.rows
        nonzero = np.count_nonzero(rows, axis=1)
        single = np.flatnonzero(nonzero == 1)
        if single.size:
            return Disclosure((self.columns[self.pivots[int(single[0])]],))
        p = self.prime
        for k in np.flatnonzero(nonzero == 2):
            row = rows[int(k)]
            others = [int(j) for j in np.flatnonzero(row) if int(j) != self.pivots[int(k)]]
            if len(others) == 1 and int(row[others[0]]) == p - 1:
                pair = (self.columns[self.pivots[int(k)]], self.columns[others[0]])
                return Disclosure(pair)
        return self._identical_free_parts()

    def smallest_support(self) -> int | None:
        """The fewest contributors any row of the form combines (None when nothing is known).

        A row over ``k`` contributors is a released aggregate over ``k``: the
        guard refuses one below the minimum cohort. (A sparser combination
        may exist that no row shows; single values and differences are
        checked exactly by :meth:`disclosure`.)
        """
        if not self.pivots:
            return None
        return int(np.count_nonzero(self.rows, axis=1).min())

    def _identical_free_parts(self) -> Disclosure | None:
        """Two rows equal outside the pivot columns: their difference is ``e_i − e_j``.

        Rows are hashed by a random linear form; a row is 1 at its own pivot
        and 0 at the others, so its free part's hash is its hash minus the
        form's value at its pivot. Equal hashes are then compared exactly.
        """
        if self.rank < 2:
            return None
        p = self.prime
        pivots = np.asarray(self.pivots, dtype=np.int64)
        probe = np.random.default_rng(secrets.randbits(64)).integers(
            0, p, len(self.columns), dtype=np.int64
        )
        hashes = (_matvec(probe, self.rows.T, p) - probe[pivots]) % p
        _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
        for group in np.flatnonzero(counts > 1):
            members = [int(k) for k in np.flatnonzero(inverse == group)]
            for a, first in enumerate(members):
                for second in members[a + 1 :]:
                    one, two = self.rows[first].copy(), self.rows[second].copy()
                    one[pivots] = 0
                    two[pivots] = 0
                    if np.array_equal(one, two):
                        pair = (self.columns[self.pivots[first]], self.columns[self.pivots[second]])
                        return Disclosure(pair)
        return None

    def to_bytes(self) -> bytes:
        """The form's rows as little-endian uint32 (every entry is below 2^31)."""
        return self.rows.astype("<u4").tobytes()

    @classmethod
    def from_parts(
        cls, prime: int, columns: Sequence[str], pivots: Sequence[int], blob: bytes
    ) -> LinearTracker:
        """Inverse of :meth:`to_bytes` with the stored prime, columns and pivots.

        Raises:
            ValueError: the parts do not fit together, or an entry is not below the prime.
        """
        expected = len(pivots) * len(columns) * 4
        if len(blob) != expected:
            raise ValueError(f"a stored form of {len(blob)} bytes, expected {expected}")
        rows = np.frombuffer(blob, dtype="<u4").astype(np.int64).reshape(len(pivots), len(columns))
        if rows.size and int(rows.max()) >= prime:
            raise ValueError("a stored entry is not an element of the tracker's field")
        return cls(prime, columns, rows, pivots)
