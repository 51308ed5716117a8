"""The pipeline's request model and the agents' signed statements: round trips and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import Operation, Purpose
from core.keys import Ed25519Signer
from exchange.pipeline import (
    CONTRIBUTION_KIND,
    ENGINE_OF,
    REFUSAL_KIND,
    AgentStatement,
    ComputeRequest,
    DecisionRecord,
    EngineName,
    InvalidRequestError,
    LeftOut,
    Parameters,
    Participant,
    Reduce,
    StatementError,
    new_job_id,
)

_FIELDS = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
_IDS = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,12}", fullmatch=True)


@st.composite
def requests(draw: st.DrawFn) -> ComputeRequest:
    operation = draw(st.sampled_from(list(Operation)))
    fields = draw(
        st.lists(_FIELDS, min_size=2, max_size=4, unique=True)
        if operation is Operation.REGRESSION
        else st.lists(_FIELDS, min_size=1, max_size=1)
    )
    by_industry = draw(st.booleans())
    engine = draw(st.sampled_from([EngineName.AUTO, ENGINE_OF[operation]]))
    bins = (
        tuple(sorted(draw(st.sets(st.integers(-100, 100), min_size=2, max_size=5))))
        if operation is Operation.HISTOGRAM
        else ()
    )
    params = Parameters(
        length=draw(st.integers(1, 4096)),
        reduce=draw(st.sampled_from([None, *Reduce])),
        bound=draw(st.floats(1e-3, 1e12)),
        bins=tuple(float(b) for b in bins),
        epsilon=draw(st.none() | st.floats(0.01, 10)),
        deadline_seconds=draw(st.integers(1, 3600)),
    )
    return ComputeRequest(
        purpose=draw(st.sampled_from(list(Purpose))),
        operation=operation,
        fields=tuple(fields),
        datasets=() if by_industry else tuple(draw(st.lists(_IDS, min_size=1, unique=True))),
        industry="lithium-battery" if by_industry else None,
        engine=engine,
        parameters=params,
    )


@settings(max_examples=200)
@given(requests())
def test_a_request_survives_its_json_form_and_keeps_its_hash(request: ComputeRequest) -> None:
    again = ComputeRequest.from_dict(request.to_dict())
    assert again == request
    assert again.digest() == request.digest()


def test_auto_picks_the_engine_from_the_operation_and_the_policy() -> None:
    mean = ComputeRequest(Purpose.BENCHMARKING, Operation.MEAN, ("energy",), datasets=("a",))
    assert mean.engine_for(dominance=False) is EngineName.HE
    assert mean.engine_for(dominance=True) is EngineName.MPC  # comparisons on hidden values
    rank = ComputeRequest(Purpose.BENCHMARKING, Operation.PERCENTILE_RANK, ("e",), datasets=("a",))
    assert rank.engine_for(dominance=False) is EngineName.MPC
    assert rank.reduce(EngineName.MPC) is Reduce.MEAN
    assert mean.reduce(EngineName.HE) is Reduce.NONE
    psi = ComputeRequest(
        Purpose.CHAIN_ANALYSIS, Operation.SET_INTERSECTION_SIZE, ("supplier",), datasets=("a",)
    )
    assert psi.engine_for(dominance=False) is EngineName.PSI


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"engine": "he", "operation": "percentile_rank"}, "cannot compute percentile_rank"),
        ({"engine": "psi"}, "cannot compute mean"),
        ({"industry": "lithium-battery"}, "not both or neither"),
        ({"datasets": []}, "not both or neither"),
        ({"fields": ["a", "b"]}, "exactly one field"),
        ({"operation": "regression"}, "target field and a feature"),
        ({"operation": "histogram"}, "bins"),
        ({"parameters": {"deadline_seconds": 7200}}, "deadline_seconds"),
        ({"parameters": {"bound": -1}}, "bound"),
        ({"parameters": {"colour": "red"}}, "unknown member"),
        ({"purpose": "marketing"}, "marketing"),
        ({"fields": ["energy; drop table"]}, "identifier"),
        ({"surprise": 1}, "unexpected"),
    ],
)
def test_a_malformed_request_is_refused_with_the_reason(
    changes: dict[str, object], message: str
) -> None:
    body: dict[str, object] = {
        "purpose": "benchmarking",
        "operation": "mean",
        "fields": ["energy"],
        "datasets": ["ds-1"],
    }
    body.update(changes)
    with pytest.raises(InvalidRequestError, match=message):
        ComputeRequest.from_dict(body)  # type: ignore[arg-type]


def _decision() -> DecisionRecord:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    return DecisionRecord(
        job_id=new_job_id(),
        requester="sb-li",
        request=ComputeRequest(Purpose.BENCHMARKING, Operation.MEAN, ("kwh",), datasets=("a",)),
        engine=EngineName.HE,
        policy_version="ab" * 32,
        participants=(
            Participant(
                "ent-a",
                "a",
                "cst_" + "0" * 32,
                "cd" * 32,
                3,
                Ed25519Signer.generate("consent").public_key,
            ),
        ),
        left_out=(LeftOut("ent-b", "no consent"),),
        min_cohort=3,
        decided_at=now,
        deadline=now + timedelta(seconds=120),
    )


def test_a_decision_survives_its_ledger_payload() -> None:
    decision = _decision()
    assert DecisionRecord.from_payload(decision.to_payload()) == decision
    assert decision.participant("ent-a") is not None
    assert decision.participant("ent-b") is None


def test_a_decision_whose_request_hash_does_not_match_is_refused() -> None:
    payload = _decision().to_payload()
    request = dict(payload["request"])  # type: ignore[arg-type]
    request["fields"] = ["another_field"]
    payload["request"] = request
    with pytest.raises(StatementError, match="request_sha256"):
        DecisionRecord.from_payload(payload)


def test_a_statement_verifies_only_under_its_signer_and_only_unchanged() -> None:
    signer, other = Ed25519Signer.generate("consent"), Ed25519Signer.generate("consent")
    statement = AgentStatement(CONTRIBUTION_KIND, new_job_id(), "ent-a", 1, payload_sha256="e" * 64)
    signature = statement.sign(signer)
    assert statement.verify(signer.public_key, signature)
    assert not statement.verify(other.public_key, signature)
    assert not statement.verify(signer.public_key, statement.sign(other))
    assert not statement.verify(signer.public_key, "not base64!")
    for changed in (
        AgentStatement(CONTRIBUTION_KIND, new_job_id(), "ent-a", 1, payload_sha256="e" * 64),
        AgentStatement(CONTRIBUTION_KIND, statement.job_id, "ent-b", 1, payload_sha256="e" * 64),
        AgentStatement(CONTRIBUTION_KIND, statement.job_id, "ent-a", 2, payload_sha256="e" * 64),
        AgentStatement(CONTRIBUTION_KIND, statement.job_id, "ent-a", 1, payload_sha256="f" * 64),
    ):
        assert not changed.verify(signer.public_key, signature)
    assert AgentStatement.from_dict(statement.to_dict()) == statement


def test_statements_of_the_wrong_shape_are_refused() -> None:
    job = new_job_id()
    with pytest.raises(StatementError):
        AgentStatement(CONTRIBUTION_KIND, job, "ent-a", 1)
    with pytest.raises(StatementError):
        AgentStatement(REFUSAL_KIND, job, "ent-a", 1)
    with pytest.raises(StatementError):
        AgentStatement("ibx.other/v1", job, "ent-a", 1, reason="x")
    with pytest.raises(StatementError):
        AgentStatement(REFUSAL_KIND, "job_x", "ent-a", 1, reason="x")
    with pytest.raises(StatementError):
        AgentStatement.from_dict({"kind": REFUSAL_KIND, "job_id": job, "round": 1, "reason": "x"})
