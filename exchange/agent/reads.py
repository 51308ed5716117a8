"""What the agent reads from the exchange to check a task, behind one small protocol.

:class:`ExchangeReads` speaks the API (``/v1/ledger/...``, ``/v1/consents/{id}``);
every answer is only material to verify, never believed. Tests can hand the
verifier any other :class:`VerifierReads`, e.g. a real ledger read directly.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from core.canonical import canonical_bytes
from core.errors import CanonicalJsonError
from exchange.agent.errors import TaskRefused
from exchange.error_table import RemoteRefusalError

if TYPE_CHECKING:
    from exchange.client import ExchangeClient

__all__ = ["ExchangeReads", "VerifierReads"]


class VerifierReads(Protocol):
    """The reads a verification needs."""

    def checkpoint_text(self) -> str:
        """The latest signed checkpoint (C2SP signed note)."""
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
