"""ECDH-PSI against a plain set intersection, and refusals of malformed messages."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc import BlindedSet, PsiMode, PsiOutcome, PsiParty
from mpc.errors import PsiError
from mpc.hazmat import ecgroup


def _run(a: list[str], b: list[str], mode: PsiMode) -> tuple[PsiOutcome, PsiOutcome]:
    alice, bob = PsiParty("s-1", a, mode), PsiParty("s-1", b, mode)
    to_bob, to_alice = alice.blinded(), bob.blinded()  # what the relay sees
    back_to_alice, back_to_bob = bob.reblind(to_bob), alice.reblind(to_alice)
    return alice.finish(back_to_alice), bob.finish(back_to_bob)


def test_cardinality_matches_plain_intersection() -> None:
    rng = random.Random(4)
    universe = [f"91330100MA2{n:07d}" for n in range(3000)]
    a, b = rng.sample(universe, 800), rng.sample(universe, 900)
    left, right = _run(a, b, PsiMode.CARDINALITY)
    assert left.size == right.size == len(set(a) & set(b))
    assert left.items is None and right.items is None


@settings(max_examples=15, deadline=None)
@given(
    a=st.sets(st.text(min_size=1, max_size=12).filter(str.strip), max_size=30).filter(bool),
    b=st.sets(st.text(min_size=1, max_size=12).filter(str.strip), max_size=30).filter(bool),
)
def test_intersection_matches_plain_sets(a: set[str], b: set[str]) -> None:
    left, right = _run(sorted(a), sorted(b), PsiMode.INTERSECTION)
    expected = tuple(sorted({x.strip() for x in a} & {y.strip() for y in b}))
    assert left.items == right.items == expected
    assert left.size == len(expected)


def test_the_relay_sees_only_blinded_points() -> None:
    alice = PsiParty("s-1", ["acme", "globex"], PsiMode.CARDINALITY)
    sent = alice.blinded()
    plain = {ecgroup.hash_to_group(b"acme"), ecgroup.hash_to_group(b"globex")}
    assert not plain & set(sent.points)
    assert all(ecgroup.is_valid_point(p) for p in sent.points)
    again = PsiParty("s-1", ["acme", "globex"], PsiMode.CARDINALITY).blinded()
    assert set(again.points).isdisjoint(sent.points)  # fresh scalar per session
    assert "scalar=<redacted>" in repr(alice)


def test_malformed_messages_are_refused() -> None:
    alice = PsiParty("s-1", ["a", "b"], PsiMode.CARDINALITY)
    bob = PsiParty("s-1", ["b", "c"], PsiMode.CARDINALITY)
    good = bob.blinded()
    with pytest.raises(PsiError, match="session"):
        alice.reblind(BlindedSet("s-2", good.points))
    with pytest.raises(PsiError, match="duplicate"):
        alice.reblind(BlindedSet("s-1", (good.points[0], good.points[0])))
    with pytest.raises(PsiError, match="outside the group"):
        alice.reblind(BlindedSet("s-1", (b"\x00" * 31 + b"\x80",)))
    with pytest.raises(PsiError, match="before finishing"):
        alice.finish(bob.reblind(alice.blinded()))
    alice.reblind(good)
    with pytest.raises(PsiError, match="does not match"):
        alice.finish(BlindedSet("s-1", good.points[:1]))
    with pytest.raises(PsiError, match="non-empty"):
        PsiParty("s-1", ["  ", ""], PsiMode.CARDINALITY)


@pytest.mark.slow
def test_ten_thousand_by_ten_thousand() -> None:
    a = [f"supplier-{i}" for i in range(10_000)]
    b = [f"supplier-{i}" for i in range(6_000, 16_000)]
    left, right = _run(a, b, PsiMode.CARDINALITY)
    assert left.size == right.size == 4_000
