"""Shamir sharing: round trips, MPyC compatibility, and shares that look uniformly random."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.hazmat import shamir
from mpc.sharing import ShareDealer, open_envelopes


def test_prime_is_the_one_mpyc_would_pick() -> None:
    from mpyc.finfields import find_prime_root
    from mpyc.gmpy import is_prime

    assert is_prime(shamir.PRIME)
    assert shamir.PRIME.bit_length() > shamir.BIT_LENGTH + shamir.FRAC_BITS + shamir.SEC_PARAM + 1
    found = find_prime_root(96, n=2)
    assert (found[0] if isinstance(found, tuple) else found) == shamir.PRIME


@settings(max_examples=50, deadline=None)
@given(
    value=st.floats(min_value=-2e9, max_value=2e9, allow_nan=False),
    parties=st.integers(min_value=3, max_value=7),
)
def test_split_then_reconstruct_from_any_threshold_plus_one(value: float, parties: int) -> None:
    t = (parties - 1) // 2
    encoded = shamir.encode_fixed(value)
    rows = shamir.split([encoded], parties, t)
    points = [(i + 1, rows[i][0]) for i in range(parties)]
    assert shamir.reconstruct(points[: t + 1]) == encoded
    assert shamir.reconstruct(points[-(t + 1) :]) == encoded
    assert abs(shamir.decode_fixed(encoded) - value) <= 2**-17


def test_one_partys_shares_are_uniform_and_independent_of_the_secret() -> None:
    """Chi-square over 32 buckets of the field: party 0's shares of 0 and of 1e9."""
    samples = 4000
    buckets = 32
    # chi-square critical value, 31 degrees of freedom, p = 0.001
    critical = 61.1
    for secret in (0, shamir.encode_fixed(1e9)):
        shares = [shamir.split([secret], 3, 1)[0][0] for _ in range(samples)]
        counts = np.bincount([s * buckets // shamir.PRIME for s in shares], minlength=buckets)
        expected = samples / buckets
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < critical, (secret, chi2)


def test_what_a_party_receives_through_sealed_boxes_is_uniform() -> None:
    from nacl.public import PrivateKey

    keys = [PrivateKey.generate() for _ in range(3)]
    dealer = ShareDealer("job-u", [bytes(k.public_key) for k in keys], threshold=1)
    dealt = [dealer.deal(f"ent-{i}", 42.0) for i in range(2000)]
    opened, refused = open_envelopes(
        "job-u", 1, bytes(keys[1]), [d.envelopes[1] for d in dealt], with_rank_keys=False
    )
    assert not refused and len(opened) == 2000
    top = np.array([o.value_share * 16 // shamir.PRIME for o in opened])
    counts = np.bincount(top, minlength=16)
    chi2 = float(((counts - 125) ** 2 / 125).sum())
    assert chi2 < 37.7  # 15 degrees of freedom, p = 0.001
    assert len({o.value_share for o in opened}) == 2000
