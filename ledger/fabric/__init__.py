"""The ledger on a Hyperledger Fabric channel, for consortium deployments (docs/fabric.md).

The SQL log stays the transactional record and the proof index; a shipper
takes committed entries (full mode) or signed checkpoints (anchor mode) to the
channel in order, through the Fabric Gateway, and the chaincode on every
endorsing organisation's peer checks that they continue the log.

Loading this package loads no gRPC: the gateway client, the shipper and the
chaincode service are imported from their modules when used.
"""

from ledger.fabric.channel import LedgerChannel
from ledger.fabric.config import FabricConfig, FabricMode
from ledger.fabric.errors import (
    ChaincodeRefusedError,
    CommitConflictError,
    EndorsementError,
    EndorserFailure,
    FabricConfigError,
    FabricError,
    FabricUnavailableError,
    TransactionInvalidError,
)
from ledger.fabric.wire import (
    AnchorHead,
    AnchorPage,
    AnchorRequest,
    AppendBatch,
    ChannelHead,
    EntryPage,
    LedgerEvent,
    LogGenesis,
    Refusal,
    WireError,
)

__all__ = [
    "AnchorHead",
    "AnchorPage",
    "AnchorRequest",
    "AppendBatch",
    "ChaincodeRefusedError",
    "ChannelHead",
    "CommitConflictError",
    "EndorsementError",
    "EndorserFailure",
    "EntryPage",
    "FabricConfig",
    "FabricConfigError",
    "FabricError",
    "FabricMode",
    "FabricUnavailableError",
    "LedgerChannel",
    "LedgerEvent",
    "LogGenesis",
    "Refusal",
    "TransactionInvalidError",
    "WireError",
]
