"""The decision playground: ask the active policy about a subject, action, resource and context.

``GET /console/officer/decide`` with the form's fields asks ``POST
/v1/decisions`` (the officers' ``policy_decide``; nothing changes) and shows
the effect, every reason and the deciding version, beside the equivalent
``ibx policy decide`` command.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from exchange.console.api import ApiRefusal
from exchange.console.officer_context import PREFIX, Officer, short
from exchange.console.web import labels_for, refusal_page, render

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_EXAMPLE_CONTEXT = (
    '{"domain": "lithium-battery", "classification": "core", "purpose": "risk_warning",\n'
    ' "engine": "mpc", "operation": "mean", "cohort": 6}'
)


@router.get("/decide")
async def decide(  # noqa: PLR0917 -- one parameter a form field
    request: Request,
    user: Officer,
    subject: str = Query("", max_length=200),
    action: str = Query("", max_length=200),
    resource: str = Query("", max_length=400),
    context: str | None = Query(None, max_length=20_000),
    at: str = Query("", max_length=64),
) -> Response:
    """The form; with a subject, action and resource, the active policy's answer."""
    t = labels_for(request)
    fields = {
        "subject": subject,
        "action": action,
        "resource": resource,
        # an empty form shows an example; a question shows the context it was asked with
        "context": context if context is not None else "{}" if subject else _EXAMPLE_CONTEXT,
        "at": at,
    }
    decision: dict[str, Any] | None = None
    problem: ApiRefusal | None = None
    command = None
    if subject and action and resource:
        try:
            attributes = json.loads(context or "{}")
            if not isinstance(attributes, dict):
                raise ValueError(t("officer.context_object"))
        except ValueError as exc:
            problem = ApiRefusal(400, t("officer.form_refused"), f"context: {exc}", None)
        else:
            body = {
                "subject": subject,
                "action": action,
                "resource": resource,
                "context": attributes,
                "at": at or None,
            }
            try:
                decision = await user.api.post("/v1/decisions", body)
            except ApiRefusal as refusal:
                if refusal.status == 401:
                    return refusal_page(request, user, refusal)
                problem = refusal
            words = [
                "ibx", "policy", "decide", "--subject", subject, "--action", action,
                "--resource", resource, "--context", json.dumps(attributes, ensure_ascii=False),
            ]  # fmt: skip
            if at:
                words += ["--at", at]
            base = f"{request.url.scheme}://{request.url.netloc}"
            words += ["--exchange", base, "--client-cert", "CERT.pem"]
            command = shlex.join(words)
    return render(
        request,
        user,
        "officer/decide.html",
        status_code=problem.status if problem else 200,
        fields=fields,
        decision=decision,
        problem=problem,
        command=command,
        short=short,
    )
