"""Who used the enterprise's data and for what: a chart over time and the list.

The chart counts the decisions that relied on one of its consents, per week and
requester (:mod:`exchange.console.enterprise_chart`); the list shows every
decision and job with its requester, purpose, time and ledger index, as
``GET /v1/usage`` reads them back from the ledger.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from exchange.console.enterprise_chart import usage_chart
from exchange.console.enterprise_reads import PREFIX, usage_rows
from exchange.console.web import ConsoleUser, duty_user, render

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

User = Annotated[ConsoleUser, Depends(duty_user("enterprise"))]


@router.get("/usage")
async def usage(request: Request, user: User) -> Response:
    """The usage chart (uses per week by requester) and the list, newest first."""
    rows = await usage_rows(user.api)
    chart = usage_chart((r.time, r.requester) for r in rows if r.kind == "decision")
    jobs = len({r.job for r in rows})
    return render(request, user, "enterprise/usage.html", rows=rows, chart=chart, jobs=jobs)
