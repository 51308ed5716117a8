"""The ledger on a Hyperledger Fabric channel, for consortium deployments (docs/fabric.md).

The SQL log stays the transactional record and the proof index; a shipper
takes committed entries (full mode) or signed checkpoints (anchor mode) to the
channel in order, through the Fabric Gateway, and the chaincode on every
endorsing organisation's peer checks that they continue the log.

Loading this package loads no gRPC: the gateway client, the shipper and the
chaincode service are imported from their modules when used.
"""

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from ledger.fabric.gateway import GatewayChannel, GatewayClient, Submitted, open_channel
    from ledger.fabric.identity import FabricIdentity

_LAZY = {
    "FabricIdentity": "ledger.fabric.identity",
    "GatewayChannel": "ledger.fabric.gateway",
    "GatewayClient": "ledger.fabric.gateway",
    "Submitted": "ledger.fabric.gateway",
    "open_channel": "ledger.fabric.gateway",
}


def __getattr__(name: str) -> object:
    """The gateway client and identity load on first use (PEP 562): importing this package
    loads no gRPC or protobuf.

    Raises:
        AttributeError: not a name of this package.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger.fabric' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
    "FabricIdentity",
    "FabricMode",
    "FabricUnavailableError",
    "GatewayChannel",
    "GatewayClient",
    "LedgerChannel",
    "LedgerEvent",
    "LogGenesis",
    "Refusal",
    "Submitted",
    "TransactionInvalidError",
    "WireError",
    "open_channel",
]
