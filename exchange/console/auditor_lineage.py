"""The auditor's lineage and report pages: ``audit.trace_job`` and ``audit.build_report``
over the log read through the API as the signed-in auditor (as ``ibx audit trace`` and
``ibx audit report --exchange`` do).

``/console/auditor/lineage``: the jobs on the ledger; ``?job=ID`` (or a result's
SHA-256): its lineage as a tree, each node linking to the entry it was read
from. ``/console/auditor/report``: a period's sections; ``/report/download``:
the self-contained HTML file ``ibx audit report`` writes, as an attachment (it
is saved, not shown: the console's CSP stays strict).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from audit import AuditReport, TraceNotFoundError, build_report, trace_job
from exchange.console.auditor_reading import read_export, read_head
from exchange.console.web import ConsoleUser, duty_user, labels_for, render
from ledger import InvalidEntryError, LedgerEntry

if TYPE_CHECKING:
    from audit import LedgerExport

__all__ = ["JobRow", "router"]

router = APIRouter(prefix="/console/auditor", include_in_schema=False)

User = Annotated[ConsoleUser, Depends(duty_user("auditor"))]

_DEFAULT_DAYS = 30


@dataclass(frozen=True)
class JobRow:
    """A job on the ledger: its decision's index and time, requester, last state."""

    job_id: str
    index: int
    time: str
    requester: str
    state: str


def _entries(export: LedgerExport) -> list[LedgerEntry]:
    out: list[LedgerEntry] = []
    for item in export.entries:
        try:
            out.append(LedgerEntry.from_leaf_input(item.leaf))
        except InvalidEntryError:
            continue
    return out


def _jobs(export: LedgerExport) -> list[JobRow]:
    rows: dict[str, JobRow] = {}
    states: dict[str, str] = {}
    for entry in _entries(export):
        job = entry.payload.get("job_id")
        if not isinstance(job, str):
            continue
        if entry.type == "pipeline.decision":
            requester = entry.payload.get("requester")
            rows[job] = JobRow(
                job,
                entry.index,
                entry.time.strftime("%Y-%m-%d %H:%M:%S"),
                requester if isinstance(requester, str) else entry.actor,
                "authorized",
            )
        elif entry.type == "pipeline.job" and isinstance(entry.payload.get("state"), str):
            states[job] = str(entry.payload["state"])
    return sorted(
        (JobRow(r.job_id, r.index, r.time, r.requester, states.get(r.job_id, r.state))
         for r in rows.values()),
        key=lambda r: r.index,
        reverse=True,
    )  # fmt: skip


def _source(request: Request, user: ConsoleUser) -> str:
    return f"{request.url.scheme}://{request.url.netloc} (console, as {user.name})"


@router.get("/lineage")
async def lineage(
    request: Request,
    user: User,
    job: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The jobs on the ledger, and the lineage of one (``?job=``) as a tree."""
    t = labels_for(request)
    export = await read_export(user.api, _source(request, user))
    wanted = (job or "").strip()
    traced = None
    problem = None
    if wanted:
        try:
            traced = trace_job(export, wanted)
        except TraceNotFoundError:
            problem = t("auditor.lineage.not_found", job=wanted)
    return render(
        request,
        user,
        "auditor/lineage.html",
        job=wanted,
        traced=traced,
        problem=problem,
        jobs=_jobs(export) if traced is None else [],
        size=export.header.tree_size,
        origin=f"{request.url.scheme}://{request.url.netloc}",
    )


def _period(start: str | None, end: str | None, latest: date) -> tuple[date, date, str | None]:
    """The period asked for (default: the 30 days up to the newest entry's day), and
    the label key of what is wrong with it (None: nothing)."""
    try:
        last = date.fromisoformat(end) if end else latest
        first = date.fromisoformat(start) if start else last - timedelta(days=_DEFAULT_DAYS - 1)
    except ValueError:
        return latest - timedelta(days=_DEFAULT_DAYS - 1), latest, "auditor.report.bad_day"
    if first > last:
        return first, last, "auditor.report.reversed"
    return first, last, None


async def _latest_day(user: ConsoleUser) -> date:
    head = await read_head(user.api)
    if head.checkpoint.size == 0:
        from core.clock import utcnow

        return utcnow().date()
    page = await user.api.get("/v1/ledger/entries", start=head.checkpoint.size - 1, limit=1)
    items = page["entries"]
    return date.fromisoformat(str(items[-1]["entry"]["time"])[:10]) if items else date.today()


async def _build(request: Request, user: ConsoleUser, first: date, last: date) -> AuditReport:
    export = await read_export(user.api, _source(request, user))
    return await run_in_threadpool(build_report, export, first, last)


@router.get("/report")
async def report(
    request: Request,
    user: User,
    start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
) -> Response:
    """The period's form and, once asked (``?from=&to=``), its sections and the download."""
    t = labels_for(request)
    first, last, wrong = _period(start, end, await _latest_day(user))
    built = None
    if (start or end) and wrong is None:
        built = await _build(request, user, first, last)
    return render(
        request,
        user,
        "auditor/report.html",
        first=first.isoformat(),
        last=last.isoformat(),
        problem=t(wrong) if wrong else None,
        built=built,
        origin=f"{request.url.scheme}://{request.url.netloc}",
    )


@router.get("/report/download")
async def download(
    request: Request,
    user: User,
    start: Annotated[str, Query(alias="from", max_length=10)],
    end: Annotated[str, Query(alias="to", max_length=10)],
) -> Response:
    """The report's self-contained HTML file, as an attachment."""
    t = labels_for(request)
    first, last, wrong = _period(start, end, date.today())
    if wrong is not None:
        return render(
            request, user, "error.html", status_code=400, title=t("refused_title"),
            detail=t(wrong), code="period",
        )  # fmt: skip
    built = await _build(request, user, first, last)
    name = f"ibx-audit-report-{first.isoformat()}-{last.isoformat()}.html"
    return Response(
        built.to_html().encode(),
        media_type="text/html; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )
