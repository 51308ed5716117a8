"""Shamir secret sharing over the prime field MPyC's secure fixed-point type uses.

Values are fixed-point: ``round(v * 2^FRAC_BITS)`` mod :data:`PRIME`, with
``BIT_LENGTH`` bits in all, so magnitudes up to ``2^(BIT_LENGTH-FRAC_BITS-1)``
(about 2.1e9) with a resolution of 2^-16. Party ``i`` (0-based) holds the
polynomial's value at ``x = i + 1``, exactly as MPyC's ``thresha`` does, so a
share dealt here is a valid MPyC share of ``SecFxp(BIT_LENGTH, FRAC_BITS, PRIME)``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

__all__ = [
    "BIT_LENGTH",
    "FRAC_BITS",
    "MAX_MAGNITUDE",
    "PRIME",
    "decode_fixed",
    "encode_fixed",
    "reconstruct",
    "split",
]

BIT_LENGTH = 48
FRAC_BITS = 16
SEC_PARAM = 30
PRIME = 79228162514264337593543950319
"""A 96-bit prime (``mpyc.finfields.find_prime_root(96, n=2)``), above MPyC's
``l + f + k + 1 = 95``-bit floor for ``SecFxp(48, 16)`` at its default k = 30."""
MAX_MAGNITUDE = float(2 ** (BIT_LENGTH - FRAC_BITS - 1))


def encode_fixed(value: float) -> int:
    """The field element for fixed-point ``value``.

    Raises:
        ValueError: not finite, or beyond :data:`MAX_MAGNITUDE`.
    """
    if not math.isfinite(value) or abs(value) >= MAX_MAGNITUDE:
        raise ValueError("value is not finite or exceeds the fixed-point range")
    return round(value * (1 << FRAC_BITS)) % PRIME


def decode_fixed(element: int) -> float:
    """Inverse of :func:`encode_fixed` (elements above PRIME/2 are negative)."""
    element %= PRIME
    if element > PRIME // 2:
        element -= PRIME
    return element / (1 << FRAC_BITS)


def split(values: Sequence[int], parties: int, threshold: int) -> list[list[int]]:
    """Shares of each field element in ``values``: one row per party.

    Raises:
        ValueError: ``0 <= threshold < parties`` does not hold.
    """
    if not 0 <= threshold < parties:
        raise ValueError("need 0 <= threshold < parties")
    rows: list[list[int]] = [[0] * len(values) for _ in range(parties)]
    for h, secret in enumerate(values):
        coefficients = [secrets.randbelow(PRIME) for _ in range(threshold)]
        for i in range(parties):
            x = i + 1
            y = 0
            for c in coefficients:
                y = (y + c) * x
            rows[i][h] = (y + secret) % PRIME
    return rows


def reconstruct(points: Sequence[tuple[int, int]]) -> int:
    """Lagrange interpolation at 0 of ``(x, share)`` points."""
    total = 0
    for j, (xj, yj) in enumerate(points):
        num, den = 1, 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                num = num * -xm % PRIME
                den = den * (xj - xm) % PRIME
        total = (total + yj * num * pow(den, -1, PRIME)) % PRIME
    return total
