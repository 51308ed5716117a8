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

Only the non-pivot ("free") part of each row is stored: the pivot block is
the identity. Adding a row reduces it against the form (one matrix-vector
product), eliminates its pivot column from the other rows (one outer
product) and checks the result: O(rank × (contributors − rank)) per release,
independent of how many releases came before. Nothing here does I/O.
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
    """The span of the weight vectors released to one adversary about one variable set.

    Kept in compact reduced form: with the columns split into pivot columns
    ``pivots`` (one per row) and the remaining ``free`` columns (ascending),
    row ``k`` is ``e_{pivots[k]} + Σ_j free_part[k, j] · e_{free[j]}``. The
    identity block is implicit, so storage and work are rank × (contributors −
    rank): largest at half rank, and small again as the form fills up.
    """

    def __init__(
        self,
        prime: int,
        columns: Sequence[str],
        pivots: Sequence[int],
        free_part: Matrix,
    ) -> None:
        if not _is_prime(prime) or prime >= _PRIME_HIGH:
            raise ValueError("the tracker's modulus must be a prime below 2^31")
        pivot_set = set(pivots)
        if len(pivot_set) != len(pivots) or not pivot_set <= set(range(len(columns))):
            raise ValueError("pivots are distinct column indices")
        self.prime = prime
        self.columns: tuple[str, ...] = tuple(columns)
        self._index = {name: i for i, name in enumerate(self.columns)}
        self.pivots: tuple[int, ...] = tuple(pivots)
        self.free: tuple[int, ...] = tuple(i for i in range(len(columns)) if i not in pivot_set)
        if free_part.shape != (len(self.pivots), len(self.free)):
            raise ValueError("the free part has one row per pivot, one column per free column")
        self.free_part: Matrix = free_part

    @classmethod
    def empty(cls, prime: int | None = None) -> LinearTracker:
        """A tracker that has seen nothing (a fresh random prime unless one is given)."""
        return cls(random_prime() if prime is None else prime, (), (), np.zeros((0, 0), np.int64))

    @property
    def rank(self) -> int:
        """How many independent linear facts were released."""
        return len(self.pivots)

    def dense(self) -> Matrix:
        """The full reduced row echelon form, rank × contributors (for tests and audits)."""
        rows = np.zeros((self.rank, len(self.columns)), dtype=np.int64)
        rows[np.arange(self.rank), list(self.pivots)] = 1
        rows[:, list(self.free)] = self.free_part
        return rows

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
        added = len(columns) - len(self.columns)
        free_part = self.free_part
        if added:  # new contributors are free columns, zero in every row so far
            free_part = np.hstack([free_part, np.zeros((self.rank, added), dtype=np.int64)])
        free = [*self.free, *range(len(self.columns), len(columns))]
        p = self.prime
        vector = np.zeros(len(columns), dtype=np.int64)
        index = {name: i for i, name in enumerate(columns)} if added else self._index
        for name, weight in weights.items():
            vector[index[name]] = self._element(weight)
        # reduce: subtract every row by the vector's entry at its pivot (pivot parts vanish)
        reduced = vector[free]
        if self.pivots:
            reduced = (reduced - _matvec(vector[list(self.pivots)], free_part, p)) % p
        nonzero = np.flatnonzero(reduced)
        if nonzero.size == 0:
            return LinearTracker(p, columns, self.pivots, free_part)
        q = int(nonzero[0])
        reduced = reduced * pow(int(reduced[q]), -1, p) % p
        keep = np.ones(len(free), dtype=bool)
        keep[q] = False
        r = self.rank
        out = np.empty((r + 1, len(free) - 1), dtype=np.int64)
        if r:
            # every row loses its entry in the new pivot column: row -= row[q] · new row
            body = out[:r]
            np.multiply.outer(free_part[:, q], reduced[keep], out=body)
            np.subtract(free_part[:, keep], body, out=body)
            np.remainder(body, p, out=body)
        out[r] = reduced[keep]
        return LinearTracker(p, columns, [*self.pivots, free[q]], out)

    def disclosure(self) -> Disclosure | None:
        """A contributor value or pairwise difference the span pins down, if any."""
        if not self.pivots:
            return None
        part = self.free_part
        nonzero = np.count_nonzero(part, axis=1)
        single = np.flatnonzero(nonzero == 0)
        if single.size:
            return Disclosure((self.columns[self.pivots[int(single[0])]],))
        minus_one = self.prime - 1
        for k in np.flatnonzero(nonzero == 1):
            j = int(np.flatnonzero(part[int(k)])[0])
            if int(part[int(k), j]) == minus_one:
                pivot = self.columns[self.pivots[int(k)]]
                return Disclosure((pivot, self.columns[self.free[j]]))
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
        return 1 + int(np.count_nonzero(self.free_part, axis=1).min())

    def _identical_free_parts(self) -> Disclosure | None:
        """Two rows equal outside the pivot columns: their difference is ``e_i − e_j``.

        Rows are hashed by a random linear form of their free parts; equal
        hashes are then compared exactly.
        """
        if self.rank < 2 or not self.free:
            return None
        p = self.prime
        probe = np.random.default_rng(secrets.randbits(64)).integers(
            0, p, len(self.free), dtype=np.int64
        )
        hashes = _matvec(probe, self.free_part.T, p)
        _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
        for group in np.flatnonzero(counts > 1):
            members = [int(k) for k in np.flatnonzero(inverse == group)]
            for a, first in enumerate(members):
                for second in members[a + 1 :]:
                    if np.array_equal(self.free_part[first], self.free_part[second]):
                        pair = (self.columns[self.pivots[first]], self.columns[self.pivots[second]])
                        return Disclosure(pair)
        return None

    def to_bytes(self) -> bytes:
        """The free part as little-endian uint32 (every entry is below 2^31)."""
        return self.free_part.astype("<u4").tobytes()

    @classmethod
    def from_parts(
        cls, prime: int, columns: Sequence[str], pivots: Sequence[int], blob: bytes
    ) -> LinearTracker:
        """Inverse of :meth:`to_bytes` with the stored prime, columns and pivots.

        Raises:
            ValueError: the parts do not fit together, or an entry is not below the prime.
        """
        free = len(columns) - len(pivots)
        expected = len(pivots) * free * 4
        if free < 0 or len(blob) != expected:
            raise ValueError(f"a stored form of {len(blob)} bytes, expected {expected}")
        part = np.frombuffer(blob, dtype="<u4").astype(np.int64).reshape(len(pivots), free)
        if part.size and int(part.max()) >= prime:
            raise ValueError("a stored entry is not an element of the tracker's field")
        return cls(prime, columns, pivots, part)
