"""Hand-built authorized jobs for the engine tests (what the pipeline core hands an engine)."""

from __future__ import annotations

import datetime as dt
import hashlib

import mpc
from consent import Operation, Purpose
from core.clock import utcnow
from core.keys import Ed25519Signer
from exchange.pipeline.engine import JobContext
from exchange.pipeline.request import ComputeRequest, EngineName, Parameters
from exchange.pipeline.statements import DecisionRecord, Participant, new_job_id


def job_context(
    operation: Operation,
    enterprises: list[str],
    policy: mpc.ReleasePolicy,
    *,
    engine: EngineName = EngineName.MPC,
    bound: float = 1000.0,
    field: str = "energy_kwh",
    dataset: str = "ds-energy",
    classification: str = "internal",
    industry: str = "steel",
    deadline_seconds: int = 120,
    participants: list[str] | None = None,
) -> JobContext:
    """An authorized job over ``enterprises`` (each with a consent), released under ``policy``."""
    request = ComputeRequest(
        purpose=Purpose.BENCHMARKING,
        operation=operation,
        fields=(field,),
        datasets=(dataset,),
        engine=engine,
        parameters=Parameters(bound=bound, deadline_seconds=deadline_seconds),
    )
    now = utcnow()
    job_id = new_job_id()
    decision = DecisionRecord(
        job_id=job_id,
        requester="sub-brain-steel",
        request=request,
        engine=engine,
        policy_version="0" * 64,
        participants=tuple(
            Participant(
                enterprise=e,
                dataset=dataset,
                consent_id=f"consent-{e}",
                receipt_sha256=hashlib.sha256(e.encode()).hexdigest(),
                min_cohort=2,
                public_key=Ed25519Signer.generate("consent").public_key,
            )
            for e in enterprises
        ),
        left_out=(),
        min_cohort=policy.min_cohort,
        decided_at=now,
        deadline=now + dt.timedelta(seconds=deadline_seconds),
    )
    release = mpc.ReleaseRequest(
        job_id,
        "sub-brain-steel",
        mpc.industry_group(industry),
        mpc.ReleaseSubject(dataset, (field,), (), classification),
        policy,
        tuple(mpc.ConsentTerms(f"consent-{e}", e) for e in enterprises),
    )
    return JobContext(
        decision=decision,
        release=release,
        classification=classification,
        participants=tuple(enterprises if participants is None else participants),
    )
