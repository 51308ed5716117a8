"""The auditor's pages: ``/console/auditor/...`` (docs/console.md).

Home (the checkpoint and the latest alerts at a glance), the ledger and one
entry's proof (:mod:`exchange.console.auditor_ledger`), a job's lineage and a
period's report (:mod:`exchange.console.auditor_lineage`), and the alerts
(here). Every page reads through the API as the signed-in auditor.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from exchange.console import auditor_ledger, auditor_lineage
from exchange.console.auditor_reading import read_head
from exchange.console.web import ConsoleUser, duty_user, render

__all__ = ["NAV", "router"]

router = APIRouter(include_in_schema=False)
"""The duty's pages: :data:`pages` (home, alerts) and the modules' (each under the prefix:
this FastAPI leaves an included router's routes out of the including router's prefix)."""
pages = APIRouter(prefix="/console/auditor", include_in_schema=False)

NAV: list[tuple[str, str]] = [
    ("auditor.home", "/console/auditor"),
    ("auditor.ledger", "/console/auditor/ledger"),
    ("auditor.lineage", "/console/auditor/lineage"),
    ("auditor.alerts", "/console/auditor/alerts"),
    ("auditor.report", "/console/auditor/report"),
]
"""The duty's menu: (label key, path)."""

User = Annotated[ConsoleUser, Depends(duty_user("auditor"))]

_ALERT_PAGE = 50


@pages.get("")
async def home(request: Request, user: User) -> Response:
    """The duty's home: who is signed in, the latest checkpoint, the newest alerts."""
    me = await user.api.get("/v1/me")
    head = await read_head(user.api)
    alerts = await _all_alerts(user)
    return render(
        request,
        user,
        "auditor/home.html",
        me=me,
        head=head,
        alerts=list(reversed(alerts))[:5],
        alert_count=len(alerts),
        critical=sum(1 for a in alerts if a.get("severity") == "critical"),
    )


async def _all_alerts(user: ConsoleUser) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    since: int | None = 0
    while since is not None:
        page = await user.api.get("/v1/alerts", since=since, limit=1000)
        found.extend(page["items"])
        after = page.get("next_since")
        since = after if isinstance(after, int) and after > since else None
    return found


@pages.get("/alerts")
async def alerts(
    request: Request,
    user: User,
    since: Annotated[int, Query(ge=0, le=(1 << 53) - 1)] = 0,
) -> Response:
    """The alerts on the ledger (``GET /v1/alerts``), oldest first, paged by ledger index."""
    page = await user.api.get("/v1/alerts", since=since, limit=_ALERT_PAGE)
    return render(
        request,
        user,
        "auditor/alerts.html",
        items=page["items"],
        next_since=page.get("next_since"),
        since=since,
        origin=f"{request.url.scheme}://{request.url.netloc}",
    )


router.include_router(pages)
router.include_router(auditor_ledger.router)
router.include_router(auditor_lineage.router)
