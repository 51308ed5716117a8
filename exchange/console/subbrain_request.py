"""The request form: ``/console/subbrain/request`` — preview, then submit.

``POST .../request/preview`` asks ``POST /v1/requests/preview`` what a
submission would be decided now — the policy's decision with its reasons,
whose consents cover it and whose do not (and why), the cohort against its
minimum — and shows it beside the form, filled in as it was. ``POST
.../request`` submits (``POST /v1/requests``): the job's page, or the
refusal on the form. The API's refusals (404, 422, 501) are shown on the
form, not as an error page. The equivalent ``ibx request submit`` command is
offered for a terminal.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from exchange.console.api import ApiRefusal
from exchange.console.subbrain_form import (
    ENGINES,
    OPERATIONS,
    PURPOSES,
    REDUCES,
    FormError,
    RequestForm,
)
from exchange.console.web import ConsoleUser, duty_form_user, duty_user, render

__all__ = ["LEFT_OUT_REASONS", "router"]

router = APIRouter(prefix="/console/subbrain", include_in_schema=False)

User = Annotated[ConsoleUser, Depends(duty_user("subbrain"))]
FormUser = Annotated[ConsoleUser, Depends(duty_form_user("subbrain"))]

_MAX_PREFILL = 50

LEFT_OUT_REASONS: Final = frozenset(
    {
        "no_consent",
        "revoked",
        "expired",
        "not_yet_valid",
        "scope_mismatch",
        "use_limit_reached",
        "min_cohort",
        "bad_signature",
        "foreign_key",
        "no_registered_key",
        "wrong_origin",
        "dataset_not_owned",
        "refused",
    }
)
"""The reason codes an owner is left out for (``consent`` refusals, and a consent's own
minimum cohort), each with a label; another code is shown as it is."""


@router.get("/request")
async def request_form(
    request: Request,
    user: User,
    dataset: Annotated[list[str] | None, Query(max_length=128)] = None,
    field: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """The form, empty or with the datasets (and a field) chosen in the catalog."""
    me = await user.api.get("/v1/me")
    chosen = [d for d in (dataset or [])[:_MAX_PREFILL] if d]
    form = RequestForm(
        by="datasets" if chosen else "industry",
        datasets="\n".join(chosen),
        industry=str(me.get("industry") or ""),
        fields=field,
    )
    return _page(request, user, form)


@router.post("/request/preview")
async def preview(request: Request, user: FormUser) -> Response:
    """What policy and consents would decide for the form's request now (nothing recorded)."""
    form = RequestForm.from_form(await request.form())
    try:
        body = form.body()
    except FormError as exc:
        return _page(request, user, form, form_error=exc, status_code=400)
    try:
        answer = await user.api.post("/v1/requests/preview", body)
    except ApiRefusal as exc:
        if exc.status == 401:
            raise
        return _page(request, user, form, refusal=exc, status_code=exc.status)
    return _page(request, user, form, preview=answer)


@router.post("/request")
async def submit(request: Request, user: FormUser) -> Response:
    """Submit the form's request: to its job's page, or back to the form with the refusal."""
    form = RequestForm.from_form(await request.form())
    try:
        body = form.body()
    except FormError as exc:
        return _page(request, user, form, form_error=exc, status_code=400)
    try:
        view = await user.api.post("/v1/requests", body)
    except ApiRefusal as exc:
        if exc.status == 401:
            raise
        return _page(request, user, form, refusal=exc, submitted=True, status_code=exc.status)
    return RedirectResponse(f"/console/subbrain/jobs/{view['job_id']}?new=1", status_code=303)


def _page(
    request: Request,
    user: ConsoleUser,
    form: RequestForm,
    *,
    status_code: int = 200,
    **context: Any,
) -> Response:
    return render(
        request,
        user,
        "subbrain/request.html",
        status_code=status_code,
        form=form,
        cli=form.cli(),
        purposes=PURPOSES,
        operations=OPERATIONS,
        engines=ENGINES,
        reduces=REDUCES,
        reasons=LEFT_OUT_REASONS,
        **{"preview": None, "refusal": None, "form_error": None, "submitted": False, **context},
    )
