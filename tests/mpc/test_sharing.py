"""Sealed shares: every malformed or replayed envelope is refused, naming its contributor."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from nacl.public import PrivateKey

from mpc.errors import (
    DuplicateContributorError,
    InvalidContributionError,
    NonNumericValueError,
    ValueOutOfRangeError,
)
from mpc.mpc_spec import MpcJobSpec
from mpc.sharing import OpenedInput, SealedShare, ShareDealer, open_envelopes

KEYS = [PrivateKey.generate() for _ in range(3)]
PUBLIC = [bytes(k.public_key) for k in KEYS]


def _open(
    envelopes: list[SealedShare],
    *,
    job: str = "job-s",
    party: int = 0,
    ranks: bool = False,
    bound: float = 1e12,
) -> tuple[list[OpenedInput], dict[str, str]]:
    spec = MpcJobSpec(job, percentile_ranks=ranks, bound=bound)
    return open_envelopes(spec, party, bytes(KEYS[party]), envelopes)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("12", NonNumericValueError),
        (float("inf"), NonNumericValueError),
        (float("nan"), NonNumericValueError),
        (Decimal("NaN"), NonNumericValueError),
        (None, NonNumericValueError),
        (True, NonNumericValueError),
        ([1.0], NonNumericValueError),
        ({"v": 1.0}, NonNumericValueError),
        (1001.0, ValueOutOfRangeError),
        (-1000.5, ValueOutOfRangeError),
        (10**400, ValueOutOfRangeError),
    ],
    ids=[
        "string",
        "inf",
        "nan",
        "decimal-nan",
        "none",
        "bool",
        "list",
        "object",
        "above",
        "below",
        "huge-int",
    ],
)
def test_dealer_refuses_bad_values(value, error) -> None:
    with pytest.raises(error, match="ent-bad"):
        ShareDealer("job-s", PUBLIC, 1, bound=1000.0).deal("ent-bad", value)


@pytest.mark.parametrize("value", [1000.0, -1000, Fraction(1, 3), Decimal("0.1"), 0], ids=str)
def test_dealer_takes_every_real_number_within_the_bound(value) -> None:
    dealt = ShareDealer("job-s", PUBLIC, 1, bound=1000.0).deal("ent-ok", value)
    assert len(dealt.envelopes) == 3


def test_a_share_dealt_at_another_resolution_is_refused_by_name() -> None:
    """A dealer whose bound differs from the job's would be decoded at the wrong scale."""
    fine = ShareDealer("job-s", PUBLIC, 1, bound=1.0).deal("ent-fine", 0.5).envelopes[0]
    right = ShareDealer("job-s", PUBLIC, 1, bound=1e12).deal("ent-right", 0.5).envelopes[0]
    opened, refused = _open([fine, right], bound=1e12)
    assert [o.contributor for o in opened] == ["ent-right"]
    assert "resolution 1e-18, the job's is 1e-6" in refused["ent-fine"]


def test_good_envelopes_open() -> None:
    dealer = ShareDealer("job-s", PUBLIC, 1)
    dealt = [dealer.deal(f"ent-{i}", float(i)) for i in range(3)]
    opened, refused = _open([d.envelopes[0] for d in dealt])
    assert refused == {} and [o.contributor for o in opened] == ["ent-0", "ent-1", "ent-2"]
    assert "shares=<redacted>" in repr(opened[0])


def test_refusals_name_the_contributor() -> None:
    dealer = ShareDealer("job-s", PUBLIC, 1)
    good = dealer.deal("ent-good", 1.0).envelopes[0]
    other_job = ShareDealer("job-old", PUBLIC, 1).deal("ent-old", 1.0).envelopes[0]
    for_party_1 = dealer.deal("ent-p1", 1.0).envelopes[1]
    wrong_box = SealedShare("ent-box", 0, dealer.deal("ent-box", 1.0).envelopes[1].blob)
    relabelled = SealedShare("ent-thief", 0, dealer.deal("ent-victim", 1.0).envelopes[0].blob)
    garbage = SealedShare("ent-garbage", 0, b"\x00" * 80)
    twice = dealer.deal("ent-twice", 1.0).envelopes[0]
    with_tag = dealer.deal("ent-tag", 1.0, with_rank_key=True).envelopes[0]
    opened, refused = _open(
        [good, other_job, for_party_1, wrong_box, relabelled, garbage, twice, twice, with_tag]
    )
    assert [o.contributor for o in opened] == ["ent-good"]
    assert set(refused) == {
        "ent-old",
        "ent-p1",
        "ent-box",
        "ent-thief",
        "ent-garbage",
        "ent-twice",
        "ent-tag",
    }
    assert "made for job 'job-old'" in refused["ent-old"]
    assert "for party 1" in refused["ent-p1"]
    assert "does not open" in refused["ent-box"]
    assert "another party or contributor" in refused["ent-thief"]
    assert "more than one share" in refused["ent-twice"]
    assert "expected 1 shares" in refused["ent-tag"]
    assert all(reason.startswith(f"contributor {who!r}") for who, reason in refused.items())


def test_a_replayed_envelope_under_a_new_name_is_refused() -> None:
    dealer = ShareDealer("job-s", PUBLIC, 1)
    original = dealer.deal("ent-a", 1.0).envelopes[0]
    opened, refused = _open([original, SealedShare("ent-a", 0, original.blob)])
    assert opened == [] and "ent-a" in refused


def test_rank_key_finds_its_own_tag() -> None:
    dealer = ShareDealer("job-s", PUBLIC, 1)
    keys = [dealer.deal(f"ent-{i}", 1.0, with_rank_key=True).rank_key for i in range(4)]
    assert all(k is not None for k in keys)
    tags = [k.tag for k in keys if k is not None]
    order = [tags[2], tags[0], tags[3], tags[1]]
    assert keys[2] is not None and keys[2].percentile(order) == 0.0
    assert keys[1] is not None and keys[1].percentile(order) == 100.0
    assert "tag=<redacted>" in repr(keys[0])
    with pytest.raises(ValueError, match="not among"):
        keys[0].percentile([tags[1], tags[2]]) if keys[0] else None


def test_deal_all_refuses_the_whole_input_naming_the_contributor() -> None:
    dealer = ShareDealer("job-s", PUBLIC, 1, bound=1000.0)
    assert [d.contributor for d in dealer.deal_all([("a", 1.0), ("b", 2)])] == ["a", "b"]
    cases: list[tuple[list[tuple[str, object]], type[Exception], str]] = [
        ([("a", 1.0), ("b", 2.0), ("a", 3.0)], DuplicateContributorError, "'a'"),
        ([("a", 1.0), ("", 2.0)], InvalidContributionError, "''"),
        ([("a", 1.0), ("b", [("v", 1.0)])], NonNumericValueError, "'b'"),
        ([("a", 1.0), ("b", 1e4)], ValueOutOfRangeError, "'b'"),
    ]
    for pairs, error, who in cases:
        with pytest.raises(error, match=f"contributor {who}"):
            dealer.deal_all(pairs)
