"""What every party of an HE job agrees on: the operation, its bounds, and the slot layout.

Three encodings, chosen by the operation (docs/adr/0007-he-accuracy.md):

* **BFV counts** (``count``, ``histogram``): non-negative integers, exact.
* **CKKS, scaled** (``sum``, ``mean``, ``weighted_sum``): each value is
  multiplied by ``2^ckks_shift`` (exact: a power of two) so that the bound
  maps to at most ``2^CKKS_TOP_BITS``; CKKS keeps about 2^-50 of the largest
  magnitude it encodes, so the error of a sum is a tiny fraction of
  ``n·bound`` whatever the bound's size.
* **Exact integers under BFV** (``variance``, ``linear_regression``): values
  are quantised at a quantum fixed by the bound and split into limbs
  (:mod:`mpc._exact`); the custodian rebuilds the exact integer sums.
  Every ciphertext of such a job carries its own check slot.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from mpc._exact import VALUE_BITS, LimbLayout, limb_bits_for, quantum_exponent
from mpc.errors import InvalidContributionError
from mpc.hazmat import he as raw
from mpc.hazmat.he import HeScheme

__all__ = ["CKKS_TOP_BITS", "HeJobSpec", "HeOperation", "RegressionInput"]

logger = logging.getLogger(__name__)

CKKS_TOP_BITS = 30
"""CKKS values are scaled so the bound becomes at most ``2^30``: below that CKKS's
absolute noise (~1e-9) dominates, above it float64 encoding error (~2^-52 relative)."""

MAX_BOUND = 1e12
MAX_REGRESSION_FEATURES = 32


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
    def exact(self) -> bool:
        """Whether the job sums exact integers (quantised values split into limbs)."""
        return self in (HeOperation.VARIANCE, HeOperation.LINEAR_REGRESSION)

    @property
    def scheme(self) -> HeScheme:
        """BFV for integer results (counts, exact sums), CKKS for the linear real ones."""
        if self in (HeOperation.COUNT, HeOperation.HISTOGRAM) or self.exact:
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
    weight) are public; ``bound`` is the largest magnitude a value may have
    (it also fixes the quantum of exact jobs and the scaling of CKKS ones);
    ``max_contributors`` sizes BFV slots against wrap-around; ``max_rows``
    bounds one enterprise's rows in a regression.
    """

    job_id: str
    operation: HeOperation
    length: int = 1
    bins: tuple[float, ...] = ()
    weights: tuple[tuple[str, float], ...] = ()
    bound: float = 1e6
    max_contributors: int = 10_000
    max_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if not self.job_id or len(self.job_id) > 200:
            raise ValueError("job_id must be a non-empty name of at most 200 characters")
        if self.length < 1:
            raise ValueError("length must be at least 1")
        if self.operation is HeOperation.HISTOGRAM and (
            len(self.bins) < 2
            or list(self.bins) != sorted(set(self.bins))
            or not all(math.isfinite(b) for b in self.bins)
        ):
            raise ValueError("a histogram needs at least two strictly increasing bin edges")
        if self.operation is HeOperation.WEIGHTED_SUM and (
            not self.weights or not all(math.isfinite(w) for _, w in self.weights)
        ):
            raise ValueError("a weighted sum needs finite public weights")
        if len({name for name, _ in self.weights}) != len(self.weights):
            raise ValueError("each contributor has at most one weight")
        if not (0 < self.bound <= MAX_BOUND) or not (2 <= self.max_contributors <= 1_000_000):
            raise ValueError("bound must be in (0, 1e12] and max_contributors in [2, 1e6]")
        if self.max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if (
            self.operation is HeOperation.LINEAR_REGRESSION
            and self.length > MAX_REGRESSION_FEATURES
        ):
            raise ValueError(f"a regression takes at most {MAX_REGRESSION_FEATURES} features")

    @property
    def scheme(self) -> HeScheme:
        """The scheme the operation needs."""
        return self.operation.scheme

    # -- encodings ---------------------------------------------------------

    @cached_property
    def quantum_exponent(self) -> int:
        """Exact jobs quantise values to integer multiples of ``2^quantum_exponent``."""
        return quantum_exponent(self.bound)

    @cached_property
    def ckks_shift(self) -> int:
        """CKKS jobs encode ``x·2^ckks_shift``, which keeps ``|x| <= bound`` within ``2^30``."""
        return CKKS_TOP_BITS - (self.quantum_exponent + VALUE_BITS)

    @cached_property
    def layout(self) -> LimbLayout:
        """The integers an exact job sums, and their limbs.

        Raises:
            ValueError: the operation is not an exact one.
        """
        value = VALUE_BITS + 1  # |q| <= 2^VALUE_BITS
        limb = limb_bits_for(self.max_contributors)
        if self.operation is HeOperation.VARIANCE:
            return LimbLayout((value,) * self.length + (2 * value - 1,) * self.length, limb)
        if self.operation is HeOperation.LINEAR_REGRESSION:
            rows = self.max_rows.bit_length()  # Σ over rows of |q_a·q_b| < 2^rows · 2^(2·99)
            widths = [rows + (int(i > 0) + int(j > 0)) * VALUE_BITS for i, j in self.gram_entries]
            widths += [rows + (int(i > 0) + 1) * VALUE_BITS for i in range(self.length + 1)]
            return LimbLayout(tuple(widths), limb)
        raise ValueError(f"{self.operation.value} is not an exact-integer operation")

    @property
    def gram_entries(self) -> list[tuple[int, int]]:
        """The upper triangle of a regression's XᵀX (the intercept is column 0), in order."""
        d = self.length + 1
        return [(i, j) for i in range(d) for j in range(i, d)]

    # -- slots -------------------------------------------------------------

    @property
    def payload_length(self) -> int:
        """Slots holding values (without check slots)."""
        op = self.operation
        if op.exact:
            return self.layout.slot_count
        if op is HeOperation.HISTOGRAM:
            return len(self.bins) - 1
        return self.length

    @property
    def _chunk_payload(self) -> int:
        width = raw.slots(self.scheme)
        return width - 1 if self.operation.exact else width

    @property
    def chunk_count(self) -> int:
        """Ciphertexts per contribution."""
        return math.ceil(self.payload_length / self._chunk_payload)

    @property
    def has_check_slot(self) -> bool:
        """Whether any ciphertext carries a check slot.

        An exact job puts one in every ciphertext; any other job only where
        its last ciphertext has a spare slot (never an extra ciphertext).
        """
        if self.operation.exact:
            return True
        return self.payload_length % raw.slots(self.scheme) != 0

    @property
    def chunk_sizes(self) -> tuple[int, ...]:
        """Slots of each ciphertext of one contribution, check slots included."""
        per = self._chunk_payload
        sizes = [min(per, self.payload_length - i * per) for i in range(self.chunk_count)]
        if self.operation.exact:
            return tuple(s + 1 for s in sizes)
        if self.has_check_slot:
            sizes[-1] += 1
        return tuple(sizes)

    @property
    def slot_count(self) -> int:
        """Slots per contribution: the payload and the check slots."""
        return sum(self.chunk_sizes)

    def pack(self, payload: Sequence[float], check: float = 1.0) -> list[list[float]]:
        """Cut an encoded payload into ciphertext-sized chunks, adding the check slots.

        ``check`` is what a check slot holds: 1, or the contributor's weight
        in a weighted sum (the custodian expects the cohort's total).

        Raises:
            ValueError: a payload of the wrong length.
        """
        if len(payload) != self.payload_length:
            raise ValueError(f"payload of {len(payload)} slots, expected {self.payload_length}")
        per = self._chunk_payload
        chunks = [list(payload[i * per : (i + 1) * per]) for i in range(self.chunk_count)]
        if self.operation.exact:
            for chunk in chunks:
                chunk.append(check)
        elif self.has_check_slot:
            chunks[-1].append(check)
        return chunks

    def unpack(self, plain: Sequence[float]) -> tuple[list[float], list[float]]:
        """Split a decrypted sum into its payload and its check slots (inverse of :meth:`pack`).

        Raises:
            ValueError: a sum of the wrong number of slots.
        """
        if len(plain) != self.slot_count:
            raise ValueError(f"a sum of {len(plain)} slots, expected {self.slot_count}")
        payload: list[float] = []
        checks: list[float] = []
        start = 0
        last = self.chunk_count - 1
        for index, size in enumerate(self.chunk_sizes):
            chunk = list(plain[start : start + size])
            start += size
            if self.operation.exact or (self.has_check_slot and index == last):
                checks.append(chunk.pop())
            payload.extend(chunk)
        return payload, checks

    def slot_ceiling(self, total_weight: float) -> float | None:
        """The largest magnitude any payload slot of an honest CKKS sum can have (encoded units).

        ``total_weight`` is the cohort size, or the sum of the absolute
        weights of a weighted sum. None for BFV jobs: counts are checked
        against ``[0, T/2]``, exact jobs against :meth:`LimbLayout.slot_limits`.
        """
        if self.scheme is HeScheme.BFV:
            return None
        return float(2**CKKS_TOP_BITS) * total_weight

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

    # -- storage -----------------------------------------------------------

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
            "max_rows": self.max_rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> HeJobSpec:
        """Inverse of :meth:`to_dict` (a spec stored before ``max_rows`` gets the default).

        Raises:
            ValueError: a malformed spec.
        """
        try:
            weights = data["weights"]
            bins = data["bins"]
            if not isinstance(weights, list) or not isinstance(bins, list):
                raise TypeError("weights and bins must be lists")
            return cls(
                job_id=str(data["job_id"]),
                operation=HeOperation(data["operation"]),
                length=int(str(data["length"])),
                bins=tuple(float(b) for b in bins),
                weights=tuple((str(n), float(w)) for n, w in weights),
                bound=float(str(data["bound"])),
                max_contributors=int(str(data["max_contributors"])),
                max_rows=int(str(data.get("max_rows", 1_000_000))),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed HE job spec: {exc}") from exc
