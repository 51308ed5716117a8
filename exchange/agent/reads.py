"""What the agent reads from the exchange to check a task, behind one small protocol.

:class:`ExchangeReads` speaks the API (``/v1/ledger/...``, ``/v1/consents/{id}``);
:class:`EvidenceReads` answers from the evidence the exchange sent with the
task list (``GET /v1/agent/tasks?since=N``: one answer instead of five reads
per task) and asks the API for anything the evidence lacks. Every answer is
only material to verify, never believed: the verifier checks what it gets
the same way whichever way it came. Tests can hand the verifier any other
:class:`VerifierReads`, e.g. a real ledger read directly.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from core.canonical import canonical_bytes
from core.errors import CanonicalJsonError
from exchange.agent.errors import TaskRefused
from exchange.error_table import RemoteRefusalError
from ledger import Checkpoint, CheckpointError, SignedNote

if TYPE_CHECKING:
    from exchange.client import ExchangeClient

__all__ = ["EvidenceReads", "ExchangeReads", "VerifierReads", "kept_size"]


class VerifierReads(Protocol):
    """The reads a verification needs."""

    def checkpoint_text(self) -> str:
        """The latest signed checkpoint (C2SP signed note)."""
        ...

    def witnessed_checkpoint_text(
        self, quorum: int = 1, witnesses: Sequence[str] = ()
    ) -> str | None:
        """The newest checkpoint witnesses cosigned, with their lines: the newest with lines
        of ``quorum`` distinct witnesses (of ``witnesses`` when given); None before any."""
        ...

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """RFC 9162 consistency proof between tree sizes ``first`` and ``second``."""
        ...

    def entry(self, index: int) -> bytes | None:
        """The leaf input (RFC 8785 entry bytes) at ``index``; None when not served."""
        ...

    def inclusion(self, index: int, tree_size: int) -> tuple[bytes, ...]:
        """RFC 9162 inclusion proof of ``index`` in the tree of ``tree_size``."""
        ...

    def consent(self, consent_id: str) -> Mapping[str, Any]:
        """The consent as ``GET /v1/consents/{id}`` shows it (receipt, signature, status)."""
        ...


class ExchangeReads:
    """:class:`VerifierReads` over the exchange's API, as the enterprise's identity.

    A refusal by the exchange or an answer of the wrong shape raises
    :class:`TaskRefused` with what was asked (the agent cannot check the task).
    """

    def __init__(self, client: ExchangeClient) -> None:
        self._client = client

    def checkpoint_text(self) -> str:
        """See :class:`VerifierReads`.

        Raises:
            TaskRefused: the exchange refused.
        """
        try:
            return self._client.call("GET", "/v1/ledger/checkpoint").text
        except RemoteRefusalError as exc:
            _outage(exc)
            raise TaskRefused(f"the exchange refused its checkpoint: {exc}") from exc

    def witnessed_checkpoint_text(
        self, quorum: int = 1, witnesses: Sequence[str] = ()
    ) -> str | None:
        """See :class:`VerifierReads` (``GET /v1/ledger/checkpoint?witnessed=true``, with
        ``quorum=K`` and ``witness=NAME``... when asked for more than one of any).

        Raises:
            TaskRefused: the exchange refused (other than 404: none yet).
        """
        params: dict[str, str | int | list[str]] = {"witnessed": "true"}
        if quorum > 1 or witnesses:
            params["quorum"] = quorum
            params["witness"] = list(witnesses)
        try:
            return self._client.call("GET", "/v1/ledger/checkpoint", params=params).text
        except RemoteRefusalError as exc:
            if exc.status == 404:
                return None
            _outage(exc)
            raise TaskRefused(f"the exchange refused its witnessed checkpoint: {exc}") from exc

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """See :class:`VerifierReads`.

        Raises:
            TaskRefused: the exchange refused, or the answer is no proof.
        """
        try:
            body = self._client.get("/v1/ledger/proof/consistency", first=first, second=second)
        except RemoteRefusalError as exc:
            _outage(exc)
            raise TaskRefused(f"the exchange refused a consistency proof: {exc}") from exc
        return _hashes(body, "consistency proof")

    def entry(self, index: int) -> bytes | None:
        """See :class:`VerifierReads`.

        Raises:
            TaskRefused: the exchange refused, or the answer is no page of entries.
        """
        try:
            body = self._client.get("/v1/ledger/entries", start=index, limit=1)
        except RemoteRefusalError as exc:
            _outage(exc)
            raise TaskRefused(f"the exchange refused ledger entry {index}: {exc}") from exc
        try:
            for item in body["entries"]:
                if item["index"] == index:
                    return canonical_bytes(item["entry"])
        except (KeyError, TypeError, CanonicalJsonError) as exc:
            raise TaskRefused(f"the exchange's page of entry {index} is malformed") from exc
        return None

    def inclusion(self, index: int, tree_size: int) -> tuple[bytes, ...]:
        """See :class:`VerifierReads`.

        Raises:
            TaskRefused: the exchange refused, or the answer is no proof.
        """
        try:
            body = self._client.get("/v1/ledger/proof/inclusion", index=index, tree_size=tree_size)
        except RemoteRefusalError as exc:
            _outage(exc)
            raise TaskRefused(f"the exchange refused an inclusion proof: {exc}") from exc
        return _hashes(body, "inclusion proof")

    def consent(self, consent_id: str) -> Mapping[str, Any]:
        """See :class:`VerifierReads`.

        Raises:
            TaskRefused: the exchange refused (e.g. no such consent of this enterprise).
        """
        try:
            body = self._client.get(f"/v1/consents/{consent_id}")
        except RemoteRefusalError as exc:
            _outage(exc)
            raise TaskRefused(f"the exchange refused consent {consent_id}: {exc}") from exc
        if not isinstance(body, dict):
            raise TaskRefused(f"the exchange's answer for consent {consent_id} is malformed")
        return body


def _outage(exc: RemoteRefusalError) -> None:
    """Re-raise a server error as it is: the exchange is down, not refusing this task."""
    if exc.status >= 500:
        raise exc


def _hashes(body: Any, what: str) -> tuple[bytes, ...]:
    try:
        return tuple(base64.b64decode(h, validate=True) for h in body["hashes"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise TaskRefused(f"the exchange's {what} is malformed") from exc


class EvidenceReads:
    """:class:`VerifierReads` from served evidence, else from ``fallback``.

    ``head`` is the task list's ``evidence`` (``{"checkpoint", "consistency"}``),
    ``task`` one task's (``{"decision", "consent", "handoff"}``); see
    :mod:`exchange.pipeline.evidence`. A piece answers only the exact question it
    is the answer to (the same index, tree size, sizes or consent id); a piece of
    the wrong shape is ignored, so the question goes to ``fallback`` and the
    verifier checks that answer instead. Nothing here is checked or believed.
    """

    def __init__(
        self,
        fallback: VerifierReads,
        head: Mapping[str, Any] | None = None,
        task: Mapping[str, Any] | None = None,
    ) -> None:
        self._fallback = fallback
        head = head if isinstance(head, Mapping) else {}
        task = task if isinstance(task, Mapping) else {}
        checkpoint = head.get("checkpoint")
        self._checkpoint = checkpoint if isinstance(checkpoint, str) else None
        self._consistency: dict[tuple[int, int], tuple[bytes, ...]] = {}
        proof = head.get("consistency")
        if isinstance(proof, Mapping):
            first, second = proof.get("first"), proof.get("second")
            hashes = _maybe_hashes(proof.get("hashes"))
            if _is_index(first) and _is_index(second) and hashes is not None:
                self._consistency[(first, second)] = hashes
        self._entries: dict[int, bytes] = {}
        self._inclusion: dict[tuple[int, int], tuple[bytes, ...]] = {}
        size = kept_size(self._checkpoint)  # the tree the proofs were made under
        for name in ("decision", "handoff"):
            proven = task.get(name)
            if not isinstance(proven, Mapping):
                continue
            index, entry = proven.get("index"), proven.get("entry")
            hashes = _maybe_hashes(proven.get("inclusion"))
            leaf = _maybe_b64(entry)
            if _is_index(index) and leaf is not None and hashes is not None:
                self._entries[index] = leaf
                self._inclusion[(index, size)] = hashes
        consent = task.get("consent")
        self._consent = consent if isinstance(consent, Mapping) else None

    def checkpoint_text(self) -> str:
        """See :class:`VerifierReads`."""
        if self._checkpoint is not None:
            return self._checkpoint
        return self._fallback.checkpoint_text()

    def witnessed_checkpoint_text(
        self, quorum: int = 1, witnesses: Sequence[str] = ()
    ) -> str | None:
        """See :class:`VerifierReads` (not part of the evidence: asked of the fallback)."""
        return self._fallback.witnessed_checkpoint_text(quorum, witnesses)

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """See :class:`VerifierReads`."""
        served = self._consistency.get((first, second))
        return served if served is not None else self._fallback.consistency(first, second)

    def entry(self, index: int) -> bytes | None:
        """See :class:`VerifierReads`."""
        served = self._entries.get(index)
        return served if served is not None else self._fallback.entry(index)

    def inclusion(self, index: int, tree_size: int) -> tuple[bytes, ...]:
        """See :class:`VerifierReads` (the evidence's proofs are for its checkpoint's size)."""
        served = self._inclusion.get((index, tree_size))
        return served if served is not None else self._fallback.inclusion(index, tree_size)

    def consent(self, consent_id: str) -> Mapping[str, Any]:
        """See :class:`VerifierReads`."""
        if self._consent is not None and self._consent.get("consent_id") == consent_id:
            return self._consent
        return self._fallback.consent(consent_id)


def kept_size(kept: str | None) -> int:
    """The tree size a checkpoint's text states, unverified (0 when there is none or it
    does not parse): the hint ``since`` for the exchange, or the key of the evidence's
    proofs; the verifier checks every checkpoint itself."""
    if kept is None:
        return 0
    try:
        return Checkpoint.from_text(SignedNote.from_text(kept).text).size
    except (CheckpointError, ValueError):
        return 0


def _is_index(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _maybe_b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return None


def _maybe_hashes(value: object) -> tuple[bytes, ...] | None:
    if not isinstance(value, list):
        return None
    decoded = [_maybe_b64(h) for h in value]
    if any(d is None for d in decoded):
        return None
    return tuple(d for d in decoded if d is not None)
