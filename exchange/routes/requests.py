"""``/v1/requests``, ``/v1/jobs`` and ``/v1/results``: compute requests, their jobs, results.

Thin: the pipeline (:mod:`exchange.pipeline`) decides, records and computes;
these routes parse, call it with the caller's grant and shape the answers of
``docs/pipeline.md``. ``own`` scope (sub-brains) sees only its own jobs;
another's answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from exchange.access import Grant
from exchange.auth import current_runtime, granted
from exchange.pipeline.errors import InvalidComputeRequestError
from exchange.pipeline.request import ComputeRequest, InvalidRequestError
from exchange.routes._paging import CURSOR, LIMIT, cursor_after, cursor_for
from exchange.runtime import Runtime

__all__ = ["router"]

router = APIRouter(tags=["pipeline"])

_UNAUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown, expired or revoked one"}
}
_DENIED: dict[int | str, dict[str, Any]] = {
    403: {"description": "the active policy does not allow this (the detail names the rule)"}
}


def _job_id_path() -> Any:
    return Path(..., min_length=1, max_length=40, description="job_ + 32 hex digits")


@router.post(
    "/v1/requests",
    status_code=201,
    responses={
        **_UNAUTHENTICATED,
        403: {"description": "refused: policy, consent or the minimum cohort (the reason named)"},
        404: {"description": "a named dataset is not registered"},
        422: {"description": "a malformed request, or an engine that cannot compute it"},
        501: {"description": "the engine is not available on this exchange"},
    },
)
async def submit_request(
    body: dict[str, Any] = Body(..., description="a ComputeRequest (docs/pipeline.md)"),  # noqa: B008
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> JSONResponse:
    """Authorize a compute request: policy, consents, the decision on the ledger, the job.

    Raises:
        InvalidComputeRequestError: a malformed request (422).
        RequestRefusedError: policy, consent or the cohort refused it (403).
        EngineUnavailableError: the engine is not installed (501).
    """
    pipeline = runtime.pipeline
    try:
        request = ComputeRequest.from_dict(body)
    except InvalidRequestError as exc:
        if grant.pending is not None:  # the allowed call is on the ledger all the same
            await pipeline.record_alone_async(grant.pending)
        raise InvalidComputeRequestError(str(exc)) from exc
    view = await pipeline.submit_async(grant.identity, request, authz=grant.pending)
    return JSONResponse(
        view.to_dict(), status_code=201, headers={"Location": f"/v1/jobs/{view.job_id}"}
    )


@router.post(
    "/v1/requests/preview",
    responses={
        **_UNAUTHENTICATED,
        **_DENIED,
        404: {"description": "a named dataset is not registered"},
        422: {"description": "a malformed request, or an engine that cannot compute it"},
        501: {"description": "the engine is not available on this exchange"},
    },
)
async def preview_request(
    body: dict[str, Any] = Body(..., description="a ComputeRequest (docs/pipeline.md)"),  # noqa: B008
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> dict[str, Any]:
    """What ``POST /v1/requests`` would decide for this request now, and why; nothing recorded.

    The same steps as a submission ahead of its decision (the data, the engine, the
    consent check, the policy at the cohort the consents give, the minimum cohort):
    ``allowed``, or the submission's refusal (``reason``, ``detail``), with the policy
    decisions, the owners covered and left out, and the cohort against its minimum.
    Nothing reaches the ledger, the consents' use counts or any agent.

    Raises:
        InvalidComputeRequestError: a malformed request (422).
        UnknownDatasetError: a named dataset is not registered (404).
        EngineUnavailableError: the engine is not installed (501).
    """
    try:
        request = ComputeRequest.from_dict(body)
    except InvalidRequestError as exc:
        raise InvalidComputeRequestError(str(exc)) from exc
    preview = await run_in_threadpool(runtime.pipeline.preview, grant.identity, request)
    return preview.to_dict()


@router.get("/v1/jobs", responses={**_UNAUTHENTICATED, **_DENIED})
async def list_jobs(
    cursor: str | None = CURSOR,
    limit: int = LIMIT,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> dict[str, Any]:
    """Job views by id: the caller's own (own scope) or every job (all scope).

    Raises:
        CursorError: a cursor this exchange did not hand out (400).
    """
    requester = grant.identity.name if grant.own_only else None
    after = cursor_after(cursor)
    views = await run_in_threadpool(
        runtime.pipeline.jobs.views, requester=requester, after=after, limit=limit + 1
    )
    page = views[:limit]
    more = len(views) > limit
    return {
        "items": [v.to_dict() for v in page],
        "next_cursor": cursor_for(page[-1].job_id) if more and page else None,
    }


@router.get(
    "/v1/jobs/{job_id}",
    responses={**_UNAUTHENTICATED, **_DENIED, 404: {"description": "no such job of the caller's"}},
)
async def show_job(
    job_id: str = _job_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> dict[str, Any]:
    """One job view.

    Raises:
        JobNotFoundError: no such job, or (own scope) another's (404).
    """
    view = await run_in_threadpool(
        runtime.pipeline.view, grant.identity, job_id, own_only=grant.own_only
    )
    return view.to_dict()


@router.post(
    "/v1/jobs/{job_id}/cancel",
    responses={
        **_UNAUTHENTICATED,
        **_DENIED,
        404: {"description": "no such job of the caller's"},
        409: {"description": "the job is already terminal"},
    },
)
async def cancel_job(
    job_id: str = _job_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> dict[str, Any]:
    """Cancel the caller's own job.

    Raises:
        JobNotFoundError: no such job of the caller's (404).
        JobStateError: already terminal (409).
    """
    view = await run_in_threadpool(runtime.pipeline.cancel, grant.identity, job_id)
    return view.to_dict()


@router.get(
    "/v1/results/{job_id}",
    responses={
        **_UNAUTHENTICATED,
        403: {"description": "neither the job's requester nor one of its participants"},
        404: {"description": "no such job"},
        409: {"description": "not released (the detail names the state)"},
    },
)
async def show_result(
    job_id: str = _job_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> dict[str, Any]:
    """The requester's result, or a participant's own share of it.

    Raises:
        ForbiddenError: neither requester nor participant (403).
        ResultNotReadyError: not released (409).
    """
    return await run_in_threadpool(runtime.pipeline.result, grant.identity, job_id)
