"""Shamir secret sharing of exact integers over the prime fields the MPC program uses.

A contributor's value enters MPC as an exact integer (the job quantises it:
:meth:`mpc.mpc_spec.MpcJobSpec.quantise`), of magnitude below
``2^VALUE_MAGNITUDE_BITS``. It is shared in :data:`SUM_PRIME`, a 192-bit field
large enough that the sums the program opens never wrap:

* ``Σx`` over up to :data:`MAX_CONTRIBUTORS` values: below ``2^80``;
* ``n·Σx² − (Σx)²`` (``n²`` times the variance): below ``2^160``;
* the dominance comparisons run on ``SecInt(SUM_BITS)`` in this field, and
  MPyC requires ``SUM_PRIME`` to exceed ``SUM_BITS + k + 1`` bits (k = 30).

Sorting (order statistics, dominance, ranks) runs on ``SecInt(ORDER_BITS)``
over the 96-bit :data:`ORDER_PRIME`, after a secure conversion: comparisons
in the smaller field cost about a third of those in the 192-bit one.

Party ``i`` (0-based) holds the polynomial's value at ``x = i + 1``, exactly
as MPyC's ``thresha`` does, so a share dealt here is a valid MPyC share of
``SecInt(SUM_BITS, SUM_PRIME)``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

__all__ = [
    "MAX_CONTRIBUTORS",
    "ORDER_BITS",
    "ORDER_PRIME",
    "SEC_PARAM",
    "SUM_BITS",
    "SUM_PRIME",
    "VALUE_MAGNITUDE_BITS",
    "decode_signed",
    "encode_signed",
    "reconstruct",
    "split",
]

SEC_PARAM = 30
"""MPyC's default statistical security parameter k (masks in comparisons and conversions)."""

VALUE_MAGNITUDE_BITS = 60
"""Every quantised input ``v`` satisfies ``|v| < 2^60`` (the job picks its resolution so)."""

MAX_CONTRIBUTORS = 1 << 20
"""The most contributions one job sums (the field capacity below is computed for it)."""

ORDER_BITS = 62
"""Bit length of the secure integers sorted: inputs (|v| < 2^60) and rank tags (46 bits) fit."""

ORDER_PRIME = 79228162514264337593543950319
"""A 96-bit prime (``mpyc.finfields.find_prime_root(96, n=2)``), above MPyC's
``ORDER_BITS + k + 1 = 93``-bit floor for ``SecInt(62)`` at k = 30."""

SUM_BITS = 160
"""Bit length of the secure integers of the sums and dominance comparisons."""

SUM_PRIME = 6277101735386680763835789423207666416102355444464034512659
"""A 192-bit prime (``mpyc.finfields.find_prime_root(192, n=2)``), above MPyC's
``SUM_BITS + k + 1 = 191``-bit floor for ``SecInt(160)`` at k = 30."""


def encode_signed(value: int, prime: int = SUM_PRIME) -> int:
    """The field element of the integer ``value`` (negative values wrap to the top half).

    Raises:
        ValueError: ``|value|`` is not below half the field.
    """
    if not -(prime // 2) <= value <= prime // 2:
        raise ValueError("integer does not fit the field")
    return value % prime


def decode_signed(element: int, prime: int = SUM_PRIME) -> int:
    """Inverse of :func:`encode_signed` (elements above ``prime/2`` are negative)."""
    element %= prime
    return element - prime if element > prime // 2 else element


def split(
    values: Sequence[int], parties: int, threshold: int, prime: int = SUM_PRIME
) -> list[list[int]]:
    """Shares of each field element in ``values``: one row per party.

    Raises:
        ValueError: ``0 <= threshold < parties`` does not hold.
    """
    if not 0 <= threshold < parties:
        raise ValueError("need 0 <= threshold < parties")
    rows: list[list[int]] = [[0] * len(values) for _ in range(parties)]
    for h, secret in enumerate(values):
        coefficients = [secrets.randbelow(prime) for _ in range(threshold)]
        for i in range(parties):
            x = i + 1
            y = 0
            for c in coefficients:
                y = (y + c) * x
            rows[i][h] = (y + secret) % prime
    return rows


def reconstruct(points: Sequence[tuple[int, int]], prime: int = SUM_PRIME) -> int:
    """Lagrange interpolation at 0 of ``(x, share)`` points."""
    total = 0
    for j, (xj, yj) in enumerate(points):
        num, den = 1, 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                num = num * -xm % prime
                den = den * (xj - xm) % prime
        total = (total + yj * num * pow(den, -1, prime)) % prime
    return total
