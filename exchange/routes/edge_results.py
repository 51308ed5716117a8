"""``GET /v1/edge/results/{job_id}`` on the edge listener: a device reads its enterprise's share.

An edge terminal, over its mutual-TLS connection, may read what a released
job gave its own enterprise alone (e.g. its rank tags in a benchmarking
round: only the enterprise's data agent, which dealt the tag, can tell which
is its own) — and nothing else. The enterprise is the one the verified
device certificate names (:func:`exchange.routes.edge.current_device`: an
unknown, revoked or expired certificate, or a device whose enterprise is no
longer active, is refused). A job that does not exist, or one the enterprise
takes no part in, is the same ``404``, so a device cannot probe other
enterprises' jobs; a job of the enterprise that is not released yet is
``409``; a released job that gave the enterprise nothing of its own is an
empty share (as ``GET /v1/results/{id}`` answers on the API). The
requester's result is never served here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request

from core.canonical import JsonValue
from core.db import Database
from edge_tls import DeviceCertificate
from exchange.auth import get_runtime
from exchange.pipeline.errors import JobNotFoundError, ResultNotReadyError
from exchange.routes.edge import current_device

__all__ = ["ParticipantShare", "released_share", "router"]

router = APIRouter(prefix="/v1/edge", tags=["edge devices"])

_JOB_ID = re.compile(r"job_[0-9a-f]{32}")
_RELEASED = "released"


@dataclass(frozen=True)
class ParticipantShare:
    """What one enterprise alone may read of one released job."""

    job_id: str
    enterprise: str
    share: dict[str, JsonValue]

    def to_dict(self) -> dict[str, JsonValue]:
        """The wire form: ``{"job_id", "enterprise", "share"}`` (as ``docs/pipeline.md``)."""
        return {"job_id": self.job_id, "enterprise": self.enterprise, "share": self.share}


def released_share(db: Database, job_id: str, enterprise: str) -> ParticipantShare:
    """``enterprise``'s own share of the released job ``job_id`` (``{}`` when the job gave
    it none, e.g. quantiles, or it was left out: as ``GET /v1/results/{id}`` answers).

    Raises:
        JobNotFoundError: no such job, or ``enterprise`` is not one of its participants
            (the same answer, so existence is not disclosed).
        ResultNotReadyError: the enterprise takes part in the job, which is not released.
    """
    from exchange.pipeline.tables import JobRow, ParticipantRow, ShareRow

    missing = JobNotFoundError(f"no result of job {job_id} for {enterprise}")
    if not _JOB_ID.fullmatch(job_id):
        raise missing
    with db.read() as session:
        job = session.get(JobRow, job_id)
        member = session.get(ParticipantRow, (job_id, enterprise))
        if job is None or member is None:
            raise missing
        if job.state != _RELEASED:
            raise ResultNotReadyError(f"job {job_id} is {job.state}, not released", state=job.state)
        row = session.get(ShareRow, (job_id, enterprise))
        share = {} if row is None else json.loads(row.share_json)
    if not isinstance(share, dict):
        raise missing
    return ParticipantShare(job_id, enterprise, share)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no client certificate, or an unknown, revoked or expired one"},
    404: {"description": "no such job, or one the device's enterprise takes no part in"},
    409: {"description": "the enterprise's job is not released yet (the detail names its state)"},
}


@router.get("/results/{job_id}", responses=_RESPONSES)
def read_share(
    job_id: str,
    request: Request,
    device: DeviceCertificate = Depends(current_device),  # noqa: B008
) -> dict[str, Any]:
    """The device's enterprise's own share of a released job: ``{job_id, enterprise, share}``.

    Raises:
        JobNotFoundError: no such job, or one the device's enterprise takes no part in.
        ResultNotReadyError: the job is not released.
    """
    runtime = get_runtime(request)
    return released_share(runtime.db, job_id, device.device.enterprise).to_dict()
