"""``/v1/ledger``: checkpoint and verifier key (public); entries and proofs (authorized).

Entries carry consent receipts and decisions: auditors and witnesses read them
all, other identities only the entries that concern them
(:func:`concerns`), as the active policy grants.
"""

from __future__ import annotations

import base64
import json

from fastapi import APIRouter, Depends, Query, Response

from exchange.access import Grant
from exchange.auth import get_runtime, granted
from exchange.errors import ForbiddenError
from exchange.runtime import Runtime

__all__ = ["router"]

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])

_TEXT = "text/plain; charset=utf-8"
_MAX_INDEX = (1 << 53) - 1


def _b64(hashes: tuple[bytes, ...]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


@router.get("/checkpoint", response_class=Response)
def checkpoint(runtime: Runtime = Depends(get_runtime)) -> Response:  # noqa: B008
    """The latest signed checkpoint (C2SP signed note)."""
    return Response(runtime.ledger.checkpoint().to_text(), media_type=_TEXT)


@router.get("/vkey", response_class=Response)
def vkey(runtime: Runtime = Depends(get_runtime)) -> Response:  # noqa: B008
    """The checkpoint verifier key (C2SP vkey)."""
    return Response(runtime.ledger.vkey() + "\n", media_type=_TEXT)


@router.get("/entries", response_class=Response)
def entries(
    start: int = Query(0, ge=0, le=_MAX_INDEX),
    limit: int = Query(100, ge=1, le=1000),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> Response:
    """Entries from ``start``; each ``entry`` is byte-for-byte the stored RFC 8785 leaf input.

    With ``own`` scope only the entries of the range that concern the caller are listed.
    """
    rows = runtime.ledger.entries(start, limit)
    if grant.own_only:
        rows = [row for row in rows if concerns(row.leaf_input, grant.identity.name)]
    body = (
        b'{"entries":['
        + b",".join(
            b'{"entry":' + row.leaf_input + b',"index":' + str(row.index).encode() + b"}"
            for row in rows
        )
        + b"]}"
    )
    return Response(body, media_type="application/json")


@router.get("/proof/inclusion")
def inclusion(
    index: int = Query(..., ge=0, le=_MAX_INDEX),
    tree_size: int = Query(..., ge=1, le=_MAX_INDEX),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> dict[str, object]:
    """RFC 9162 inclusion proof, hashes in base64 (``own`` scope: of one's own entries)."""
    if grant.own_only:
        rows = runtime.ledger.entries(index, 1)
        if not rows or not concerns(rows[0].leaf_input, grant.identity.name):
            raise ForbiddenError(f"entry {index} does not concern {grant.identity.name}")
    proof = runtime.ledger.inclusion_proof(index, tree_size)
    return {"index": proof.index, "tree_size": proof.tree_size, "hashes": _b64(proof.hashes)}


@router.get("/proof/consistency")
def consistency(
    first: int = Query(..., ge=1, le=_MAX_INDEX),
    second: int = Query(..., ge=1, le=_MAX_INDEX),
    _grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> dict[str, object]:
    """RFC 9162 consistency proof, hashes in base64."""
    proof = runtime.ledger.consistency_proof(first, second)
    return {"first": proof.first, "second": proof.second, "hashes": _b64(proof.hashes)}


def concerns(leaf_input: bytes, name: str) -> bool:
    """Whether an entry concerns identity ``name``: it is the actor, or the payload names
    it as any value (an enterprise's consents, decisions on its data, its devices)."""
    entry = json.loads(leaf_input)
    if entry.get("actor") == name:
        return True
    return _mentions(entry.get("payload"), name)


def _mentions(value: object, name: str) -> bool:
    if isinstance(value, str):
        return value == name or value.startswith((name + ":", name + "."))
    if isinstance(value, dict):
        return any(_mentions(v, name) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, name) for v in value)
    return False
