"""The ledger's view of its Fabric channel: the chaincode's functions as calls.

:class:`ledger.fabric.gateway.GatewayChannel` implements it over the Fabric
Gateway; the shipper and ``ibx ledger verify --fabric`` use only this.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ledger.fabric.wire import (
    AnchorHead,
    AnchorPage,
    AnchorRequest,
    AppendBatch,
    ChannelHead,
    EntryPage,
    LedgerEvent,
    LogGenesis,
)

__all__ = ["LedgerChannel"]


class LedgerChannel(Protocol):
    """One log (:attr:`log`, the ledger's origin) of the chaincode on one channel,
    through one organisation's gateway peer.

    Queries are evaluated on one peer; transactions are endorsed, submitted to
    ordering and waited for until committed. Every call raises
    :class:`ledger.fabric.errors.FabricError` subclasses only.
    """

    @property
    def log(self) -> str:
        """The log id every call names."""
        ...

    def genesis(self) -> LogGenesis | None:
        """The log's genesis (its checkpoint verifier key), or None before :meth:`create`."""
        ...

    def create(self, vkey: str) -> LogGenesis:
        """Record the log with its checkpoint verifier key (idempotent for the same key).

        Raises:
            ChaincodeRefusedError: ``exists`` with another key, or ``not-pinned``.
        """
        ...

    def head(self) -> ChannelHead:
        """Full mode's head (size 0 before the first batch; refused ``no-log`` before
        :meth:`create`)."""
        ...

    def entries(self, start: int, count: int) -> EntryPage:
        """Up to ``count`` (at most 1000) stored leaf inputs from ``start``."""
        ...

    def append(self, batch: AppendBatch) -> ChannelHead:
        """Submit one batch and wait until it is committed valid.

        Raises:
            ChaincodeRefusedError: refused at endorsement (gap, root mismatch, ...).
            CommitConflictError: another transaction moved the head first (re-read and re-plan).
            TransactionInvalidError: committed invalid for another reason.
            EndorsementError: too few endorsers answered or they disagreed.
            FabricUnavailableError: the gateway kept failing after the retries.
        """
        ...

    def anchor_head(self) -> AnchorHead:
        """Anchor mode's head (size 0 before the first anchor; refused ``no-log`` before
        :meth:`create`)."""
        ...

    def anchors(self, after: int, count: int) -> AnchorPage:
        """Up to ``count`` anchored checkpoint notes of size greater than ``after``."""
        ...

    def anchor(self, request: AnchorRequest) -> AnchorHead:
        """Submit one checkpoint and wait until it is committed valid (raises as :meth:`append`)."""
        ...

    def events(self, start_block: int | None = None) -> Iterator[LedgerEvent]:
        """This log's chaincode events from ``start_block`` (default: the next block), as
        committed; the iterator ends when the channel is closed."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...
