"""The enterprise's consents: the list with their state, one consent, grant and revoke.

Granting and revoking never hand the enterprise's key to the exchange. The
page asks the API for a draft (``POST /v1/consents/drafts``, ``POST
/v1/consents/{id}/revocation/draft``): the exact statement and the bytes to
sign. The sign page shows both, ``static/sign.js`` signs them in the browser
with the key file the user opens (the seed never leaves the page), and only
the statement and its signature are posted back here and on to the API, which
verifies them against the enterprise's registered key. The page also hands
the equivalent ``ibx consent grant|revoke ... --key KEYFILE`` command.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from core.canonical import canonical_bytes
from core.errors import CanonicalJsonError
from exchange.console.api import ApiRefusal
from exchange.console.enterprise_reads import PREFIX, all_items, consent_terms, usage_rows
from exchange.console.web import ConsoleUser, duty_form_user, duty_user, labels_for, render

__all__ = ["PURPOSES", "router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

User = Annotated[ConsoleUser, Depends(duty_user("enterprise"))]
FormUser = Annotated[ConsoleUser, Depends(duty_form_user("enterprise"))]

PURPOSES = (
    "industry_monitoring",
    "risk_warning",
    "chain_analysis",
    "benchmarking",
    "policy_evaluation",
    "trade_matching",
)
OPERATIONS = (
    "count",
    "sum",
    "mean",
    "variance",
    "histogram",
    "regression",
    "percentile_rank",
    "quantiles",
    "min_max",
    "dominance_check",
    "set_intersection_size",
)
ENGINES = ("he", "mpc", "psi")

_STATEMENT_LIMIT = 64_000


def _cid(consent_id: str) -> str:
    return quote(consent_id, safe="")


@router.get("/consents")
async def consents(request: Request, user: User) -> Response:
    """The enterprise's consents, each with its state, uses and terms."""
    items = await all_items(user.api, "/v1/consents")
    rows = [
        {**item, "terms": consent_terms(item["receipt"])}
        for item in sorted(items, key=lambda c: c["ledger_index"], reverse=True)
    ]
    return render(request, user, "enterprise/consents.html", consents=rows)


@router.get("/consents/new")
async def new_consent(request: Request, user: User) -> Response:
    """The terms form of a new consent (then drafted, shown and signed)."""
    return await _terms_form(request, user)


async def _terms_form(
    request: Request,
    user: ConsoleUser,
    *,
    refusal: ApiRefusal | None = None,
    chosen: dict[str, Any] | None = None,
) -> Response:
    me = await user.api.get("/v1/me")
    datasets = await all_items(user.api, "/v1/datasets", owner=user.name)
    defaults = {
        "requester_group": f"subbrain:{me.get('industry') or ''}".rstrip(":"),
        "purposes": ["benchmarking"],
        "operations": ["mean"],
        "engines": ["he", "mpc"],
        "min_cohort": 3,
        "days": 365,
    }
    return render(
        request,
        user,
        "enterprise/consent_new.html",
        status_code=refusal.status if refusal else 200,
        datasets=datasets,
        purposes=PURPOSES,
        operations=OPERATIONS,
        engines=ENGINES,
        chosen={**defaults, **(chosen or {})},
        refusal=refusal,
    )


def _terms(form: Any) -> dict[str, Any]:
    """The draft's terms from the form: ``field`` values are ``dataset/field``."""
    scope: dict[str, list[str]] = {}
    for value in form.getlist("field"):
        dataset, _, name = str(value).rpartition("/")
        if dataset and name:
            scope.setdefault(dataset, []).append(name)
    requester_one = str(form.get("requester") or "").strip()
    group = str(form.get("requester_group") or "").strip()
    if requester_one:
        requester: dict[str, Any] = {"identity": requester_one}
    else:
        role, _, industry = group.partition(":")
        requester = {"role": role or "subbrain", "industry": industry or None}
    terms: dict[str, Any] = {
        "scope": [{"dataset": d, "fields": f} for d, f in sorted(scope.items())],
        "requester": requester,
        "purposes": [str(v) for v in form.getlist("purpose")],
        "operations": [str(v) for v in form.getlist("operation")],
        "engines": [str(v) for v in form.getlist("engine")],
    }
    for name in ("min_cohort", "days", "use_limit"):
        text = str(form.get(name) or "").strip()
        if text:
            terms[name] = int(text) if text.isdigit() else text
    notice = str(form.get("notice") or "").strip()
    if notice:
        terms["notice"] = notice
    return terms


@router.post("/consents/draft")
async def draft_consent(request: Request, user: FormUser) -> Response:
    """Ask the API to draft the receipt for the terms; show it to sign."""
    form = await request.form()
    terms = _terms(form)
    try:
        draft = await user.api.post("/v1/consents/drafts", terms)
    except ApiRefusal as refusal:
        chosen: dict[str, Any] = {
            "fields": [str(v) for v in form.getlist("field")],
            "requester": str(form.get("requester") or ""),
            "requester_group": str(form.get("requester_group") or ""),
            "purposes": terms["purposes"],
            "operations": terms["operations"],
            "engines": terms["engines"],
            **{k: terms[k] for k in ("min_cohort", "days", "use_limit", "notice") if k in terms},
        }
        return await _terms_form(request, user, refusal=refusal, chosen=chosen)
    return _sign_page(request, user, draft, action="/console/enterprise/consents/grant")


