"""How the ledger reaches its Fabric channel (``IBX_LEDGER_FABRIC_*``, docs/fabric.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["FabricConfig", "FabricMode"]


class FabricMode(StrEnum):
    """What goes on the channel."""

    FULL = "full"
    """Every entry, in batches; the chaincode extends the compact range and recomputes the root."""
    ANCHOR = "anchor"
    """Signed checkpoints only, each with a consistency proof from the last one."""


@dataclass(frozen=True)
class FabricConfig:
    """One organisation's client identity and the channel it ships to.

    Attributes:
        mode: full or anchor.
        gateway: the peer's Gateway endpoint, ``host:port``.
        tls_root: PEM file of the CA that issued the peer's TLS certificate.
        msp_id: the client identity's MSP id (its organisation).
        cert: PEM file of the client identity's X.509 certificate (enrolled by the org's CA).
        key: PEM file of its ECDSA P-256 private key (mode 0600; may be encrypted).
        channel: the channel name.
        chaincode: the chaincode name on that channel.
        server_name: the name to check on the peer's TLS certificate, if not the host.
        key_password: the key file's password, if it is encrypted.
        batch_size: entries per full-mode transaction (at most 1000).
        timeout: seconds for one gateway call.
        retries: attempts of a call that failed transiently (same transaction id).
    """

    mode: FabricMode
    gateway: str
    tls_root: Path
    msp_id: str
    cert: Path
    key: Path
    channel: str
    chaincode: str
    server_name: str | None = None
    key_password: bytes | None = None
    batch_size: int = 500
    timeout: float = 30.0
    retries: int = 5
