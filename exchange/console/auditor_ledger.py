"""The auditor's ledger pages: the checkpoint and its witnesses, entries, one entry's proof.

``/console/auditor/ledger``: the latest checkpoint (size, root, the signed
note), the checkpoints witnesses cosigned (which witness, when), and the
entries by type, actor and time, paged. ``/console/auditor/ledger/{index}``:
one entry, its payload, and its RFC 9162 inclusion proof with the checkpoint
note and the ledger's verifier key embedded for ``static/proof.js``, which
checks both in the browser (WebCrypto) and says "verified" or what failed.
"""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from core.canonical import canonical_bytes
from exchange.console.auditor_reading import (
    EntryQuery,
    read_entry,
    read_head,
    scan_entries,
    witnessed_checkpoints,
)
from exchange.console.web import ConsoleUser, duty_user, labels_for, render

__all__ = ["ENTRY_TYPES", "router"]

router = APIRouter(prefix="/console/auditor", include_in_schema=False)

User = Annotated[ConsoleUser, Depends(duty_user("auditor"))]

ENTRY_TYPES = (
    "pipeline.decision",
    "pipeline.job",
    "pipeline.result",
    "pipeline.denial",
    "pipeline.",
    "consent.grant",
    "consent.revoke",
    "consent.use",
    "consent.",
    "policy.",
    "identity.",
    "dataset.register",
    "mpc.key.",
    "audit.alert",
    "ledger.cosignature",
    "authz.decision",
    "edge.",
)
"""Suggestions for the type filter (a value ending in ``.`` is a prefix)."""

_SHOWN_CHECKPOINTS = 10


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


@router.get("/ledger")
async def ledger(  # noqa: PLR0917 -- one parameter per filter
    request: Request,
    user: User,
    entry_type: Annotated[str | None, Query(alias="type", max_length=200)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
    start: Annotated[int, Query(ge=0, le=(1 << 53) - 1)] = 0,
) -> Response:
    """The latest checkpoint, the witnessed checkpoints, and a page of entries."""
    t = labels_for(request)
    head = await read_head(user.api)
    witnessed = await witnessed_checkpoints(user.api, head.ledger_name)
    first, last = _day(since), _day(until)
    problems = [
        t("auditor.ledger.bad_day", value=value)
        for value, parsed in ((since, first), (until, last))
        if value and parsed is None
    ]
    query = EntryQuery(
        entry_type=(entry_type or "").strip() or None,
        actor=(actor or "").strip() or None,
        since=first.isoformat() if first else None,
        until=(last + timedelta(days=1)).isoformat() if last else None,
    )
    size = head.checkpoint.size
    page = await scan_entries(user.api, query, start) if start < max(size, 1) else None
    filters = {
        "type": query.entry_type or "",
        "actor": query.actor or "",
        "since": first.isoformat() if first else "",
        "until": last.isoformat() if last else "",
    }
    return render(
        request,
        user,
        "auditor/ledger.html",
        head=head,
        root_hex=head.checkpoint.root.hex(),
        witnessed=witnessed[:_SHOWN_CHECKPOINTS],
        witnessed_total=len(witnessed),
        page=page,
        filters=filters,
        filtered=any(filters.values()),
        problems=problems,
        entry_types=ENTRY_TYPES,
        newest_start=max(0, size - 50),
    )


@router.get("/ledger/{index}")
async def entry(
    request: Request,
    user: User,
    index: int,
    size: Annotated[int | None, Query(ge=1, le=(1 << 53) - 1)] = None,
) -> Response:
    """One entry, its payload, and its inclusion proof checked in the page (``proof.js``).

    ``size``: prove into that witnessed checkpoint instead of the latest one.
    """
    head = await read_head(user.api)
    witnessed = await witnessed_checkpoints(user.api, head.ledger_name)
    served = await read_entry(user.api, index)
    note, tree_size, chosen = head.text, head.checkpoint.size, None
    if size is not None:
        chosen = next((w for w in witnessed if w.checkpoint.size == size), None)
        if chosen is not None:
            note, tree_size = chosen.text, size
    proof: dict[str, Any] | None = None
    if index < tree_size:
        answer = await user.api.get("/v1/ledger/proof/inclusion", index=index, tree_size=tree_size)
        proof = {
            "index": index,
            "treeSize": tree_size,
            "leaf": base64.b64encode(canonical_bytes(served)).decode(),
            "proof": list(answer["hashes"]),
            "note": note,
            "vkey": head.vkey,
        }
    payload = served.get("payload")
    job = payload.get("job_id") if isinstance(payload, dict) else None
    return render(
        request,
        user,
        "auditor/entry.html",
        index=index,
        entry=served,
        payload_text=json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True),
        proof=proof,
        tree_size=tree_size,
        chosen=chosen,
        covering=[w for w in witnessed if w.checkpoint.size > index],
        head=head,
        job=job if isinstance(job, str) else None,
        latest_size=head.checkpoint.size,
        origin=f"{request.url.scheme}://{request.url.netloc}",
    )