def _sign_page(
    request: Request,
    user: ConsoleUser,
    draft: dict[str, Any],
    *,
    action: str,
    refusal: ApiRefusal | None = None,
    back: str = "/console/enterprise/consents",
) -> Response:
    statement = draft["statement"]
    return render(
        request,
        user,
        "enterprise/sign.html",
        status_code=refusal.status if refusal else 200,
        kind=draft["kind"],
        statement_json=json.dumps(statement, indent=2, ensure_ascii=False),
        statement_text=base64.b64decode(draft["canonical"]).decode(),
        canonical=draft["canonical"],
        sha256=draft["sha256"],
        receipt=json.dumps(statement, ensure_ascii=False, separators=(",", ":")),
        action=action,
        command=_command(statement),
        refusal=refusal,
        back=back,
        terms=consent_terms(statement) if draft["kind"] == "grant" else None,
    )


def _command(statement: dict[str, Any]) -> str:
    """The ``ibx consent grant|revoke`` command that signs the same terms locally."""
    if statement.get("kind") == "revocation":
        parts = ["ibx", "consent", "revoke", "--key", "KEYFILE", statement["consent_id"]]
        if statement.get("reason"):
            parts += ["--reason", statement["reason"]]
        return shlex.join(parts)
    parts = ["ibx", "consent", "grant", "--key", "KEYFILE"]
    for scope in statement.get("scope", []):
        parts += ["--dataset", f"{scope['dataset']}:{','.join(scope['fields'])}"]
    requester = statement.get("requester") or {}
    if requester.get("identity"):
        parts += ["--requester", requester["identity"]]
    else:
        group = requester.get("role", "")
        if requester.get("industry"):
            group += f":{requester['industry']}"
        parts += ["--requester-group", group]
    for purpose in statement.get("purposes", []):
        parts += ["--purpose", purpose]
    for operation in statement.get("operations", []):
        parts += ["--operation", operation]
    for engine in statement.get("engines", []):
        parts += ["--engine", engine]
    parts += ["--min-cohort", str(statement.get("min_cohort"))]
    parts += ["--valid-from", statement["valid_from"], "--valid-until", statement["valid_until"]]
    if statement.get("use_limit") is not None:
        parts += ["--use-limit", str(statement["use_limit"])]
    if statement.get("notice"):
        parts += ["--notice", statement["notice"]]
    return shlex.join(parts)


def _signed(receipt: str, signature: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The posted statement and its signature, and the draft it was (for a page again).

    Raises:
        ValueError: the statement is not a JSON object of canonical-encodable values.
    """
    statement = json.loads(receipt)
    if not isinstance(statement, dict):
        raise ValueError("the statement is not a JSON object")
    try:
        raw = canonical_bytes(statement)
    except CanonicalJsonError as exc:
        raise ValueError(str(exc)) from exc
    draft = {
        "kind": statement.get("kind"),
        "statement": statement,
        "canonical": base64.b64encode(raw).decode(),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    return {"receipt": statement, "signature": signature}, draft


Statement = Annotated[str, Form(max_length=_STATEMENT_LIMIT)]
Signature = Annotated[str, Form(max_length=200)]


@router.post("/consents/grant")
async def grant(
    request: Request, user: FormUser, receipt: Statement, signature: Signature
) -> Response:
    """Submit the receipt signed in the browser; the API verifies it."""
    try:
        body, draft = _signed(receipt, signature)
    except ValueError as exc:
        return _malformed(request, user, str(exc))
    try:
        answer = await user.api.post("/v1/consents", body)
    except ApiRefusal as refusal:
        return _sign_page(
            request, user, draft, action="/console/enterprise/consents/grant", refusal=refusal
        )
    return RedirectResponse(
        f"/console/enterprise/consents/{_cid(answer['consent_id'])}?done=granted", status_code=303
    )


@router.get("/consents/{consent_id}")
async def consent(request: Request, user: User, consent_id: str, done: str = "") -> Response:
    """One consent: its terms, state, signed receipt, uses, and the revoke form."""
    item = await user.api.get(f"/v1/consents/{_cid(consent_id)}")
    uses = [row for row in await usage_rows(user.api) if row.consent_id == consent_id]
    return render(
        request,
        user,
        "enterprise/consent.html",
        consent=item,
        terms=consent_terms(item["receipt"]),
        receipt_json=json.dumps(item["receipt"], indent=2, ensure_ascii=False),
        uses=uses,
        done=done if done in ("granted", "revoked") else "",
    )


@router.post("/consents/{consent_id}/revoke/draft")
async def draft_revocation(
    request: Request,
    user: FormUser,
    consent_id: str,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Ask the API to draft the revocation; show it to sign."""
    draft = await user.api.post(
        f"/v1/consents/{_cid(consent_id)}/revocation/draft", {"reason": reason.strip() or None}
    )
    return _sign_page(
        request,
        user,
        draft,
        action=f"/console/enterprise/consents/{_cid(consent_id)}/revoke",
        back=f"/console/enterprise/consents/{_cid(consent_id)}",
    )


@router.post("/consents/{consent_id}/revoke")
async def revoke(
    request: Request, user: FormUser, consent_id: str, receipt: Statement, signature: Signature
) -> Response:
    """Submit the revocation signed in the browser; the API verifies it."""
    try:
        body, draft = _signed(receipt, signature)
    except ValueError as exc:
        return _malformed(request, user, str(exc))
    here = f"/console/enterprise/consents/{_cid(consent_id)}"
    try:
        await user.api.post(f"/v1/consents/{_cid(consent_id)}/revocation", body)
    except ApiRefusal as refusal:
        return _sign_page(request, user, draft, action=f"{here}/revoke", refusal=refusal, back=here)
    return RedirectResponse(f"{here}?done=revoked", status_code=303)


def _malformed(request: Request, user: ConsoleUser, detail: str) -> Response:
    t = labels_for(request)
    return render(
        request,
        user,
        "error.html",
        status_code=400,
        title=t("refused_title"),
        detail=t("enterprise.malformed_statement", detail=detail),
        code="malformed",
    )
