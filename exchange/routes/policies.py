"""``/v1/policies`` and ``/v1/decisions``: the security officers' four-eyes policy duties.

Thin: who may call each route is decided by the active policy
(:data:`exchange.access.ROUTES`); each step's body carries the officer's
signed duty (``{"duty": {"statement", "signature"}}``; a proposal: the pack's
fields and ``duty``), which :mod:`policies` verifies against the officer's
ledgered key and requires to be signed by the grant's identity. The domain
rules (only officers change policy, the proposer neither approves nor
activates, no version may lock the officers out) stay in :mod:`policies`. A
proposal is re-checked here in full, its Rego in the sandbox, whatever the
client checked before sending it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path

from core.clock import format_rfc3339, parse_rfc3339
from exchange.access import Grant
from exchange.auth import current_runtime, get_runtime, granted
from exchange.identities import IdentityError
from exchange.loop_reads import run_read
from exchange.routes._paging import CURSOR, LIMIT, Page, paginate
from exchange.runtime import Runtime
from exchange.schemas.policies import (
    DecisionCreate,
    DecisionPublic,
    DiffCreate,
    DiffPublic,
    DiffRowPublic,
    PolicyProposal,
    PolicySourcePublic,
    PolicyStepCreate,
    PolicyVersionPublic,
    StoredTestReportPublic,
    TestReportPublic,
)
from policies import Officer, PolicyInputError, PolicySource, SampleRequest, Subject

__all__ = ["router"]

router = APIRouter(tags=["policies"])

_PROBLEM: dict[str, dict[str, Any]] = {"application/problem+json": {}}
_WHY = {
    400: "invalid request (the body or a parameter)",
    401: "not authenticated (or an administrator without the client certificate)",
    403: "the active policy, a domain rule (four eyes), or the signed duty's check refuses "
    "this caller",
    404: "no policy version with that hash or prefix",
    409: "the version's state does not allow this step, it would lock out the officers, or "
    "the active policy row disagrees with the ledger",
    413: "the request body is too large",
    422: "the policy content (or the subject, or a sample request) is invalid, or its sandbox "
    "run failed",
}

REF = Path(
    ...,
    max_length=200,
    description="version hash, or a prefix of 8+ hex digits (anything else: 404)",
)


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": _WHY[status], "content": _PROBLEM} for status in statuses}


def _officer(grant: Grant) -> Officer:
    """The calling identity as :mod:`policies` needs it (it checks the role itself, and
    that the caller signed the duty)."""
    return Officer(grant.identity.name, grant.identity.role.value)


@router.get(
    "/v1/policies", response_model=Page[PolicyVersionPublic], responses=_problems(400, 401, 403)
)
def list_versions(
    cursor: str | None = CURSOR,
    limit: int = LIMIT,
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
    _grant: Grant = Depends(granted),  # noqa: B008
) -> Page[PolicyVersionPublic]:
    """Every stored version, oldest proposal first."""
    versions = sorted(
        runtime.policy.versions(), key=lambda v: (format_rfc3339(v.proposed_at), v.hash)
    )
    items, next_cursor = paginate(
        versions,
        key=lambda v: f"{format_rfc3339(v.proposed_at)} {v.hash}",
        cursor=cursor,
        limit=limit,
    )
    return Page[PolicyVersionPublic](
        items=[PolicyVersionPublic.from_version(v) for v in items], next_cursor=next_cursor
    )


@router.post(
    "/v1/policies",
    status_code=201,
    response_model=PolicyVersionPublic,
    responses=_problems(400, 401, 403, 409, 413, 422),
)
def propose(
    upload: PolicyProposal,
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
    grant: Grant = Depends(granted),  # noqa: B008
) -> PolicyVersionPublic:
    """Propose a policy pack (its canonical form) with the officer's signed
    ``policy.propose`` on its hash; checked in full, its Rego in the sandbox."""
    source = PolicySource.from_dict(upload.to_source_dict())
    version = runtime.policy.propose(source, duty=upload.duty.to_signed(), caller=_officer(grant))
    return PolicyVersionPublic.from_version(version)


@router.get(
    "/v1/policies/{ref}",
    response_model=PolicyVersionPublic,
    responses=_problems(400, 401, 403, 404),
)
def show(
    ref: str = REF,
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
    _grant: Grant = Depends(granted),  # noqa: B008
) -> PolicyVersionPublic:
    """One version by its hash or a prefix of 8+ hex digits."""
    return PolicyVersionPublic.from_version(runtime.policy.get(ref))


@router.get(
    "/v1/policies/{ref}/source",
    response_model=PolicySourcePublic,
    responses=_problems(400, 401, 403, 404),
)
def source(
    ref: str = REF,
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
    _grant: Grant = Depends(granted),  # noqa: B008
) -> PolicySourcePublic:
    """One version's content: its Casbin model and lines, Rego modules, data and sample
    requests (what ``POST /v1/policies`` stored; its hash is the version's)."""
    content = runtime.policy.source(ref)
    return PolicySourcePublic.model_validate({**content.to_dict(), "hash": content.hash})


@router.get(
    "/v1/policies/{ref}/report",
    response_model=StoredTestReportPublic,
    responses=_problems(400, 401, 403, 404),
)
def report(
    ref: str = REF,
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
    _grant: Grant = Depends(granted),  # noqa: B008
) -> StoredTestReportPublic:
    """One version's last test report (``report`` null if never tested), who ran it, when."""
    version = runtime.policy.get(ref)
    stored = runtime.policy.test_report(version.hash)
    return StoredTestReportPublic(
        hash=version.hash,
        tested_by=version.tested_by,
        tested_at=format_rfc3339(version.tested_at) if version.tested_at else None,
        report=TestReportPublic.model_validate(stored) if stored is not None else None,
    )


@router.post(
    "/v1/policies/{ref}/test",
    response_model=TestReportPublic,
    responses=_problems(400, 401, 403, 404, 409, 422),
)
def test(
    body: PolicyStepCreate,
    ref: str = REF,
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
    grant: Grant = Depends(granted),  # noqa: B008
) -> TestReportPublic:
    """Run the version's Rego ``test_`` rules and sample requests in the sandbox, with coverage.

    The body is the officer's signed ``policy.test`` on the full version hash. A
    report whose ``passed`` is false is still a 200: the run happened and is recorded.
    """
    report = runtime.policy.test(ref, duty=body.duty.to_signed(), caller=_officer(grant))
    return TestReportPublic.from_report(report)


@router.post(
    "/v1/policies/{ref}/diff",
    response_model=DiffPublic,
    responses=_problems(400, 401, 403, 404, 413, 422),
)
def diff(
    body: DiffCreate | None = None,
    ref: str = REF,
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
    grant: Grant = Depends(granted),  # noqa: B008
) -> DiffPublic:
    """Dry run: decide sample requests under the candidate and the active version.

    Without ``requests`` the candidate's own sample requests are used.
    """
    officer = _officer(grant)
    point = runtime.policy
    if body is None or body.requests is None:
        rows = point.diff(ref, officer=officer)
    else:
        samples = [_sample(i, raw) for i, raw in enumerate(body.requests)]
        rows = point.diff(
            ref,
            officer=officer,
            requests=[s.request for s in samples],
            names=[s.name for s in samples],
        )
    return DiffPublic(rows=[DiffRowPublic.from_row(row) for row in rows])


def _sample(index: int, raw: dict[str, Any]) -> SampleRequest:
    try:
        return SampleRequest.from_dict(raw)
    except (ValueError, TypeError) as exc:
        raise PolicyInputError(f"requests[{index}]: {exc}") from exc


@router.post(
    "/v1/policies/{ref}/approve",
    response_model=PolicyVersionPublic,
    responses=_problems(400, 401, 403, 404, 409, 422),
)
def approve(
    body: PolicyStepCreate,
    ref: str = REF,
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
    grant: Grant = Depends(granted),  # noqa: B008
) -> PolicyVersionPublic:
    """Approve a tested version: a second security officer, not its proposer (the body:
    their signed ``policy.approve`` on the full version hash)."""
    version = runtime.policy.approve(ref, duty=body.duty.to_signed(), caller=_officer(grant))
    return PolicyVersionPublic.from_version(version)


@router.post(
    "/v1/policies/{ref}/activate",
    response_model=PolicyVersionPublic,
    responses=_problems(400, 401, 403, 404, 409, 422),
)
def activate(
    body: PolicyStepCreate,
    ref: str = REF,
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
    grant: Grant = Depends(granted),  # noqa: B008
) -> PolicyVersionPublic:
    """Activate an approved version (an earlier one: a rollback); not by its proposer (the
    body: their signed ``policy.activate`` on the full version hash)."""
    version = runtime.policy.activate(ref, duty=body.duty.to_signed(), caller=_officer(grant))
    return PolicyVersionPublic.from_version(version)


@router.post(
    "/v1/decisions", response_model=DecisionPublic, responses=_problems(400, 401, 403, 413, 422)
)
async def decide(
    body: DecisionCreate,
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
    _grant: Grant = Depends(granted),  # noqa: B008
) -> DecisionPublic:
    """Ask the active policy about a registered identity's request (a deny is still a 200).

    ``at`` asks what the policy would decide then; decisions the exchange records
    always use its own clock.
    """
    try:
        when = parse_rfc3339(body.at) if body.at is not None else None
    except ValueError as exc:
        raise PolicyInputError(f"at: {exc}") from exc
    # reads only (the subject, the active version): on the event loop with SQLite
    return await run_read(runtime, _decide, runtime, body, when)


def _decide(runtime: Runtime, body: DecisionCreate, when: datetime | None) -> DecisionPublic:
    try:
        identity = runtime.identities.get(body.subject)
    except IdentityError as exc:
        raise PolicyInputError(f"subject: {exc}") from exc
    who = Subject(identity.name, identity.role.value, identity.industry)
    decision = runtime.policy.decide(who, body.action, body.resource, body.context, at=when)
    return DecisionPublic.from_decision(decision)
