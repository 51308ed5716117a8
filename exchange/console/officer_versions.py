"""The officer's reading pages: every version, one version, the diff of two.

``/console/officer`` lists the versions with their state and who took each
step when; ``/console/officer/versions/{ref}`` shows one version's Casbin
lines and Rego, its last test report (failing cases named) and the steps the
signed-in officer may sign next (approve and activate disabled for the
proposer, with the reason); ``/console/officer/diff?a=&b=`` compares two
versions side by side with the decisions that change on the sample requests
(the API's dry run, ``POST /v1/policies/{b}/diff``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from exchange.console.api import ApiRefusal
from exchange.console.officer_context import (
    PREFIX,
    STEPS,
    Officer,
    all_versions,
    cli_command,
    not_a_version,
    short,
    when,
)
from exchange.console.officer_pack import csv_text, side_by_side
from exchange.console.officer_sign import SIGN_MINUTES, ledger_origin, statement
from exchange.console.web import ConsoleUser, refusal_page, render

__all__ = ["router", "version_page"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_CONTEXT = 3
"""Unchanged lines shown around each change in a diff (longer runs are folded)."""


@router.get("")
async def versions(request: Request, user: Officer) -> Response:
    """Every policy version: state, who proposed, tested, approved, activated it, and when.

    The duty's home, ``/console/officer``.
    """
    try:
        listing = await all_versions(user.api)
    except ApiRefusal as refusal:
        return refusal_page(request, user, refusal)
    listing.reverse()  # newest first
    active = next((v["hash"] for v in listing if v["state"] == "active"), None)
    return render(
        request, user, "officer/versions.html", versions=listing, active=active, when=when,
        short=short,
    )  # fmt: skip


def _steps(user: ConsoleUser, version: dict[str, Any]) -> dict[str, str | None]:
    """Each step's label key of why it cannot be taken now (None: it can)."""
    state, mine = version["state"], version["proposed_by"] == user.name
    return {
        "test": None if state in ("proposed", "tested") else "officer.why_test_state",
        "approve": (
            "officer.why_four_eyes"
            if mine
            else None
            if state == "tested" and version["tests"] == "passed"
            else "officer.why_approve_state"
        ),
        "activate": (
            "officer.why_four_eyes"
            if mine
            else None
            if state == "approved"
            else "officer.why_activate_state"
        ),
    }


async def version_page(
    request: Request,
    user: ConsoleUser,
    ref: str,
    *,
    refusal: ApiRefusal | None = None,
    refused_step: str | None = None,
    done: str | None = None,
) -> Response:
    """One version's page (also answered after a step, with the API's refusal if any)."""
    if (unknown := not_a_version(ref)) is not None:
        return refusal_page(request, user, unknown)
    try:
        version = await user.api.get(f"/v1/policies/{ref}")
        full = version["hash"]
        source = await user.api.get(f"/v1/policies/{full}/source")
        report = await user.api.get(f"/v1/policies/{full}/report")
        origin = await ledger_origin(user.api)
    except ApiRefusal as failed:
        return refusal_page(request, user, failed)
    blocked = _steps(user, version)
    statements = {
        step: statement(origin, user.name, step, full) for step, why in blocked.items() if not why
    }
    commands = {step: cli_command(request, "policy", step, full) for step in blocked}
    failing = [
        r["name"] for r in (report["report"] or {}).get("results", []) if not r["passed"]
    ]  # fmt: skip
    coverage = (report["report"] or {}).get("coverage") or {}
    silent = [r for r in coverage.get("rules", []) if r.get("deny") and not r.get("fired")]
    return render(
        request,
        user,
        "officer/version.html",
        status_code=refusal.status if refusal else 200,
        version=version,
        source=source,
        casbin=csv_text(source["lines"]),
        data_json=json.dumps(source["data"], indent=2, ensure_ascii=False),
        requests_json=json.dumps(source["requests"], indent=2, ensure_ascii=False),
        report=report,
        failing=failing,
        silent=silent,
        blocked=blocked,
        statements=statements,
        commands=commands,
        refusal=refusal,
        refused_step=refused_step,
        done=done,
        sign_minutes=SIGN_MINUTES,
        when=when,
        short=short,
    )


@router.get("/versions/{ref}")
async def version(request: Request, user: Officer, ref: str, done: str | None = None) -> Response:
    """One version: content, test report, and the next signed steps."""
    shown = done if done in ("propose", *STEPS) else None
    return await version_page(request, user, ref, done=shown)


def _texts(source: dict[str, Any]) -> dict[str, list[str]]:
    """A pack's comparable texts: the model, ``policy.csv`` and each Rego module."""
    texts = {"model.conf": source["model"].splitlines(), "policy.csv": []}
    texts["policy.csv"] = csv_text(source["lines"]).splitlines()
    for name, text in sorted(source["modules"].items()):
        texts[name] = text.splitlines()
    return texts


@router.get("/diff")
async def diff(
    request: Request,
    user: Officer,
    a: str | None = Query(None, max_length=200),
    b: str | None = Query(None, max_length=200),
) -> Response:
    """Two versions side by side, and the decisions that change on ``b``'s sample requests."""
    try:
        listing = await all_versions(user.api)
    except ApiRefusal as refusal:
        return refusal_page(request, user, refusal)
    active = next((v["hash"] for v in listing if v["state"] == "active"), None)
    if not a or not b:
        newest = listing[-1]["hash"] if listing else None
        return render(
            request, user, "officer/diff.html", versions=list(reversed(listing)), a=a or active,
            b=b or newest, files=None, rows=None, active=active, short=short,
        )  # fmt: skip
    for ref in (a, b):
        if (unknown := not_a_version(ref)) is not None:
            return refusal_page(request, user, unknown)
    try:
        left = await user.api.get(f"/v1/policies/{a}/source")
        right = await user.api.get(f"/v1/policies/{b}/source")
        dry_run = await user.api.post(f"/v1/policies/{right['hash']}/diff", {})
    except ApiRefusal as refusal:
        return refusal_page(request, user, refusal)
    old, new = _texts(left), _texts(right)
    files = []
    for name in [*old, *(n for n in new if n not in old)]:
        rows = side_by_side(old.get(name, []), new.get(name, []), context=_CONTEXT)
        files.append((name, rows, any(row.kind not in ("same", "skip") for row in rows)))
    return render(
        request,
        user,
        "officer/diff.html",
        versions=list(reversed(listing)),
        a=left["hash"],
        b=right["hash"],
        files=files,
        rows=dry_run["rows"],
        changed=sum(1 for row in dry_run["rows"] if row["changed"]),
        active=active,
        short=short,
    )
