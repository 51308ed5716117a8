"""``POST /v1/requests/preview``: what a submission would be decided now, and why.

Each scenario previews a request and then submits the very same body: the preview
must never disagree with the submission (allowed ⇔ 201; refused ⇔ 403 with the same
reason and detail; a 404/422 the same status). A preview records nothing: no ledger
entry, no consent use, no job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from consent import Classification, Operation
from exchange.error_table import RemoteRefusalError
from tests.exchange.pipeline.conftest import World

NAMES = ("e1", "e2", "e3", "e4")


def _datasets(names: tuple[str, ...] = NAMES) -> list[str]:
    return [f"{n}.energy" for n in names]


def _all_consent(world: World) -> None:
    for name in NAMES:
        world.enterprise(name)
        world.consent(name)


def _one_without_consent(world: World) -> None:
    for name in NAMES:
        world.enterprise(name)
        if name != "e4":
            world.consent(name)


def _core_data(world: World) -> None:
    for name in NAMES:
        world.enterprise(name, classification=Classification.CORE)
        world.consent(name, operations=(Operation.VARIANCE,))


def _demanding_consent(world: World) -> None:
    for name in NAMES:
        world.enterprise(name)
        world.consent(name, min_cohort=5 if name == "e1" else 1)


@dataclass(frozen=True)
class Case:
    """A world, a request, and what the preview (and so the submission) must say."""

    setup: Callable[[World], None]
    request: dict[str, Any]
    allowed: bool
    reason: str | None = None
    detail_has: str = ""
    status: int | None = None
    """A 4xx both answer instead of a preview."""


CASES = {
    "allowed": Case(_all_consent, {"datasets": _datasets()}, True),
    "below-the-cohort-minimum": Case(
        _all_consent,
        {"datasets": _datasets(("e1", "e2"))},
        False,
        "cohort",
        "cohort 2 is below the minimum of 3",
    ),
    "left-out-for-want-of-consent": Case(
        _one_without_consent, {"datasets": _datasets()}, True, None, ""
    ),
    "denied-by-policy": Case(
        _core_data,
        {"datasets": _datasets(), "operation": "variance"},
        False,
        "policy",
        "operation variance is not allowed on core data",
    ),
    "a-consent-demanding-more": Case(_demanding_consent, {"datasets": _datasets()}, True),
    "by-industry": Case(_all_consent, {"industry": "lithium-battery"}, True),
    "industry-without-the-field": Case(
        _all_consent,
        {"industry": "lithium-battery", "fields": ["water_m3"]},
        False,
        "cohort",
        "holds water_m3",
    ),
    "unknown-dataset": Case(_all_consent, {"datasets": ["nope.energy"]}, False, status=404),
    "malformed": Case(
        _all_consent, {"datasets": _datasets(), "operation": "guess"}, False, status=422
    ),
}


def _body(request: dict[str, Any]) -> dict[str, Any]:
    return {"purpose": "benchmarking", "operation": "mean", "fields": ["energy_kwh"], **request}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_preview_agrees_with_the_submission(world: World, case: Case) -> None:
    case.setup(world)
    body = _body(case.request)
    runtime = world.runtime
    size = runtime.ledger.size()
    uses = _use_counts(world)
    with world.client("sb-lb") as client:
        if case.status is not None:
            with pytest.raises(RemoteRefusalError) as previewed:
                client.post("/v1/requests/preview", body)
            with pytest.raises(RemoteRefusalError) as submitted:
                client.post("/v1/requests", body)
            assert previewed.value.status == submitted.value.status == case.status
            assert str(previewed.value) == str(submitted.value)
            return
        preview = client.post("/v1/requests/preview", body)
        assert runtime.ledger.size() == size, "a preview records nothing"
        assert _use_counts(world) == uses, "a preview uses no consent"
        assert client.get("/v1/jobs")["items"] == []
        assert preview["allowed"] is case.allowed
        assert preview["reason"] == case.reason
        if case.allowed:
            view = client.post("/v1/requests", body)
            assert view["state"] in ("authorized", "collecting")
            assert view["min_cohort"] == preview["min_cohort"]
            assert view["participants"] == preview["cohort"] == len(preview["covered"])
        else:
            with pytest.raises(RemoteRefusalError) as refused:
                client.post("/v1/requests", body)
            assert refused.value.status == 403
            assert str(refused.value) == preview["detail"]
            assert case.detail_has in preview["detail"]


def _use_counts(world: World) -> dict[str, int]:
    with world.client("aud") as client:
        items = client.get("/v1/consents", limit=100)["items"]
    return {c["consent_id"]: c["use_count"] for c in items}


def test_the_preview_says_who_is_covered_and_who_is_left_out(world: World) -> None:
    _one_without_consent(world)
    with world.client("sb-lb") as client:
        preview = client.post("/v1/requests/preview", _body({"datasets": _datasets()}))
    assert [c["owner"] for c in preview["covered"]] == ["e1", "e2", "e3"]
    assert preview["covered"][0]["dataset"] == "e1.energy"
    assert preview["covered"][0]["consent_id"] == world.consents["e1"]
    [left] = preview["left_out"]
    assert left["owner"] == "e4"
    assert left["dataset"] == "e4.energy"
    assert left["reason"].startswith("no_consent")
    assert preview["cohort"] == 3
    assert preview["min_cohort"] == preview["policy_min_cohort"] == 3
    assert preview["engine"] == "he"
    assert preview["classification"] == "general"
    [check] = preview["policy"]
    assert check["allow"] is True
    assert check["version"] == preview["policy_version"]


def test_a_consent_demanding_a_larger_cohort_is_left_out_and_named(world: World) -> None:
    _demanding_consent(world)
    with world.client("sb-lb") as client:
        preview = client.post("/v1/requests/preview", _body({"datasets": _datasets()}))
    assert preview["allowed"] is True
    [left] = preview["left_out"]
    assert left["owner"] == "e1"
    assert left["reason"].startswith("min_cohort")
    assert preview["cohort"] == 3


def test_the_policy_denial_names_its_rules(world: World) -> None:
    _core_data(world)
    with world.client("sb-lb") as client:
        preview = client.post(
            "/v1/requests/preview", _body({"datasets": _datasets(), "operation": "variance"})
        )
    [check] = preview["policy"]
    assert check["allow"] is False
    assert any("variance" in r for r in check["reasons"])
    assert preview["cohort"] == 4, "the cohort the consents give is shown all the same"


@pytest.mark.parametrize("who", ["e1", "aud", "ops"])
def test_only_a_requester_may_preview(world: World, who: str) -> None:
    _all_consent(world)
    with world.client(who) as client, pytest.raises(RemoteRefusalError) as refused:
        client.post("/v1/requests/preview", _body({"datasets": _datasets()}))
    assert refused.value.status in (401, 403)
    assert "request_submit" in str(refused.value) or refused.value.status == 401


def test_an_owner_left_out_for_the_cohort_is_not_said_to_be_out_for_another_consent(
    world: World,
) -> None:
    """e1 holds a consent that covers the request but demands a cohort of 5, and another
    it revoked: it is out for the cohort, in the preview and in the decision alike."""
    _demanding_consent(world)
    world.consent("e1")
    world.revoke("e1")  # its newest consent, revoked; the demanding one still covers
    body = _body({"datasets": _datasets()})
    with world.client("sb-lb") as client:
        preview = client.post("/v1/requests/preview", body)
        [left] = preview["left_out"]
        assert left["owner"] == "e1"
        assert left["reason"].startswith("min_cohort")
        view = client.post("/v1/requests", body)
    decision = world.runtime.ledger.entries(view["decision_index"], 1)[0].payload
    left_out = decision["left_out"]
    assert isinstance(left_out, list)
    assert [str(o["reason"]).split(":")[0] for o in left_out if isinstance(o, dict)] == [
        "min_cohort"
    ]
