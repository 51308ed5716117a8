"""``GET /v1/alerts``: the alerts on the ledger, for auditors and security officers.

Every alert, whoever raised it (``row.mismatch`` from a service's check,
``risk.*`` from the risk watch, ``witness.fork`` from a witness's report), is
an ``audit.alert`` entry indexed under :data:`core.alerts.ALERT_SUBJECT`; the
listing reads those entries from the ledger itself (the subject index only
says where they are) in index order. ``?since=INDEX`` starts at that ledger
index; ``next_since`` is where the next page starts (null on the last).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from core.alerts import ALERT_EVENT, ALERT_SUBJECT
from core.clock import format_rfc3339
from exchange.access import Grant
from exchange.auth import get_runtime, granted
from exchange.entries import AlertEntry
from exchange.runtime import Runtime
from exchange.schemas.alerts import AlertPage, AlertPublic

__all__ = ["list_alerts", "router"]

router = APIRouter(prefix="/v1", tags=["audit"])

_EXAMPLE: dict[str, Any] = {
    "items": [
        {
            "index": 4711,
            "time": "2026-12-02T15:04:05.000000Z",
            "actor": "ibx-risk",
            "rule": "risk.denial_burst",
            "severity": "warning",
            "subject": "li-brain",
            "message": "li-brain: 10 denied requests within 10 minutes (last: refused (cohort))",
            "evidence": [4690, 4693, 4702],
            "details": {"count": 10, "threshold": 10, "window_minutes": 10},
        }
    ],
    "next_since": None,
}


def list_alerts(runtime: Runtime, *, since: int, limit: int) -> AlertPage:
    """The alerts at ledger index ``since`` or later, at most ``limit``.

    An entry the subject index points at that is no ``audit.alert`` or does not
    parse is left out (``ibx audit verify`` reports it).
    """
    ledger = runtime.ledger
    hits = [
        hit.index
        for hit in ledger.find([ALERT_SUBJECT], [ALERT_EVENT])
        if hit.index >= since and hit.type == ALERT_EVENT
    ]
    items: list[AlertPublic] = []
    for index in hits[:limit]:
        entry = ledger.entry(index)
        if entry.type != ALERT_EVENT:
            continue
        try:
            alert = AlertEntry.model_validate(entry.payload)
        except ValidationError:
            continue
        items.append(
            AlertPublic(
                index=entry.index,
                time=format_rfc3339(entry.time),
                actor=entry.actor,
                rule=alert.rule,
                severity=alert.severity.value,
                subject=alert.subject,
                message=alert.message,
                evidence=list(alert.evidence),
                details=alert.details,
            )
        )
    more = len(hits) > limit
    return AlertPage(items=items, next_since=hits[limit] if more else None)


@router.get(
    "/alerts",
    response_model=AlertPage,
    responses={
        200: {
            "description": "the alerts in ledger order",
            "content": {"application/json": {"example": _EXAMPLE}},
        },
        401: {"description": "no token, or an unknown, expired or revoked one"},
        403: {"description": "the active policy grants the caller no alert_read"},
    },
)
async def alerts(
    since: int = Query(0, ge=0, description="the first ledger index to list from"),
    limit: int = Query(100, ge=1, le=1000, description="alerts per page"),
    _grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> AlertPage:
    """The alerts on the ledger (row mismatches, risk rules, witness forks), oldest first.

    Raises:
        ForbiddenError: the caller may not read alerts (403).
    """
    return await run_in_threadpool(list_alerts, runtime, since=since, limit=limit)
