"""``/v1/agent``: what an enterprise's data agent is asked, and what it answers, signed.

Thin: :class:`exchange.pipeline.answers.AnswerDesk` verifies every statement
(the enterprise's registered key, this job, this round, a participant, the
payload's hash). ``GET /v1/agent/tasks?wait=S`` is a long poll: it answers as
soon as a task exists (a job opening or a round advancing in this process
wakes it), looking again every half second for other workers' changes.

Per agent and task the protocol costs three requests: the task list (with
``since``, each task carries the evidence to check it:
:mod:`exchange.pipeline.evidence`), the HE context (a strong ``ETag``, its
SHA-256; ``If-None-Match`` answers ``304``) and the contribution (HE: the
binary form of :mod:`exchange.pipeline.frames`, or JSON).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from consent.errors import ConsentNotFoundError
from core.canonical import JsonValue
from core.clock import utcnow
from exchange.access import Grant
from exchange.auth import current_runtime, granted
from exchange.error_table import ForbiddenError
from exchange.errors import problem
from exchange.pipeline.engine import PayloadError
from exchange.pipeline.errors import InvalidPayloadError
from exchange.pipeline.evidence import LedgerHead
from exchange.pipeline.frames import (
    FINGERPRINT_HEADER,
    FRAMED_MEDIA_TYPE,
    SIGNATURE_HEADER,
    STATEMENT_HEADER,
    FramedContribution,
)
from exchange.pipeline.request import EngineName
from exchange.routes.ledger import concerns
from exchange.runtime import Runtime
from exchange.schemas.consents import ConsentDetail

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


_MAX_INDEX = (1 << 53) - 1

_CONTRIBUTION_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "{statement, signature, payload} (every engine)",
            }
        },
        FRAMED_MEDIA_TYPE: {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "HE only: the ciphertext chunks, each as its 8-byte big-endian "
                f"length and bytes; the statement in {STATEMENT_HEADER} (base64url of its "
                f"RFC 8785 bytes), its signature in {SIGNATURE_HEADER}, the key fingerprint "
                f"in {FINGERPRINT_HEADER}",
            }
        },
    },
}


def _job_id_path() -> Any:
    return Path(..., min_length=1, max_length=40, description="job_ + 32 hex digits")


def _since_query(description: str) -> Any:
    return Query(None, ge=0, le=_MAX_INDEX, description=description)


@router.get("/v1/agent/tasks", responses=_UNAUTHENTICATED)
async def agent_tasks(
    wait: float = Query(0.0, ge=0, le=30, description="seconds to wait for a task"),
    since: int | None = _since_query(
        "the tree size of the checkpoint the agent kept (0: none): the answer then carries "
        "the signed checkpoint with its consistency proof from that size, and each task "
        "the evidence to check it"
    ),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> dict[str, Any]:
    """The caller's open tasks, waiting up to ``wait`` seconds for one to appear."""
    pipeline = runtime.pipeline
    enterprise = grant.identity.name
    await run_in_threadpool(runtime.agent_contacts.touch, enterprise, now=utcnow())
    until = time.monotonic() + wait
    look = pipeline.desk.tasks  # the first look is always a full one
    while True:
        generation = pipeline.signal.generation
        tasks = await run_in_threadpool(look, enterprise)
        look = pipeline.desk.tasks_if_pending
        left = until - time.monotonic()
        if tasks and since is not None:
            return await run_in_threadpool(_with_evidence, runtime, enterprise, tasks, since)
        if tasks or left <= 0:
            return {"tasks": tasks}
        await pipeline.signal.wait(min(POLL_INTERVAL, left), since=generation)


def _with_evidence(
    runtime: Runtime, enterprise: str, tasks: list[dict[str, JsonValue]], since: int
) -> dict[str, Any]:
    """``tasks`` with the ledger head (from ``since``) and each task's evidence under it."""
    head = runtime.pipeline.desk.evidence.head(since)
    for task in tasks:
        material = task.get("material")
        handoff = material.get("contribution_index") if isinstance(material, dict) else None
        task["evidence"] = _task_evidence(
            runtime,
            enterprise,
            head,
            decision_index=_index(task.get("decision_index")),
            consent_id=str(task.get("consent_id")),
            handoff=_index(handoff),
        )
    return {"tasks": tasks, "evidence": head.to_dict()}


