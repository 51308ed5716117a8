"""Every release-guard refusal, attempted."""

from __future__ import annotations

import numpy as np
import pytest

from mpc import (
    ConsentTerms,
    DominanceRule,
    DominanceVerdict,
    DpMechanism,
    DpPolicy,
    Engine,
    ReleaseGuard,
    ReleasePolicy,
    ReleaseRequest,
    choose_engine,
)
from mpc.errors import (
    CohortTooSmallError,
    DifferencingError,
    DominanceError,
    EngineChoiceError,
    IndividualValueError,
    PrivacyBudgetExhaustedError,
)

COHORT = frozenset(f"ent-{i}" for i in range(6))


def _request(job: str, *, policy: ReleasePolicy | None = None, consents=()) -> ReleaseRequest:
    return ReleaseRequest(job, "sub-brain", "mean energy", policy or ReleasePolicy(), consents)


def test_cohort_minimum_is_the_strictest_of_policy_and_consents(guard: ReleaseGuard) -> None:
    consents = (ConsentTerms("c-1", "ent-1", min_cohort=7),)
    with pytest.raises(CohortTooSmallError, match="minimum cohort is 7") as info:
        guard.approve(_request("j1", consents=consents), COHORT)
    assert (info.value.cohort, info.value.minimum) == (6, 7)
    with pytest.raises(CohortTooSmallError):
        guard.approve(_request("j2", policy=ReleasePolicy(min_cohort=10)), COHORT)
    assert guard.approve(_request("j3"), COHORT).min_cohort == 5


def test_policy_cannot_go_below_two() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        ReleasePolicy(min_cohort=1)


def test_refuses_per_enterprise_values(guard) -> None:
    with pytest.raises(IndividualValueError):
        guard.approve(_request("j1"), COHORT, per_contributor=True)
    with pytest.raises(IndividualValueError, match="ent-3"):
        guard.approve(_request("j2"), COHORT, result_labels=("total", "ent-3"))


def test_refuses_differencing(guard) -> None:
    guard.approve(_request("j1"), COHORT)
    with pytest.raises(DifferencingError, match="differs from release 'j1' by 1"):
        guard.approve(_request("j2"), COHORT | {"ent-new"})
    with pytest.raises(DifferencingError, match="by 1"):
        guard.approve(_request("j3"), COHORT - {"ent-0"})
    with pytest.raises(DifferencingError, match="already released"):
        guard.approve(_request("j1"), COHORT)
    # the same cohort again, or one that differs by at least the minimum, is fine
    guard.approve(_request("j4"), COHORT)
    guard.approve(_request("j5"), COHORT | {f"new-{i}" for i in range(5)})
    # another question or requester is not a differencing risk
    other = ReleaseRequest("j6", "sub-brain", "other question", ReleasePolicy())
    guard.approve(other, COHORT | {"ent-new"})


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
    policy = ReleasePolicy(dp=DpPolicy(mechanism, epsilon=0.5))
    consents = (
        ConsentTerms("c-a", "ent-0", epsilon_budget=1.0),
        ConsentTerms("c-b", "ent-1", epsilon_budget=2.0),
        ConsentTerms("c-c", "ent-2"),  # no budget: not charged
    )
    request = _request("j", policy=policy, consents=consents)
    first = guard.add_noise(request, [100.0, 200.0], sensitivity=1.0)
    second = guard.add_noise(request, [100.0, 200.0], sensitivity=1.0)
    assert first != second and len(first) == 2
    with pytest.raises(PrivacyBudgetExhaustedError, match="c-a"):
        guard.check_budget(request)  # before anything is decrypted
    with pytest.raises(PrivacyBudgetExhaustedError, match="c-a") as info:
        guard.add_noise(request, [100.0, 200.0], sensitivity=1.0)
    assert info.value.consent_id == "c-a"
    # nothing was charged by the refused release: c-b still has exactly 1.0 left
    only_b = _request(
        "j", policy=ReleasePolicy(dp=DpPolicy(mechanism, epsilon=1.0)), consents=consents[1:]
    )
    guard.add_noise(only_b, [1.0], sensitivity=1.0)
    with pytest.raises(PrivacyBudgetExhaustedError, match="c-b"):
        guard.add_noise(only_b, [1.0], sensitivity=1.0)


def test_laplace_noise_has_the_calibrated_scale(guard) -> None:
    policy = ReleasePolicy(dp=DpPolicy(DpMechanism.LAPLACE, epsilon=1.0))
    noisy = np.array(guard.add_noise(_request("j", policy=policy), [0.0] * 4000, sensitivity=2.0))
    # Laplace(b = sensitivity/epsilon = 2): mean |noise| is b
    assert 1.8 < np.mean(np.abs(noisy)) < 2.2


def test_without_dp_terms_values_pass_unchanged(guard) -> None:
    assert guard.add_noise(_request("j"), [1.5, 2.5], sensitivity=1.0) == (1.5, 2.5)
