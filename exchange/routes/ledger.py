"""``/v1/ledger``: checkpoint and verifier key (public); entries and proofs (authorized);
the checkpoints witnesses cosigned (public) and their cosignatures and fork reports
(witnesses, :mod:`exchange.witnessing`).

Entries carry consent receipts and decisions, which are business information.
Auditors and witnesses (``ledger_read``) read every entry; identities the
active policy grants only ``ledger_read_own`` read the entries that *concern*
them, and inclusion proofs of those only.

What concerns an identity ``N`` (:func:`concerns`), decided from the entry
alone, so a page costs one scan of the bytes already read:

1. ``N`` is the entry's ``actor`` (it did it: its registrations, consents,
   requests, denied calls); or
2. the payload names ``N`` as a party: at any depth, a member whose key is
   one of :data:`PARTY_KEYS` has exactly the string value ``N``. Every
   package names the parties of what it records that way: ``owner``
   (``dataset.register``), ``enterprise`` (consent grants and revocations,
   the consents a decision or a job used, edge tokens, certificates and
   uploads), ``requester``/``identity`` (the requester of a decision, the
   identity a consent names), ``name`` (``identity.*``), ``officer``
   (``policy.*``).

Free-text values (descriptions, reasons, host names, dataset ids, enum
values such as ``general`` or ``mean``) never make an entry concern anyone:
an identity whose name happens to equal such a value (or prefixes it, as
``acme`` prefixes ``acme.labs``) must not read others' entries by it. An
entry that names a party under another key is not shown to it (fail
closed); auditors still read it. Not listed for a requester: the
``consent.job`` entries the exchange writes (they name the enterprises);
its ``consent.use`` decisions are.

Probing: an own-scope page of ``[start, start + limit)`` lists only the
caller's entries of that range (the indices of the others are implied by the
gaps, and the size is public in the checkpoint anyway); ``next`` is the same
for every caller. An inclusion proof of an entry that does not concern the
caller is refused (403). Proofs carry only hashes: an inclusion proof of
one's own entry holds its neighbours' leaf hashes, which confirm a guess of a
neighbour's exact bytes (time to the second, every member) and nothing more.
Consistency proofs are hashes of whole subtrees; any authenticated reader
gets them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from core.canonical import JsonValue, canonical_bytes
from exchange.access import Grant
from exchange.auth import current_runtime, get_runtime, granted
from exchange.errors import ForbiddenError, NotFoundError
from exchange.runtime import Runtime
from exchange.schemas.ledger import (
    ENTRY_PAGE_SCHEMA,
    ConsistencyProofPublic,
    InclusionProofPublic,
)
from exchange.schemas.witness import CheckpointPage, CosignatureAccepted, ForkRecorded, ForkReport
from ledger import Checkpoint, CheckpointError, LedgerEntry

__all__ = ["PARTY_KEYS", "EntryFilter", "concerns", "router"]

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])

_TEXT = "text/plain; charset=utf-8"
_MAX_INDEX = (1 << 53) - 1
_MAX_QUORUM = 100

PARTY_KEYS = frozenset({"enterprise", "owner", "requester", "identity", "name", "officer"})
"""Payload members whose string value names a party of the entry (see the module docstring)."""

_PROBLEMS: dict[int | str, dict[str, object]] = {
    400: {"description": "a start, index or tree size outside the log"},
    401: {"description": "no token, or an unknown, expired or revoked one"},
    403: {
        "description": "the active policy grants no ledger read, or (own scope) the entry "
        "does not concern the caller"
    },
}
_ENTRIES_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "one page of entries; ``next`` is the next ``start`` (null at the end)",
        "content": {
            "application/json": {
                "schema": ENTRY_PAGE_SCHEMA,
                "example": {
                    "entries": [
                        {
                            "entry": {
                                "actor": "factory-a",
                                "index": 3,
                                "payload": {"kwh": 1250.5, "site": "plant-a"},
                                "time": "2025-01-02T03:04:05Z",
                                "type": "demo.reading",
                            },
                            "index": 3,
                        }
                    ],
                    "next": 4,
                    "scope": "all",
                },
            }
        },
    },
    **_PROBLEMS,
}
_CHECKPOINT_EXAMPLE = (
    "ibx.localhost/ledger\n5\nYw6nL7IhV2VSycU59Araq+Z1JJwRwMuDDL9MVQnkQxM=\n\n"
    "\u2014 ibx.localhost/ledger Twhp0WvaUB3+QgnWrQsZ4TiHubukQoReMsbfGVq2dYjdnzZlVQjDaeNgt7MW1"
    "rufCohFZfZcm3WElBjS22d9nZ2z7w0=\n"
)
_VKEY_EXAMPLE = "ibx.localhost/ledger+4f0869d1+AX3mU9yWhJI6+sd7pLmKXsB6Ov2Qe6XnPrsrtPCn73cV\n"


def _text(description: str, example: str) -> dict[int | str, dict[str, object]]:
    return {
        200: {
            "description": description,
            "content": {"text/plain": {"schema": {"type": "string"}, "example": example}},
        }
    }


def _b64(hashes: tuple[bytes, ...]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


@router.get(
    "/checkpoint",
    response_class=Response,
    responses={
        **_text(
            "the C2SP signed note: origin, size, root, the ledger's signature, then the "
            "witnesses' cosignature lines kept for it",
            _CHECKPOINT_EXAMPLE,
        ),
        404: {
            "description": "witnessed=true, and no checkpoint carries the cosignatures asked "
            "for (none yet, or fewer than quorum of the named witnesses)"
        },
    },
)
def checkpoint(
    witnessed: bool = Query(
        False,
        description="the newest checkpoint a witness cosigned instead of the latest one",
    ),
    quorum: int = Query(
        1,
        ge=1,
        le=_MAX_QUORUM,
        description="with witnessed=true: the newest checkpoint cosigned by at least this "
        "many distinct witnesses",
    ),
    witness: list[str] | None = Query(  # noqa: B008
        None,
        max_length=_MAX_QUORUM,
        description="with witnessed=true (repeatable): count only these witnesses' "
        "cosignatures (their identity names)",
    ),
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> Response:
    """The latest signed checkpoint (C2SP signed note) with its cosignatures; public.

    The ledger's body and signature line are served byte for byte; the
    cosignature lines (C2SP ``tlog-cosignature``) witnesses brought back for
    that checkpoint follow. ``witnessed=true``: the newest checkpoint
    witnesses cosigned (what an agent with ``--witness-quorum`` trusts);
    with ``quorum=K`` the newest one ``K`` distinct witnesses cosigned, of the
    ``witness=NAME`` given when any (an agent asks for its own quorum). Every
    line is still the agent's to verify under the keys it holds.

    Raises:
        NotFoundError: ``witnessed=true`` and no checkpoint with the cosignatures asked
            for (404).
    """
    from exchange.witnessing import served_note, store_of

    if witnessed:
        names = tuple(witness or ())
        latest = store_of(runtime).newest_cosigned(quorum, names)
        if latest is None:
            of = f" of {', '.join(names)}" if names else ""
            raise NotFoundError(
                f"no checkpoint of this ledger carries cosignatures of {quorum} witness(es){of} yet"
            )
        return Response(latest.to_text(), media_type=_TEXT)
    return Response(served_note(runtime).to_text(), media_type=_TEXT)


@router.get("/checkpoints", response_model=CheckpointPage)
def checkpoints(
    start: int = Query(0, ge=0, le=_MAX_INDEX, description="the smallest tree size to list"),
    limit: int = Query(100, ge=1, le=1000, description="checkpoints per page"),
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> CheckpointPage:
    """The checkpoints witnesses cosigned, ascending by size, each with its cosignature
    lines (for ``ibx audit export``); public. ``next`` is the ``start`` of the next page."""
    from exchange.witnessing import store_of

    notes, more = store_of(runtime).page(start - 1, limit)
    last = Checkpoint.from_text(notes[-1].text).size if notes else None
    return CheckpointPage(
        checkpoints=[note.to_text() for note in notes],
        next=last + 1 if more and last is not None else None,
    )


_MAX_NOTE = 64 * 1024
_COSIGN_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"description": "not a signed note"},
    401: {"description": "no token, or an unknown, expired or revoked one"},
    403: {
        "description": "not a witness, or the cosignature does not verify under the "
        "calling witness's registered key"
    },
    409: {"description": "the body is not a checkpoint this exchange signed"},
}


@router.post(
    "/cosignatures",
    status_code=201,
    response_model=CosignatureAccepted,
    responses=_COSIGN_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "the checkpoint as served, with the witness's cosignature line",
        }
    },
)
async def cosignatures(
    request: Request,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> CosignatureAccepted:
    """A witness's cosignature (C2SP ``tlog-cosignature``) on a checkpoint of this ledger.

    The body (``text/plain``) is the signed note: the checkpoint, this
    ledger's signature line and the caller's cosignature line (named after the
    witness identity, under the key the ledger records for it). Kept with the
    checkpoint and recorded as a ``ledger.cosignature`` entry.

    Raises:
        CheckpointError: not a signed note (400).
        CosignatureRefusedError: no valid cosignature by the caller's key (403).
        UnknownCheckpointError: not a checkpoint this ledger signed, or not its history
            (then also a ``witness.fork`` alert) (409).
    """
    from exchange.witnessing import accept_cosignature

    body = await request.body()
    if len(body) > _MAX_NOTE:
        raise CheckpointError(f"a cosigned checkpoint is at most {_MAX_NOTE} bytes")
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise CheckpointError("a signed note is UTF-8 text") from exc
    accepted = await run_in_threadpool(accept_cosignature, runtime, grant, text)
    return CosignatureAccepted.model_validate(accepted.to_dict())


@router.post(
    "/forks",
    status_code=201,
    response_model=ForkRecorded,
    responses={
        401: {"description": "no token, or an unknown, expired or revoked one"},
        403: {"description": "not a witness"},
        422: {"description": "not two checkpoints of this ledger that fork"},
    },
)
def forks(
    report: ForkReport,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> ForkRecorded:
    """A witness reports a fork: two checkpoints signed by this ledger's key that cannot
    both be its history. Verified, then recorded as a critical ``witness.fork`` alert.

    Raises:
        ForkReportRefusedError: not both signed by this ledger's key, or both are its
            history (422).
    """
    from exchange.witnessing import accept_fork_report

    proof: JsonValue = list(report.consistency) if report.consistency is not None else None
    index, reason = accept_fork_report(runtime, grant, report.checkpoints, proof)
    return ForkRecorded(alert_index=index, reason=reason)


@router.get(
    "/vkey",
    response_class=Response,
    responses=_text("the C2SP verifier key: name+key id+base64 key", _VKEY_EXAMPLE),
)
def vkey(runtime: Runtime = Depends(get_runtime)) -> Response:  # noqa: B008
    """The checkpoint verifier key (C2SP vkey); public."""
    return Response(runtime.ledger.vkey() + "\n", media_type=_TEXT)


@router.get("/entries", response_class=Response, responses=_ENTRIES_RESPONSES)
def entries(  # noqa: PLR0917 -- one parameter per query parameter
    start: int = Query(0, ge=0, le=_MAX_INDEX, description="index of the first entry"),
    limit: int = Query(100, ge=1, le=1000, description="entries to scan from start"),
    entry_type: str | None = Query(
        None,
        alias="type",
        max_length=200,
        description="list only entries of this type (``policy.approve``); a value ending "
        "in ``.`` is a prefix (``policy.``: every policy step)",
    ),
    actor: str | None = Query(
        None, max_length=200, description="list only entries whose actor is this identity"
    ),
    since: datetime | None = Query(  # noqa: B008
        None, description="list only entries at or after this time (RFC 3339; UTC if no offset)"
    ),
    until: datetime | None = Query(  # noqa: B008
        None, description="list only entries before this time (RFC 3339; UTC if no offset)"
    ),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> Response:
    """Entries ``[start, start + limit)``, paginated by index (the log only grows).

    ``{"entries": [{"entry": {...}, "index": i}, ...], "next": n | null, "scope": s}``:
    each ``entry`` is byte-for-byte the stored RFC 8785 leaf input (an outside
    verifier hashes it, ``SHA-256(0x00 || entry)``); ``next`` is the ``start``
    of the following page, null when the page reaches the end of the log. With
    ``scope`` ``own`` the page lists only the entries of the range that concern
    the caller (``next`` is unchanged). ``type``, ``actor``, ``since`` and
    ``until`` likewise list only the entries of the scanned range that match
    all of them (``next`` is unchanged: page on to find more).

    Raises:
        TreeSizeError: ``start`` is beyond the log (400).
    """
    rows = runtime.ledger.entries(start, limit)
    end = start + len(rows)
    shown: Iterable[LedgerEntry] = rows
    if grant.own_only:
        shown = [row for row in rows if concerns(row, grant.identity.name)]
    if entry_type is not None or actor is not None or since is not None or until is not None:
        wanted = EntryFilter(entry_type, actor, _utc(since), _utc(until))
        shown = [row for row in shown if wanted.matches(row)]
    more = end < runtime.ledger.size()
    body = (
        b'{"entries":['
        + b",".join(
            b'{"entry":' + row.leaf_input + b',"index":' + str(row.index).encode() + b"}"
            for row in shown
        )
        + b'],"next":'
        + (str(end).encode() if more else b"null")
        + b',"scope":"'
        + grant.scope.value.encode()
        + b'"}'
    )
    return Response(body, media_type="application/json")


@router.get("/proof/inclusion", response_model=InclusionProofPublic, responses=_PROBLEMS)
def inclusion(
    index: int = Query(..., ge=0, le=_MAX_INDEX),
    tree_size: int = Query(..., ge=1, le=_MAX_INDEX),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> InclusionProofPublic:
    """RFC 9162 inclusion proof, hashes in base64 (``own`` scope: of one's own entries).

    Raises:
        TreeSizeError: ``index`` or ``tree_size`` outside the log (400).
        ForbiddenError: own scope, and the entry does not concern the caller (403).
    """
    if grant.own_only and not concerns(runtime.ledger.entry(index), grant.identity.name):
        raise ForbiddenError(
            f"ledger entry {index} does not concern {grant.identity.name}; "
            "only auditors and witnesses read every entry"
        )
    proof = runtime.ledger.inclusion_proof(index, tree_size)
    return InclusionProofPublic(
        index=proof.index, tree_size=proof.tree_size, hashes=_b64(proof.hashes)
    )


@router.get("/proof/consistency", response_model=ConsistencyProofPublic, responses=_PROBLEMS)
def consistency(
    first: int = Query(..., ge=1, le=_MAX_INDEX),
    second: int = Query(..., ge=1, le=_MAX_INDEX),
    _grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> ConsistencyProofPublic:
    """RFC 9162 consistency proof, hashes in base64 (only hashes: any authenticated reader).

    Raises:
        TreeSizeError: unless ``0 < first <= second <= size`` (400).
    """
    proof = runtime.ledger.consistency_proof(first, second)
    return ConsistencyProofPublic(first=proof.first, second=proof.second, hashes=_b64(proof.hashes))


@dataclass(frozen=True)
class EntryFilter:
    """What ``GET /v1/ledger/entries`` lists of a scanned range: every given test holds."""

    entry_type: str | None = None
    """The type, or a prefix when it ends in ``.``."""
    actor: str | None = None
    since: datetime | None = None
    """Inclusive."""
    until: datetime | None = None
    """Exclusive."""

    def matches(self, entry: LedgerEntry) -> bool:
        """Whether ``entry`` passes every test given."""
        if self.entry_type is not None:
            if self.entry_type.endswith("."):
                if not entry.type.startswith(self.entry_type):
                    return False
            elif entry.type != self.entry_type:
                return False
        if self.actor is not None and entry.actor != self.actor:
            return False
        if self.since is not None and entry.time < self.since:
            return False
        return self.until is None or entry.time < self.until


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def concerns(entry: LedgerEntry, name: str) -> bool:
    """Whether ``entry`` concerns identity ``name``: it is the actor, or a member of
    :data:`PARTY_KEYS` names it (see the module docstring)."""
    if entry.actor == name:
        return True
    if canonical_bytes(name) not in entry.leaf_input:
        return False  # the name is no string of the entry at all: no parse, no walk
    return _names(entry.payload, name)


def _names(value: JsonValue, name: str) -> bool:
    stack: list[JsonValue] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, member in item.items():
                if key in PARTY_KEYS and member == name:
                    return True
                if isinstance(member, Mapping | list):
                    stack.append(member)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, Mapping | list))
    return False