def _index(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _task_evidence(
    runtime: Runtime,
    enterprise: str,
    head: LedgerHead,
    *,
    decision_index: int | None,
    consent_id: str,
    handoff: int | None,
) -> dict[str, JsonValue]:
    """The decision entry and its proof, the caller's consent as ``GET /v1/consents/{id}``
    serves it, and (PSI round r > 1) the handed-on entry if it names the caller."""
    out: dict[str, JsonValue] = {}
    cache = runtime.pipeline.desk.evidence
    decision = None if decision_index is None else cache.entry(decision_index, head.size)
    if decision is not None:
        out["decision"] = decision.to_dict()
    try:
        record = runtime.consents.get(consent_id)
    except ConsentNotFoundError:
        record = None
    if record is not None and record.enterprise == enterprise:
        detail = ConsentDetail.of(record, now=runtime.consents.now())
        out["consent"] = detail.model_dump(mode="json")
    if handoff is not None:
        handed = cache.entry(handoff, head.size)
        if handed is not None and concerns(handed.entry, enterprise):
            out["handoff"] = handed.to_dict()
    return out


@router.get(
    "/v1/agent/jobs/{job_id}/evidence",
    responses={
        **_UNAUTHENTICATED,
        403: {
            "description": "not a participant of the job, or the handed-on entry does not "
            "concern the caller"
        },
        404: {"description": "no such job"},
    },
)
async def evidence(
    job_id: str = _job_id_path(),
    since: int | None = _since_query(
        "the tree size of the checkpoint the agent kept: the consistency proof starts there"
    ),
    handoff: int | None = Query(
        None, ge=0, le=_MAX_INDEX, description="PSI round r > 1: the material's contribution_index"
    ),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> dict[str, Any]:
    """Everything the caller's agent checks the job's task against, under one checkpoint.

    ``{"checkpoint", "consistency", "decision", "consent", "handoff"?}``: the
    signed checkpoint, the consistency proof from ``since``, the decision
    entry's leaf bytes with its inclusion proof, the caller's consent as
    ``GET /v1/consents/{id}`` serves it, and the handed-on entry. None of it
    is to be believed: the agent verifies each piece (docs/pipeline.md).

    Raises:
        JobNotFoundError: no such job (404).
        ForbiddenError: the caller is not a participant, or ``handoff`` names an entry
            that does not concern it (403).
    """
    enterprise = grant.identity.name

    def read() -> dict[str, Any]:
        job = runtime.pipeline.jobs.get(job_id)
        participant = job.decision.participant(enterprise)
        if participant is None:
            raise ForbiddenError(f"{enterprise} is not a participant of {job_id}")
        head = runtime.pipeline.desk.evidence.head(since or 0)
        if handoff is not None:
            entry = runtime.pipeline.desk.evidence.entry(handoff, head.size)
            if entry is None or not concerns(entry.entry, enterprise):
                raise ForbiddenError(
                    f"ledger entry {handoff} is not one handed on to {enterprise} "
                    "under the current checkpoint"
                )
        found = _task_evidence(
            runtime,
            enterprise,
            head,
            decision_index=job.decision_index,
            consent_id=participant.consent_id,
            handoff=handoff,
        )
        return {**head.to_dict(), **found}

    return await run_in_threadpool(read)


@router.get(
    "/v1/agent/jobs/{job_id}/he-context",
    response_class=Response,
    responses={
        **_UNAUTHENTICATED,
        200: {
            "content": {"application/octet-stream": {}},
            "description": "TenSEAL context; ETag: its SHA-256 (the task's context_sha256)",
        },
        304: {"description": "If-None-Match named the context's ETag: the agent has it"},
        403: {"description": "not a participant of the job"},
        404: {"description": "no such HE job"},
    },
)
async def he_context(
    request: Request,
    job_id: str = _job_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> Response:
    """The HE job's public TenSEAL context (its SHA-256 is the task's ``context_sha256``).

    A strong ``ETag`` is that SHA-256 in quotes; a request whose ``If-None-Match``
    names it is answered ``304`` without the 0.5 MB body.

    Raises:
        JobNotFoundError: no such job (404).
        ForbiddenError: the caller is not a participant, or the job is not an HE job (403).
    """

    def read() -> tuple[str, bytes]:
        pipeline = runtime.pipeline
        job = pipeline.jobs.get(job_id)
        if job.decision.participant(grant.identity.name) is None:
            raise ForbiddenError(f"{grant.identity.name} is not a participant of {job_id}")
        if job.decision.engine is not EngineName.HE:
            raise ForbiddenError(f"{job_id} is not an HE job")
        public = runtime.key_custodian.public(job_id)  # what HeEngineJob.public_context serves
        return public.key_fingerprint, public.public_context

    fingerprint, content = await run_in_threadpool(read)
    etag = f'"{fingerprint}"'
    wanted = request.headers.get("if-none-match", "")
    if etag in (tag.strip() for tag in wanted.split(",")):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(content, media_type="application/octet-stream", headers={"ETag": etag})


@router.post(
    "/v1/agent/jobs/{job_id}/contributions",
    status_code=201,
    responses={**_ANSWER, 415: {"description": "neither JSON nor the binary HE form"}},
    openapi_extra={"requestBody": _CONTRIBUTION_BODY},
)
async def contribute(
    request: Request,
    job_id: str = _job_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> JSONResponse:
    """Contribute one round's payload with the enterprise's signed statement.

    JSON ``{statement, signature, payload}`` for every engine, or (HE) the binary
    form: ``application/octet-stream`` framed chunks, the statement in headers.

    Raises:
        StatementRefusedError: not authentic or not for this job/round/caller (403).
        AnswerConflictError: another statement answered this round (409).
        NotCollectingError: the job no longer collects (410).
        InvalidPayloadError: a payload of the wrong shape (422).
    """
    desk = runtime.pipeline.desk
    enterprise = grant.identity.name
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if media_type == FRAMED_MEDIA_TYPE:
        headers = request.headers
        try:
            framed = FramedContribution.from_http(
                headers.get(STATEMENT_HEADER),
                headers.get(SIGNATURE_HEADER),
                headers.get(FINGERPRINT_HEADER),
                raw,
            )
        except PayloadError as exc:
            raise InvalidPayloadError(str(exc)) from exc
        new = await run_in_threadpool(desk.contribute_framed, enterprise, job_id, framed)
        return _answered(job_id, new)
    if media_type not in ("application/json", ""):
        return problem(
            415,
            "unsupported media type",
            f"a contribution is application/json or (HE) {FRAMED_MEDIA_TYPE}, not {media_type}",
        )
    new = await run_in_threadpool(desk.contribute, enterprise, job_id, _json_object(raw))
    return _answered(job_id, new)


def _json_object(raw: bytes) -> Mapping[str, Any]:
    """The body as a JSON object.

    Raises:
        InvalidPayloadError: not JSON, or not an object (422).
    """
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidPayloadError("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise InvalidPayloadError("the body is not a JSON object: {statement, signature, ...}")
    return body


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
