"""Jobs and results: ``/console/subbrain/jobs`` and ``/console/subbrain/jobs/{job_id}``.

The list shows the sub-brain's jobs with their states (``GET /v1/jobs``, own
scope). A job's page shows its view, what was asked (the ``pipeline.decision``
entry it can read on the ledger) and, once released, the result: a chart
where one reads better than numbers (:mod:`exchange.console.subbrain_charts`),
the numbers, and the result's SHA-256 recomputed here from the numbers shown
and compared with the ``pipeline.result`` entry on the ledger. A live job's
page reloads itself every few seconds (a ``meta refresh``; no script) and can
be cancelled.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from core.canonical import canonical_sha256
from core.errors import CanonicalJsonError
from exchange.console.api import ApiRefusal
from exchange.console.subbrain_charts import chart_for, laplace_95
from exchange.console.web import ConsoleUser, duty_form_user, duty_user, render

__all__ = ["LIVE", "latest", "router"]

router = APIRouter(prefix="/console/subbrain", include_in_schema=False)

User = Annotated[ConsoleUser, Depends(duty_user("subbrain"))]
FormUser = Annotated[ConsoleUser, Depends(duty_form_user("subbrain"))]

LIVE: Final = frozenset({"authorized", "collecting", "computing"})
"""States a job leaves by itself (the others are terminal)."""

VALUE_NAMES: Final = frozenset(
    {"mean", "sum", "count", "means", "variances", "counts", "coefficients", "median",
     "quartiles", "min", "max", "size"}
)  # fmt: skip
"""The names a result's ``values`` use (docs/pipeline.md), each with a label."""

REFRESH_SECONDS: Final = 3
_PAGE = 50
JobId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^job_[0-9a-f]{32}$")]


async def latest(user: ConsoleUser, count: int) -> list[dict[str, Any]]:
    """Up to ``count`` of the user's jobs, newest first (from the first page of the API's)."""
    page = await user.api.get("/v1/jobs", limit=100)
    return _newest_first(page["items"])[:count]


def _newest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda j: str(j.get("created_at") or ""), reverse=True)


@router.get("/jobs")
async def jobs(
    request: Request,
    user: User,
    cursor: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The sub-brain's jobs with their states (a page, newest first within it)."""
    page = await user.api.get("/v1/jobs", limit=_PAGE, cursor=cursor or None)
    items = _newest_first(page["items"])
    return render(
        request,
        user,
        "subbrain/jobs.html",
        jobs=items,
        next_cursor=page["next_cursor"],
        paged=bool(cursor),
        live=LIVE,
        refresh=REFRESH_SECONDS if any(j["state"] in LIVE for j in items) else None,
    )


@router.get("/jobs/{job_id}")
async def job(request: Request, user: User, job_id: JobId, new: int = 0) -> Response:
    """A job: its state, what was asked, and (released) its result with chart and hash."""
    view = await user.api.get(f"/v1/jobs/{job_id}")
    decision = await _entry(user, view.get("decision_index"))
    asked = (decision or {}).get("request") or {}
    result = None
    check = None
    chart = None
    if view["state"] == "released":
        result = await user.api.get(f"/v1/results/{job_id}")
        recorded = await _entry(user, result.get("result_index"))
        check = _hash_check(result, recorded)
        bins = (asked.get("parameters") or {}).get("bins") or []
        chart = chart_for(
            str(result.get("operation")),
            result.get("values") or {},
            cohort=int(result.get("cohort") or 0),
            bins=[float(b) for b in bins],
            noise=_noise(result, asked),
        )
    return render(
        request,
        user,
        "subbrain/job.html",
        job=view,
        new=bool(new),
        asked=asked,
        decision=decision,
        result=result,
        check=check,
        chart=chart,
        live=view["state"] in LIVE,
        value_names=VALUE_NAMES,
        refresh=REFRESH_SECONDS if view["state"] in LIVE else None,
    )


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, user: FormUser, job_id: JobId) -> Response:
    """Cancel the user's own live job (``POST /v1/jobs/{id}/cancel``)."""
    try:
        await user.api.post(f"/v1/jobs/{job_id}/cancel")
    except ApiRefusal as exc:
        if exc.status != 409:  # already over: its page says how
            raise
    return RedirectResponse(f"/console/subbrain/jobs/{job_id}", status_code=303)


async def _entry(user: ConsoleUser, index: object) -> dict[str, Any] | None:
    """The payload of the ledger entry at ``index``, if the user may read it."""
    if not isinstance(index, int):
        return None
    try:
        page = await user.api.get("/v1/ledger/entries", start=index, limit=1)
    except ApiRefusal as exc:
        if exc.status == 401:
            raise
        return None
    for item in page.get("entries", []):
        if item.get("index") == index:
            payload = item.get("entry", {}).get("payload")
            return payload if isinstance(payload, dict) else None
    return None


def _noise(result: dict[str, Any], asked: dict[str, Any]) -> float | None:
    """For a differentially private mean or sum: the 95 % half-width of the Laplace noise the
    release step added (sensitivity 2·bound, over the cohort for a mean, times the values per
    enterprise on HE; docs/pipeline.md), else None."""
    epsilon = result.get("epsilon")
    operation = result.get("operation")
    if not isinstance(epsilon, int | float) or epsilon <= 0 or operation not in ("mean", "sum"):
        return None
    parameters = asked.get("parameters") or {}
    try:
        bound = float(parameters.get("bound") or 0)
        length = int(parameters.get("length") or 1) if result.get("engine") == "he" else 1
        cohort = int(result.get("cohort") or 0)
    except (TypeError, ValueError):
        return None
    if bound <= 0 or cohort <= 0:
        return None
    sensitivity = 2 * bound * length / (cohort if operation == "mean" else 1)
    return laplace_95(sensitivity, float(epsilon))


def _hash_check(result: dict[str, Any], recorded: dict[str, Any] | None) -> dict[str, Any]:
    """The result's SHA-256 recomputed from the numbers shown, against the API's and the
    ledger's (``pipeline.result``): all three must be equal."""
    shown = {k: v for k, v in result.items() if k not in ("result_sha256", "result_index")}
    try:
        computed: str | None = canonical_sha256(shown).hex()
    except CanonicalJsonError:
        computed = None
    on_ledger = (recorded or {}).get("result_sha256")
    return {
        "computed": computed,
        "stated": result.get("result_sha256"),
        "on_ledger": on_ledger,
        "index": result.get("result_index"),
        "ok": computed is not None and computed == result.get("result_sha256") == on_ledger,
    }
