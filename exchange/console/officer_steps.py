"""The officer's signed steps: propose, test, approve, activate.

Every step is the officer's own duty, signed in the browser with their key
file (``static/sign.js``); the form posts the statement's bytes and the
signature, and the page sends ``{"duty": ...}`` through the API as the
signed-in officer. The exchange verifies the signature against the key its
ledger records for the officer and applies four eyes; its refusal is shown
on the page that was signed.

Proposing takes two forms: the pack (Casbin lines, Rego modules, model,
data, sample requests; prefilled from a version to start from), then the
statement on the pack's hash to sign, with the pack carried along unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from core.canonical import canonical_bytes
from exchange.console.api import ApiRefusal
from exchange.console.officer_context import (
    PREFIX,
    STEPS,
    Officer,
    OfficerForm,
    all_versions,
    cli_command,
    not_a_version,
    short,
)
from exchange.console.officer_pack import PackError, csv_text, pack_from_form, pack_hash
from exchange.console.officer_sign import (
    SIGN_MINUTES,
    StatementError,
    duty_body,
    ledger_origin,
    statement,
)
from exchange.console.officer_versions import version_page
from exchange.console.web import ConsoleUser, labels_for, refusal_page, render

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_MAX_MODULES = 64
_TEXT = 200_000


def _form_refusal(request: Request, error: Exception) -> ApiRefusal:
    t = labels_for(request)
    return ApiRefusal(400, t("officer.form_refused"), str(error), None)


@router.post("/versions/{ref}/{step}")
async def take_step(
    request: Request,
    user: OfficerForm,
    ref: str,
    step: str,
    *,
    statement_b64: Annotated[str, Form(alias="statement", max_length=4000)] = "",
    signature: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    """Send the signed ``policy.<step>`` on the version; back to its page."""
    if step not in STEPS or not_a_version(ref) is not None:
        return await version_page(request, user, ref)
    try:
        body = duty_body(statement_b64, signature)
        answer = await user.api.post(f"/v1/policies/{ref}/{step}", body)
    except StatementError as bad:
        refusal = _form_refusal(request, bad)
        return await version_page(request, user, ref, refusal=refusal, refused_step=step)
    except ApiRefusal as refusal:
        if refusal.status == 401:
            return refusal_page(request, user, refusal)
        return await version_page(request, user, ref, refusal=refusal, refused_step=step)
    full = answer.get("hash") if step != "test" else None
    return RedirectResponse(f"/console/officer/versions/{full or ref}?done={step}", status_code=303)


def _modules_of(source: dict[str, Any] | None) -> list[tuple[str, str]]:
    modules = sorted((source or {}).get("modules", {}).items())
    return [*modules, ("", "")]  # one empty slot for a new module


def _propose_form(
    request: Request,
    user: ConsoleUser,
    *,
    versions: list[dict[str, Any]],
    start: str | None,
    fields: dict[str, Any],
    error: ApiRefusal | None = None,
) -> Response:
    return render(
        request,
        user,
        "officer/propose.html",
        status_code=error.status if error else 200,
        versions=versions,
        start=start,
        fields=fields,
        error=error,
        short=short,
    )


@router.get("/propose")
async def propose_page(
    request: Request, user: Officer, start: str | None = Query(None, alias="from", max_length=200)
) -> Response:
    """The pack to propose, prefilled from a version (default: the active one, else the newest)."""
    try:
        versions = list(reversed(await all_versions(user.api)))
        chosen = start or next(
            (v["hash"] for v in versions if v["state"] == "active"),
            versions[0]["hash"] if versions else None,
        )
        if chosen and (unknown := not_a_version(chosen)) is not None:
            raise unknown
        source = await user.api.get(f"/v1/policies/{chosen}/source") if chosen else None
    except ApiRefusal as refusal:
        return refusal_page(request, user, refusal)
    fields = {
        "model": (source or {}).get("model", ""),
        "casbin": csv_text((source or {}).get("lines", [])),
        "modules": _modules_of(source),
        "data": json.dumps((source or {}).get("data", {}), indent=2, ensure_ascii=False),
        "requests": json.dumps((source or {}).get("requests", []), indent=2, ensure_ascii=False),
    }
    start_hash = source["hash"] if source else None
    return _propose_form(request, user, versions=versions, start=start_hash, fields=fields)


def _encode_pack(pack: dict[str, Any]) -> str:
    return base64.b64encode(canonical_bytes(pack)).decode()


def _decode_pack(encoded: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise PackError(f"the pack is not readable: {exc}") from exc
    if not isinstance(value, dict) or set(value) != {
        "model",
        "lines",
        "modules",
        "data",
        "requests",
    }:
        raise PackError("the pack does not hold exactly model, lines, modules, data, requests")
    return value


async def _review(
    request: Request,
    user: ConsoleUser,
    pack: dict[str, Any],
    start: str | None,
    *,
    refusal: ApiRefusal | None = None,
) -> Response:
    """The statement on the pack's hash, to sign (also after a refused proposal)."""
    try:
        version = pack_hash(pack)
        origin = await ledger_origin(user.api)
    except PackError as bad:
        refusal = _form_refusal(request, bad)
        version, origin = "", ""
    except ApiRefusal as failed:
        return refusal_page(request, user, failed)
    signed = statement(origin, user.name, "propose", version) if version else None
    return render(
        request,
        user,
        "officer/propose_sign.html",
        status_code=refusal.status if refusal else 200,
        pack=_encode_pack(pack) if version else "",
        version=version,
        start=start,
        summary={
            "p_lines": sum(1 for line in pack["lines"] if line and line[0] == "p"),
            "g_lines": sum(1 for line in pack["lines"] if line and line[0] == "g"),
            "modules": len(pack["modules"]),
            "requests": len(pack["requests"]),
        },
        modules=sorted(pack["modules"]),
        statement=signed,
        command=cli_command(request, "policy", "propose", "DIR"),
        refusal=refusal,
        sign_minutes=SIGN_MINUTES,
        short=short,
    )


