"""What can go wrong between the ledger and a Fabric channel."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import LedgerError
from ledger.fabric.wire import Refusal

__all__ = [
    "ChaincodeRefusedError",
    "CommitConflictError",
    "EndorsementError",
    "EndorserFailure",
    "FabricConfigError",
    "FabricError",
    "FabricUnavailableError",
    "TransactionInvalidError",
]


class FabricError(LedgerError):
    """A Fabric operation failed; the message says which and why."""


class FabricConfigError(FabricError):
    """The Fabric settings are incomplete or unreadable (a file, a key, a certificate)."""


class FabricUnavailableError(FabricError):
    """The gateway could not be reached, or kept failing transiently, after the retries.

    Nothing was lost: the entries stay in the SQL log and are shipped when it answers.
    """


@dataclass(frozen=True)
class EndorserFailure:
    """One peer's answer in a failed endorsement (Fabric's ``gateway.ErrorDetail``)."""

    address: str
    msp_id: str
    message: str


class EndorsementError(FabricError):
    """Too few endorsers answered, or their answers differed: the endorsement policy
    (a majority of the consortium's organisations) could not be met."""

    def __init__(self, message: str, details: tuple[EndorserFailure, ...] = ()) -> None:
        super().__init__(message)
        self.details = details


class ChaincodeRefusedError(FabricError):
    """The chaincode refused the transaction (:class:`ledger.fabric.wire.Refusal`)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"the ledger chaincode refused: {refusal.message()}")
        self.refusal = refusal


class TransactionInvalidError(FabricError):
    """The transaction was ordered but the peers marked it invalid at commit."""

    def __init__(self, tx_id: str, code: str, block: int) -> None:
        super().__init__(f"transaction {tx_id} was committed invalid ({code}) in block {block}")
        self.tx_id = tx_id
        self.code = code
        self.block = block


class CommitConflictError(TransactionInvalidError):
    """An MVCC read conflict: another transaction changed the head first. Re-read and retry."""
