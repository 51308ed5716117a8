"""Every release-guard refusal, attempted by a determined requester group."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from core.db import Database
from mpc import (
    ConsentTerms,
    DominanceRule,
    DominanceVerdict,
    DpMechanism,
    DpPolicy,
    Engine,
    HeAggregator,
    HeContributor,
    HeJobSpec,
    HeOperation,
    OrderRelease,
    ReleaseGuard,
    ReleasePolicy,
    ReleaseQuery,
    ReleaseRequest,
    ReleaseSubject,
    StatisticKind,
    choose_engine,
    industry_group,
)
from mpc._tables import ReleaseRow
from mpc.errors import (
    CohortTooSmallError,
    DifferencingError,
    DominanceError,
    EngineChoiceError,
    IndividualValueError,
    LinearDisclosureError,
    OrderStatisticError,
    PrivacyBudgetExhaustedError,
    ReleaseDescriptionError,
    WeightShareError,
)

ENERGY = ReleaseSubject("energy", ("kwh",), (("period", "2026-Q3"),))
GROUP = industry_group("battery")
COHORT = frozenset(f"ent-{i}" for i in range(6))
MEAN = (StatisticKind.MEAN,)


def _request(
    job: str,
    *,
    requester: str = "sub-brain-a",
    group: str = GROUP,
    subject: ReleaseSubject = ENERGY,
    policy: ReleasePolicy | None = None,
    consents: tuple[ConsentTerms, ...] = (),
) -> ReleaseRequest:
    return ReleaseRequest(job, requester, group, subject, policy or ReleasePolicy(), consents)


def _mean(cohort, subject: ReleaseSubject = ENERGY) -> ReleaseQuery:
    return ReleaseQuery.uniform(subject, MEAN, sorted(cohort))


def test_cohort_minimum_is_the_strictest_of_policy_and_consents(guard: ReleaseGuard) -> None:
    consents = (ConsentTerms("c-1", "ent-1", min_cohort=7),)
    with pytest.raises(CohortTooSmallError, match="minimum cohort is 7") as info:
        guard.approve(_request("j1", consents=consents), _mean(COHORT))
    assert (info.value.cohort, info.value.minimum) == (6, 7)
    with pytest.raises(CohortTooSmallError):
        guard.approve(_request("j2", policy=ReleasePolicy(min_cohort=10)), _mean(COHORT))
    assert guard.approve(_request("j3"), _mean(COHORT)).min_cohort == 5


def test_policy_cannot_go_below_two() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        ReleasePolicy(min_cohort=1)


def test_a_request_is_described_by_its_subject_never_a_label() -> None:
    with pytest.raises(ValueError, match="ReleaseSubject, not a label"):
        ReleaseRequest("j", "sub-brain", GROUP, "mean energy", ReleasePolicy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ReleaseSubject, not a label"):
        ReleaseQuery("mean energy", MEAN, (("a", Fraction(1)),))  # type: ignore[arg-type]


def test_refuses_per_enterprise_values_and_a_query_that_does_not_fit(guard) -> None:
    with pytest.raises(IndividualValueError):
        guard.approve(_request("j1"), _mean(COHORT), per_contributor=True)
    with pytest.raises(IndividualValueError, match="labelled"):
        guard.approve(_request("j2"), _mean(COHORT), result_labels=("total", "ent-3"))
    other = ReleaseSubject("water", ("m3",))
    with pytest.raises(ReleaseDescriptionError, match="another subject"):
        guard.approve(_request("j3"), _mean(COHORT, other))
    with pytest.raises(ReleaseDescriptionError, match="both counted in and left out"):
        guard.approve(_request("j4"), _mean(COHORT), left_out={"ent-0": "bad share"})


def test_two_sub_brains_of_one_group_cannot_difference_one_enterprise_out(guard) -> None:
    """The old guard keyed history by requester and label: two labels got both through."""
    guard.approve(_request("j1", requester="sub-brain-a"), _mean(COHORT))
    with pytest.raises(LinearDisclosureError, match="one contributor's value") as info:
        guard.approve(_request("j2", requester="sub-brain-b"), _mean(COHORT - {"ent-0"}))
    assert info.value.releases == 1
    assert "ent-0" not in str(info.value)  # the refusal never names who would be exposed
    with pytest.raises(LinearDisclosureError):  # a sum is the same linear fact as a mean
        sums = ReleaseQuery.uniform(ENERGY, (StatisticKind.SUM,), sorted(COHORT | {"ent-new"}))
        guard.approve(_request("j3", requester="sub-brain-c"), sums)
    # another filter is the same unknown: filters never open a fresh history
    later = ReleaseSubject("energy", ("kwh",), (("period", "2026-Q4"),))
    with pytest.raises(LinearDisclosureError):
        guard.approve(_request("j4", subject=later), _mean(COHORT - {"ent-1"}, later))
    # another group has its own history; another field is another unknown
    guard.approve(_request("j5", group=industry_group("steel")), _mean(COHORT - {"ent-0"}))
    water = ReleaseSubject("energy", ("water_m3",))
    guard.approve(_request("j6", subject=water), _mean(COHORT - {"ent-0"}, water))
    with pytest.raises(DifferencingError, match="already released"):
        guard.approve(_request("j1"), _mean(COHORT))


def test_a_difference_of_two_enterprises_is_refused(guard) -> None:
    guard.approve(_request("j1"), _mean(COHORT))
    swapped = (COHORT - {"ent-0"}) | {"ent-new"}
    with pytest.raises(LinearDisclosureError, match="difference of two"):
        guard.approve(_request("j2"), _mean(swapped))


def test_weights_that_single_one_enterprise_out_are_refused(guard) -> None:
    names = sorted(COHORT)
    guard.approve(_request("j1"), ReleaseQuery.weighted(ENERGY, dict.fromkeys(names, 1.0)))
    tilted = {name: (2.0 if name == "ent-3" else 1.0) for name in names}
    with pytest.raises(LinearDisclosureError, match="one contributor's value"):
        guard.approve(_request("j2"), ReleaseQuery.weighted(ENERGY, tilted))
    # a weight that carries most of the total is refused on its own
    heavy = {name: (50.0 if name == "ent-3" else 1.0) for name in names}
    with pytest.raises(WeightShareError) as info:
        guard.approve(_request("j3", group="other"), ReleaseQuery.weighted(ENERGY, heavy))
    assert info.value.limit == pytest.approx(0.4) and info.value.share > 0.9
    with pytest.raises(ValueError, match="zero weight"):
        ReleaseQuery.weighted(ENERGY, {**heavy, "ent-3": 0.0})


def test_a_chain_of_four_releases_is_refused_at_the_one_that_solves(guard) -> None:
    """No two of these differ by fewer than 6 enterprises; together they expose ent-x."""
    a, b, c = ({f"{g}{i}" for i in range(5)} for g in "abc")
    guard.approve(_request("j1"), _mean(a | b))
    guard.approve(_request("j2"), _mean(b | c))
    guard.approve(_request("j3"), _mean(a | c))
    with pytest.raises(LinearDisclosureError, match="3 earlier releases"):
        guard.approve(_request("j4"), _mean(a | b | c | {"ent-x"}))
    # the group's history survives a restart (a new guard reads the stored reduced form)
    restarted = ReleaseGuard(guard._db)
    with pytest.raises(LinearDisclosureError):
        restarted.approve(_request("j5"), _mean(a | b | c | {"ent-x"}))
    restarted.approve(_request("j6"), _mean(a | b | c))  # already implied: nothing new


def test_an_aggregate_over_fewer_than_the_minimum_is_refused(guard) -> None:
    guard.approve(_request("j1"), _mean(COHORT))
    with pytest.raises(LinearDisclosureError, match="over 2 contributors"):
        guard.approve(_request("j2"), _mean(COHORT | {"ent-x", "ent-y"}))


def test_a_multi_field_release_counts_against_every_field(guard) -> None:
    pair = ReleaseSubject("energy", ("kwh", "output"))
    regression = ReleaseQuery.uniform(pair, (StatisticKind.REGRESSION,), sorted(COHORT))
    guard.approve(_request("j1", subject=pair), regression)
    with pytest.raises(LinearDisclosureError, match=r"energy\.kwh"):
        guard.approve(_request("j2"), _mean(COHORT - {"ent-2"}))


def test_a_rolled_back_approval_leaves_no_history(guard) -> None:
    db: Database = guard._db
    with pytest.raises(RuntimeError), db.write() as session:
        guard.approve(_request("j1"), _mean(COHORT), session=session)
        raise RuntimeError("the decryption failed")
    guard.approve(_request("j2"), _mean(COHORT - {"ent-0"}))  # j1 never happened
    with pytest.raises(LinearDisclosureError):
        guard.approve(_request("j3"), _mean(COHORT))


def test_exact_order_statistics_are_refused_unless_the_policy_says_how(guard) -> None:
    for kind in (StatisticKind.MIN, StatisticKind.MAX, StatisticKind.MEDIAN):
        query = ReleaseQuery.uniform(ENERGY, (kind,), sorted(COHORT))
        with pytest.raises(OrderStatisticError, match="one contributor's value"):
            guard.approve(_request(f"j-{kind.value}"), query)
        with pytest.raises(OrderStatisticError):
            guard.release_order_statistics(_request("x"), [41.8])
    median = ReleaseQuery.uniform(ENERGY, (StatisticKind.MEDIAN,), sorted(COHORT))
    coarse = ReleasePolicy(order_statistics=OrderRelease.COARSEN, coarsen_step=5.0)
    request = _request("j-coarse", policy=coarse)
    guard.approve(request, median)
    assert guard.release_order_statistics(request, [41.8, 37.2]) == (40.0, 35.0)
    exact = ReleasePolicy(
        order_statistics=OrderRelease.EXACT, exact_order_classifications=frozenset({"public"})
    )
    with pytest.raises(OrderStatisticError, match="'internal'"):
        guard.approve(_request("j-exact", policy=exact), median)
    public = ReleaseSubject("energy", ("kwh",), classification="public")
    exact_request = _request("j-public", policy=exact, subject=public)
    guard.approve(exact_request, ReleaseQuery.uniform(public, (StatisticKind.MAX,), COHORT))
    assert guard.release_order_statistics(exact_request, [41.8]) == (41.8,)
    with pytest.raises(ValueError, match="coarsen_step"):
        ReleasePolicy(order_statistics=OrderRelease.COARSEN)


def test_dominance_verdicts() -> None:
    rules = (DominanceRule(1, 85), DominanceRule(2, 90))
    policy = ReleasePolicy(dominance=rules)
    ReleaseGuard.check_dominance(policy, DominanceVerdict(rules, (False, False)))
    with pytest.raises(DominanceError, match="1 largest contributors make up more than 85%"):
        ReleaseGuard.check_dominance(policy, DominanceVerdict(rules, (True, False)))
    with pytest.raises(DominanceError, match="no verdict"):
        ReleaseGuard.check_dominance(policy, DominanceVerdict(rules[:1], (False,)))


def test_dominance_makes_auto_choose_mpc() -> None:
    plain = ReleasePolicy()
    dominated = ReleasePolicy(dominance=(DominanceRule(1, 85),))
    assert choose_engine(plain, Engine.AUTO) is Engine.HE
    assert choose_engine(dominated, Engine.AUTO) is Engine.MPC
    assert choose_engine(dominated, Engine.MPC) is Engine.MPC
    with pytest.raises(EngineChoiceError, match="mpc"):
        choose_engine(dominated, Engine.HE)


@pytest.mark.parametrize("mechanism", list(DpMechanism), ids=lambda m: m.value)
def test_dp_noise_charges_every_consent_and_refuses_when_spent(guard, mechanism) -> None:
    policy = ReleasePolicy(dp=DpPolicy(mechanism, epsilon=0.5, consent_budget=1.5))
    consents = (
        ConsentTerms("c-a", "ent-0", epsilon_budget=1.0),
        ConsentTerms("c-b", "ent-1", epsilon_budget=2.0),
        ConsentTerms("c-c", "ent-2"),  # no budget of its own: the policy's default (1.5)
    )
    request = _request("j", policy=policy, consents=consents)
    first = guard.add_noise(request, _mean(COHORT), [100.0, 200.0], sensitivity=1.0)
    other = _mean(COHORT - {"ent-5"} | {"ent-6", "ent-7", "ent-8", "ent-9", "ent-10"})
    second = guard.add_noise(request, other, [100.0, 200.0], sensitivity=1.0)
    assert first != second and len(first) == 2
    third = _mean(COHORT | {f"new-{i}" for i in range(6)})
    with pytest.raises(PrivacyBudgetExhaustedError, match="c-a"):
        guard.check_budget(request, third)  # before anything is decrypted
    with pytest.raises(PrivacyBudgetExhaustedError, match="c-a") as info:
        guard.add_noise(request, third, [100.0, 200.0], sensitivity=1.0)
    assert info.value.consent_id == "c-a"
    # nothing was charged by the refused release; c-c was charged its default budget
    only_c = _request("j", policy=policy, consents=consents[2:])
    guard.add_noise(only_c, third, [1.0, 2.0], sensitivity=1.0)
    with pytest.raises(PrivacyBudgetExhaustedError, match="c-c"):
        guard.add_noise(
            only_c, _mean(COHORT | {"z1", "z2", "z3", "z4", "z5"}), [1.0], sensitivity=1.0
        )


def test_a_repeated_question_gets_the_same_noisy_answer_and_costs_nothing(guard) -> None:
    policy = ReleasePolicy(dp=DpPolicy(DpMechanism.LAPLACE, epsilon=1.0, group_budget=2.0))
    consents = (ConsentTerms("c-a", "ent-0", epsilon_budget=2.0),)
    answers = {
        guard.add_noise(
            _request(f"j{i}", requester=f"sub-brain-{i}", policy=policy, consents=consents),
            _mean(COHORT),
            [100.0],
            sensitivity=1.0,
        )
        for i in range(20)
    }
    assert len(answers) == 1  # averaging twenty answers gains nothing
    with pytest.raises(ReleaseDescriptionError, match="another number of values"):
        guard.add_noise(_request("j", policy=policy), _mean(COHORT), [1.0, 2.0], sensitivity=1.0)
    # one charge so far: a second question is still within every budget
    second = _mean(COHORT | {f"new-{i}" for i in range(5)})
    guard.add_noise(_request("k", policy=policy, consents=consents), second, [1.0], sensitivity=1.0)
    # the group's own budget is charged even when no consent sets one
    group_only = _request("g", policy=policy)
    third = _mean(COHORT | {f"more-{i}" for i in range(5)})
    with pytest.raises(PrivacyBudgetExhaustedError, match="industry:battery has 0"):
        guard.add_noise(group_only, third, [1.0], sensitivity=1.0)


def test_laplace_noise_has_the_calibrated_scale(guard) -> None:
    policy = ReleasePolicy(dp=DpPolicy(DpMechanism.LAPLACE, epsilon=1.0))
    request = _request("j", policy=policy)
    noisy = np.array(guard.add_noise(request, _mean(COHORT), [0.0] * 4000, sensitivity=2.0))
    # Laplace(b = sensitivity/epsilon = 2): mean |noise| is b
    assert 1.8 < np.mean(np.abs(noisy)) < 2.2


def test_without_dp_terms_values_pass_unchanged(guard) -> None:
    assert guard.add_noise(_request("j"), _mean(COHORT), [1.5, 2.5], sensitivity=1.0) == (1.5, 2.5)


@pytest.mark.parametrize(
    ("counts", "suppressed"),
    [
        ((12, 0, 3, 9, 7), (2, 4)),  # one small bin: the next smallest goes too
        ((12, 1, 3, 9), (1, 2)),
        ((12, 0, 6, 9), ()),  # an empty bin says nothing about anyone
        ((2, 0, 0), (0,)),  # nothing left to hide it with
    ],
    ids=["secondary", "two-small", "none", "alone"],
)
def test_histogram_bins_under_the_minimum_are_suppressed(counts, suppressed) -> None:
    out = ReleaseGuard.suppress_small_bins(_request("h"), counts)
    assert tuple(i for i, v in enumerate(out) if v is None) == suppressed
    assert all(v == c for v, c in zip(out, counts, strict=True) if v is not None)


def test_the_requester_gets_the_left_out_count_and_the_row_keeps_who_and_why(guard) -> None:
    left = {"ent-9": "contributor 'ent-9': a value exceeds the bound"}
    approval = guard.approve(_request("j1"), _mean(COHORT), left_out=left)
    assert approval.left_out == 1 and "ent-9" not in repr(approval)
    stored = guard.approval("j1")
    assert stored is not None and stored.left_out == 1
    with guard._db.read() as session:
        row = session.get(ReleaseRow, "j1")
        assert row is not None
        assert json.loads(row.left_out_json) == [["ent-9", left["ent-9"]]]
        assert json.loads(row.query_json)["subject"]["dataset"] == "energy"
        assert row.adversary == GROUP


def test_the_he_custodian_refuses_a_dominance_policy(custodian) -> None:
    """HE sums cannot be checked for dominance: the release never reaches decryption."""
    job = custodian.create_job(HeJobSpec("he-dominance", HeOperation.SUM))
    aggregator = HeAggregator(job)
    for name in sorted(COHORT):
        aggregator.add(HeContributor(job).encrypt(name, [10.0]))
    policy = ReleasePolicy(dominance=(DominanceRule(1, 85),))
    with pytest.raises(EngineChoiceError, match="dominance"):
        custodian.finish_job(_request("he-dominance", policy=policy), aggregator.aggregate())
    assert custodian._guard.approval("he-dominance") is None


def test_the_he_custodian_suppresses_small_histogram_bins(custodian) -> None:
    spec = HeJobSpec("he-hist", HeOperation.HISTOGRAM, bins=(0.0, 10.0, 20.0, 30.0))
    job = custodian.create_job(spec)
    aggregator = HeAggregator(job)
    values = {f"ent-{i}": [5.0] for i in range(6)} | {"ent-6": [15.0], "ent-7": [25.0] * 9}
    for name, records in values.items():
        aggregator.add(HeContributor(job).encrypt(name, records))
    result = custodian.finish_job(_request("he-hist"), aggregator.aggregate())
    # one contributor's bin is suppressed, and the next smallest so 16 − 9 cannot restore it
    assert np.isnan(result.values[0]) and np.isnan(result.values[1])
    assert result.values[2] == 9.0


def test_two_replicas_share_one_history(guard) -> None:
    """Each replica caches the reduced form; a write by the other is never missed."""
    replica = ReleaseGuard(guard._db)
    guard.approve(_request("j1"), _mean(COHORT))
    replica.approve(_request("j2"), _mean(COHORT | {f"n{i}" for i in range(5)}))
    # alone with j1 this is safe; with the replica's j2 it exposes ent-0
    without_ent_0 = (COHORT - {"ent-0"}) | {f"n{i}" for i in range(5)}
    with pytest.raises(LinearDisclosureError):
        guard.approve(_request("j3"), _mean(without_ent_0))
    fresh = ReleaseGuard(guard._db)
    fresh.approve(_request("j4", group="another"), _mean(COHORT))
    fresh.approve(_request("j5", group="another"), _mean(without_ent_0))