@router.post("/propose/review")
async def propose_review(request: Request, user: OfficerForm) -> Response:
    """Read the pack form; show the statement on the pack's hash to sign."""
    form = await request.form(max_fields=4 * _MAX_MODULES + 20)
    text = {k: str(v)[:_TEXT] for k, v in form.multi_items() if isinstance(v, str)}
    names = [str(v) for v in form.getlist("module_name") if isinstance(v, str)]
    bodies = [str(v) for v in form.getlist("module_source") if isinstance(v, str)]
    start = text.get("start") or None
    try:
        pack = pack_from_form(
            model=text.get("model", ""),
            casbin=text.get("casbin", ""),
            modules=list(zip(names, bodies, strict=False))[:_MAX_MODULES],
            data=text.get("data", ""),
            requests=text.get("requests", ""),
        )
    except PackError as bad:
        fields = {
            "model": text.get("model", ""),
            "casbin": text.get("casbin", ""),
            "modules": [*zip(names, bodies, strict=False)],
            "data": text.get("data", ""),
            "requests": text.get("requests", ""),
        }
        try:
            versions = list(reversed(await all_versions(user.api)))
        except ApiRefusal as refusal:
            return refusal_page(request, user, refusal)
        return _propose_form(
            request,
            user,
            versions=versions,
            start=start,
            fields=fields,
            error=_form_refusal(request, bad),
        )
    return await _review(request, user, pack, start)


@router.post("/propose")
async def propose(
    request: Request,
    user: OfficerForm,
    *,
    pack_b64: Annotated[str, Form(alias="pack", max_length=1_000_000)] = "",
    start: Annotated[str, Form(max_length=200)] = "",
    statement_b64: Annotated[str, Form(alias="statement", max_length=4000)] = "",
    signature: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    """Send the pack with the signed ``policy.propose``; on to the new version's page."""
    try:
        pack = _decode_pack(pack_b64)
    except PackError as bad:
        return refusal_page(request, user, _form_refusal(request, bad))
    try:
        body = duty_body(statement_b64, signature)
        answer = await user.api.post("/v1/policies", {**pack, **body})
    except StatementError as bad:
        return await _review(
            request, user, pack, start or None, refusal=_form_refusal(request, bad)
        )
    except ApiRefusal as refusal:
        if refusal.status == 401:
            return refusal_page(request, user, refusal)
        return await _review(request, user, pack, start or None, refusal=refusal)
    return RedirectResponse(
        f"/console/officer/versions/{answer['hash']}?done=propose", status_code=303
    )
