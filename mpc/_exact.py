"""Exact integer sums under BFV: quantisation, limb splitting, reconstruction.

Statistics that subtract large, nearly equal sums (a variance, a
regression's normal equations) cannot be computed from approximate sums:
``E[x²] − mean²`` at ``|x| ≈ 1e9`` with a spread of 1e3 subtracts two
numbers of 1e18 to find 1e6, and CKKS (or float64) keeps about 16
significant digits of each. So those statistics never see an approximate
sum:

1. Each value ``x`` with ``|x| <= bound`` is quantised to the integer
   ``q = round(x / 2^e)`` (exact: ``Fraction(x)`` is the float's exact
   value), where the quantum ``2^e`` is fixed by the job's bound:
   ``e = ceil(log2(bound)) − VALUE_BITS``, so ``|q| <= 2^VALUE_BITS`` and
   the quantisation error is at most ``2^(e−1) <= 2^−99·bound ≈ 1.6e-30·bound``.
2. Every integer the contributor sends (``q``, ``q²``, a regression's local
   ``Σ q_a·q_b`` …) has a public width in bits. It is split into signed
   limbs of ``limb_bits`` bits (the sign on every limb), one BFV slot each.
   ``limb_bits`` is the largest width for which ``max_contributors`` limbs
   sum to less than ``T/2`` (T the BFV plaintext modulus), so no limb sum
   ever wraps and BFV returns each limb sum exactly.
3. The custodian joins the decrypted limb sums, ``Σ_j s_j·2^(j·limb_bits)``,
   into the exact integer sums, and computes the statistic from them with
   :class:`fractions.Fraction`: exactly, then rounded once to float64.

The honest range of every limb slot is public (``n·(2^width − 1)`` for the
limb's width), so a ciphertext under another key, which decrypts to values
uniform over ``[−T/2, T/2)``, is caught by the range check as well as by the
check slot (which must equal the cohort size *exactly*).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mpc.hazmat import he as raw

__all__ = [
    "VALUE_BITS",
    "LimbLayout",
    "limb_bits_for",
    "quantise",
    "quantum_exponent",
]

logger = logging.getLogger(__name__)

VALUE_BITS = 99
"""The quantum is ``2^−99`` of the bound's power of two, so ``|q| <= 2^99`` (100 bits)."""

_BFV_HALF = (raw.BFV_PLAIN_MODULUS - 1) // 2


def quantum_exponent(bound: float) -> int:
    """``e`` such that ``|x| <= bound`` quantises to ``|round(x / 2^e)| <= 2^VALUE_BITS``.

    Raises:
        ValueError: a bound that is not a positive finite number.
    """
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError("the bound must be a positive finite number")
    mantissa, exponent = math.frexp(bound)  # bound = mantissa · 2^exponent, 0.5 <= mantissa < 1
    top = exponent - 1 if mantissa == 0.5 else exponent  # ceil(log2(bound)), exactly
    return top - VALUE_BITS


def quantise(value: float, exponent: int) -> int:
    """``round(value / 2^exponent)``, computed exactly (ties to even)."""
    return round(Fraction(value) / Fraction(2) ** exponent)


def limb_bits_for(max_contributors: int) -> int:
    """The widest limb whose sum over ``max_contributors`` contributors stays below T/2.

    Raises:
        ValueError: so many contributors that not even one bit fits.
    """
    per_contributor = _BFV_HALF // max_contributors
    bits = (per_contributor + 1).bit_length() - 1  # 2^bits − 1 <= per_contributor
    if bits < 1:
        raise ValueError("too many contributors for exact BFV sums")
    return bits


@dataclass(frozen=True)
class LimbLayout:
    """How a contributor's integers map to BFV slots.

    ``widths`` are the magnitude bits of each integer, in order; each takes
    ``ceil(width / limb_bits)`` consecutive slots, least significant limb
    first.
    """

    widths: tuple[int, ...]
    limb_bits: int

    def __post_init__(self) -> None:
        if self.limb_bits < 1 or any(w < 1 for w in self.widths):
            raise ValueError("limb and integer widths must be positive")

    def limbs_of(self, width: int) -> int:
        """Slots one integer of ``width`` bits takes."""
        return -(-width // self.limb_bits)

    @property
    def slot_count(self) -> int:
        """Slots the whole layout takes."""
        return sum(self.limbs_of(w) for w in self.widths)

    def limb_widths(self) -> list[int]:
        """The magnitude bits of each slot's limb (the top limb of an integer may be narrower)."""
        out: list[int] = []
        for width in self.widths:
            count = self.limbs_of(width)
            out.extend([self.limb_bits] * (count - 1))
            out.append(width - self.limb_bits * (count - 1))
        return out

    def slot_limits(self, contributors: int) -> list[int]:
        """The largest magnitude each slot of an honest sum over ``contributors`` can have."""
        return [contributors * ((1 << w) - 1) for w in self.limb_widths()]

    def split(self, integers: Sequence[int]) -> list[int]:
        """Signed limbs of ``integers`` (every limb carries its integer's sign).

        Raises:
            ValueError: the wrong number of integers, or one wider than its width.
        """
        if len(integers) != len(self.widths):
            raise ValueError(f"expected {len(self.widths)} integers, got {len(integers)}")
        mask = (1 << self.limb_bits) - 1
        out: list[int] = []
        for value, width in zip(integers, self.widths, strict=True):
            magnitude = abs(value)
            if magnitude.bit_length() > width:
                raise ValueError(f"an integer of {magnitude.bit_length()} bits exceeds {width}")
            sign = -1 if value < 0 else 1
            for index in range(self.limbs_of(width)):
                out.append(sign * ((magnitude >> (index * self.limb_bits)) & mask))
        return out

    def join(self, limb_sums: Sequence[int]) -> list[int]:
        """The exact integer sums from the summed limbs (inverse of summing :meth:`split`).

        Raises:
            ValueError: the wrong number of limb sums.
        """
        if len(limb_sums) != self.slot_count:
            raise ValueError(f"expected {self.slot_count} limb sums, got {len(limb_sums)}")
        out: list[int] = []
        position = 0
        for width in self.widths:
            count = self.limbs_of(width)
            total = 0
            for index in range(count):
                total += int(limb_sums[position + index]) << (index * self.limb_bits)
            out.append(total)
            position += count
        return out
