"""Shamir sharing: round trips, MPyC compatibility, and shares that look uniformly random."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.hazmat import shamir
from mpc.mpc_spec import MpcJobSpec
from mpc.sharing import ShareDealer, open_envelopes


def test_primes_are_the_ones_mpyc_would_pick_and_hold_the_secure_types() -> None:
    from mpyc.finfields import find_prime_root
    from mpyc.gmpy import is_prime

    for prime, bits, secint_bits in (
        (shamir.ORDER_PRIME, 96, shamir.ORDER_BITS),
        (shamir.SUM_PRIME, 192, shamir.SUM_BITS),
    ):
        assert is_prime(prime)
        assert find_prime_root(bits, n=2)[0] == prime
        # MPyC's floor for SecInt(l) over a given prime: bit length > l + k + 1
        assert prime.bit_length() > secint_bits + shamir.SEC_PARAM + 1


def test_the_sum_field_holds_every_aggregate_the_program_opens() -> None:
    """Capacity at the extremes: 2^20 contributions, every one at the largest magnitude."""
    n = shamir.MAX_CONTRIBUTORS
    v = (1 << shamir.VALUE_MAGNITUDE_BITS) - 1
    half = shamir.SUM_PRIME // 2
    assert n * v < half  # Σv
    assert n * (n * v * v) < half  # n·Σv² (and n·Σv² − (Σv)² is between 0 and it)
    # Σv in a 1,000-contributor job at the largest magnitude round-trips through the field
    big = [shamir.encode_signed(-v) for _ in range(1000)]
    assert shamir.decode_signed(sum(big)) == -1000 * v
    assert shamir.decode_signed(sum(x * x for x in big)) == 1000 * v * v
    # sorted values, rank tags, and conversion masks fit SecInt(ORDER_BITS) and its field
    assert v < 1 << (shamir.ORDER_BITS - 1)
    assert 1 << (shamir.ORDER_BITS - 1) > (1 << 46)
    assert 6 * v < shamir.ORDER_PRIME // 2  # a quartile's interpolation (4−δ)a + δb, |δ| ≤ 5


@settings(max_examples=50, deadline=None)
@given(
    value=st.integers(min_value=-(1 << 60) + 1, max_value=(1 << 60) - 1),
    parties=st.integers(min_value=3, max_value=7),
)
def test_split_then_reconstruct_from_any_threshold_plus_one(value: int, parties: int) -> None:
    t = (parties - 1) // 2
    encoded = shamir.encode_signed(value)
    rows = shamir.split([encoded], parties, t)
    points = [(i + 1, rows[i][0]) for i in range(parties)]
    assert shamir.reconstruct(points[: t + 1]) == encoded
    assert shamir.reconstruct(points[-(t + 1) :]) == encoded
    assert shamir.decode_signed(encoded) == value


def test_one_partys_shares_are_uniform_and_independent_of_the_secret() -> None:
    """Chi-square over 32 buckets of the field: party 0's shares of 0 and of 10^18."""
    samples = 4000
    buckets = 32
    # chi-square critical value, 31 degrees of freedom, p = 0.001
    critical = 61.1
    for secret in (0, shamir.encode_signed(10**18)):
        shares = [shamir.split([secret], 3, 1)[0][0] for _ in range(samples)]
        counts = np.bincount([s * buckets // shamir.SUM_PRIME for s in shares], minlength=buckets)
        expected = samples / buckets
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < critical, (secret, chi2)


def test_what_a_party_receives_through_sealed_boxes_is_uniform() -> None:
    from nacl.public import PrivateKey

    keys = [PrivateKey.generate() for _ in range(3)]
    spec = MpcJobSpec("job-u")
    dealer = ShareDealer.for_job(spec, [bytes(k.public_key) for k in keys], threshold=1)
    dealt = [dealer.deal(f"ent-{i}", 42.0) for i in range(2000)]
    opened, refused = open_envelopes(spec, 1, bytes(keys[1]), [d.envelopes[1] for d in dealt])
    assert not refused and len(opened) == 2000
    top = np.array([o.value_share * 16 // shamir.SUM_PRIME for o in opened])
    counts = np.bincount(top, minlength=16)
    chi2 = float(((counts - 125) ** 2 / 125).sum())
    assert chi2 < 37.7  # 15 degrees of freedom, p = 0.001
    assert len({o.value_share for o in opened}) == 2000
