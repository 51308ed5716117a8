"""The pipeline's typed ledger entries: what each refuses, and the members as written
(the round trips of every type are in tests/exchange/test_ledger_types.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from exchange.pipeline.entries import (
    ENTRY_TYPES,
    ContributionEntry,
    JobEntry,
    RefusalEntry,
    ResultEntry,
)
from exchange.pipeline.jobs import JobState, move_event

JOB = "job_" + "0" * 32
HEX = "ab" * 32
CONTRIBUTION: dict[str, Any] = {
    "job_id": JOB,
    "enterprise": "e1",
    "round": 1,
    "statement": {
        "kind": "ibx.contribution/v1",
        "job_id": JOB,
        "enterprise": "e1",
        "round": 1,
        "payload_sha256": HEX,
    },
    "signature": "c2ln",
}
REFUSAL: dict[str, Any] = {
    **CONTRIBUTION,
    "statement": {
        "kind": "ibx.refusal/v1",
        "job_id": JOB,
        "enterprise": "e1",
        "round": 1,
        "reason": "not today",
    },
}


@pytest.mark.parametrize(
    ("model", "payload"),
    [
        (ContributionEntry, REFUSAL),
        (RefusalEntry, CONTRIBUTION),
        (ContributionEntry, {**CONTRIBUTION, "round": 17}),
        (ContributionEntry, {**CONTRIBUTION, "job_id": "job_1"}),
        (ContributionEntry, {**CONTRIBUTION, "to": {"enterprise": ""}}),
        (ContributionEntry, {**CONTRIBUTION, "statement": {**CONTRIBUTION["statement"], "x": 1}}),
        (
            JobEntry,
            {
                "job_id": JOB,
                "requester": "r",
                "from": "collecting",
                "state": "done",
                "reason": None,
            },
        ),
        (JobEntry, {"job_id": JOB, "requester": "r", "state": "failed", "reason": None}),
        (
            ResultEntry,
            {
                "job_id": JOB,
                "requester": "r",
                "result_sha256": HEX,
                "cohort": -1,
                "contributors": [],
            },
        ),
    ],
    ids=[
        "refusal-as-contribution",
        "contribution-as-refusal",
        "round-17",
        "malformed-job-id",
        "handed-to-nobody",
        "statement-member-unknown",
        "unknown-state",
        "move-without-from",
        "negative-cohort",
    ],
)
def test_refused(model: type[Any], payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(payload)


def test_a_job_move_is_written_as_it_always_was() -> None:
    """``from`` (a Python keyword) by its alias; ``reason`` stated even when null."""
    event = move_event(JOB, "sb", "authorized", JobState.COLLECTING, None)
    assert dict(event.payload) == {
        "job_id": JOB,
        "requester": "sb",
        "from": "authorized",
        "state": "collecting",
        "reason": None,
    }
    assert JobEntry.model_validate(event.payload).from_ == "authorized"


def test_a_hand_off_is_stated_only_when_there_is_one() -> None:
    assert "to" not in ContributionEntry.model_validate(CONTRIBUTION).payload()
    handed = {**CONTRIBUTION, "to": {"enterprise": "e2"}}
    assert ContributionEntry.model_validate(handed).payload() == handed


def test_every_pipeline_type_once() -> None:
    types = [model.TYPE for model in ENTRY_TYPES]  # type: ignore[attr-defined]
    assert sorted(types) == sorted(set(types))
    assert {t.split(".")[0] for t in types} == {"pipeline"}
