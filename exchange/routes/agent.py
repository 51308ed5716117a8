"""``/v1/agent``: what an enterprise's data agent is asked, and what it answers, signed.

Thin: :class:`exchange.pipeline.answers.AnswerDesk` verifies every statement
(the enterprise's registered key, this job, this round, a participant, the
payload's hash). ``GET /v1/agent/tasks?wait=S`` is a long poll: it answers as
soon as a task exists (a job opening or a round advancing in this process
wakes it), looking again every half second for other workers' changes.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from exchange.access import Grant
from exchange.auth import current_runtime, granted
from exchange.error_table import ForbiddenError
from exchange.pipeline.request import EngineName
from exchange.runtime import Runtime

__all__ = ["POLL_INTERVAL", "router"]

router = APIRouter(tags=["agent"])

POLL_INTERVAL = 0.5
"""Seconds between looks at the database while a long poll waits (other workers' jobs)."""

_UNAUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown, expired or revoked one"}
}
_ANSWER: dict[int | str, dict[str, Any]] = {
    **_UNAUTHENTICATED,
    200: {"description": "the same statement again: ignored"},
    403: {
        "description": "not signed by the enterprise's registered key, not a participant, "
        "or a statement for another job, round or enterprise"
    },
    404: {"description": "no such job"},
    409: {"description": "another statement already answered this round"},
    410: {"description": "the job no longer collects"},
    422: {"description": "a payload of the wrong shape"},
}


def _job_id_path() -> Any:
    return Path(..., min_length=1, max_length=40, description="job_ + 32 hex digits")


@router.get("/v1/agent/tasks", responses=_UNAUTHENTICATED)
async def agent_tasks(
    wait: float = Query(0.0, ge=0, le=30, description="seconds to wait for a task"),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> dict[str, Any]:
    """The caller's open tasks, waiting up to ``wait`` seconds for one to appear."""
    pipeline = runtime.pipeline
    enterprise = grant.identity.name
    until = time.monotonic() + wait
    while True:
        generation = pipeline.signal.generation
        tasks = await run_in_threadpool(pipeline.desk.tasks, enterprise)
        left = until - time.monotonic()
        if tasks or left <= 0:
            return {"tasks": tasks}
        await pipeline.signal.wait(min(POLL_INTERVAL, left), since=generation)


@router.get(
    "/v1/agent/jobs/{job_id}/he-context",
    response_class=Response,
    responses={
        **_UNAUTHENTICATED,
        200: {"content": {"application/octet-stream": {}}, "description": "TenSEAL context"},
        403: {"description": "not a participant of the job"},
        404: {"description": "no such HE job"},
    },
)
async def he_context(
    job_id: str = _job_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> Response:
    """The HE job's public TenSEAL context (its SHA-256 is the task's ``context_sha256``).

    Raises:
        JobNotFoundError: no such job (404).
        ForbiddenError: the caller is not a participant, or the job is not an HE job (403).
    """

    def read() -> bytes:
        pipeline = runtime.pipeline
        job = pipeline.jobs.get(job_id)
        if job.decision.participant(grant.identity.name) is None:
            raise ForbiddenError(f"{grant.identity.name} is not a participant of {job_id}")
        if job.decision.engine is not EngineName.HE:
            raise ForbiddenError(f"{job_id} is not an HE job")
        from exchange.pipeline.he_job import HeEngineJob

        engine = pipeline.engine(EngineName.HE)
        assert isinstance(engine, HeEngineJob)
        return engine.public_context(job_id)

    content = await run_in_threadpool(read)
    return Response(content, media_type="application/octet-stream")


@router.post("/v1/agent/jobs/{job_id}/contributions", status_code=201, responses=_ANSWER)
async def contribute(
    body: dict[str, Any] = Body(..., description="{statement, signature, payload}"),  # noqa: B008
    job_id: str = _job_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> JSONResponse:
    """Contribute one round's payload with the enterprise's signed statement.

    Raises:
        StatementRefusedError: not authentic or not for this job/round/caller (403).
        AnswerConflictError: another statement answered this round (409).
        NotCollectingError: the job no longer collects (410).
        InvalidPayloadError: a payload of the wrong shape (422).
    """
    new = await run_in_threadpool(
        runtime.pipeline.desk.contribute, grant.identity.name, job_id, body
    )
    return _answered(job_id, new)


@router.post("/v1/agent/jobs/{job_id}/refusals", status_code=201, responses=_ANSWER)
async def refuse(
    body: dict[str, Any] = Body(..., description="{statement, signature}"),  # noqa: B008
    job_id: str = _job_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> JSONResponse:
    """Refuse to take part, with a reason, signed (``pipeline.refusal``).

    Raises:
        StatementRefusedError: not authentic or not for this job/round/caller (403).
        AnswerConflictError: another statement answered this round (409).
        NotCollectingError: the job no longer collects (410).
    """
    new = await run_in_threadpool(runtime.pipeline.desk.refuse, grant.identity.name, job_id, body)
    return _answered(job_id, new)


def _answered(job_id: str, new: bool) -> JSONResponse:
    return JSONResponse(
        {"job_id": job_id, "status": "accepted" if new else "ignored"},
        status_code=201 if new else 200,
    )
