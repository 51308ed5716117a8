"""The ledger entry the exchange writes when a witness's cosignature is accepted.

``ledger.cosignature`` (actor: the witness; subjects: the witness's name)
records which checkpoint the witness cosigned and the cosignature itself, so
an auditor can check it offline (C2SP ``tlog-cosignature``: the signed
message is rebuilt from ``origin``, ``size`` and ``root``). A fork a witness
reports is an ``audit.alert`` (:class:`core.alerts.Alert`, rule
``witness.fork``), typed with the other alerts. The registry of every
package's entry types (``exchange/ledger_types.py``) takes :data:`ENTRY_TYPES`
from here.
"""

from __future__ import annotations

from typing import ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field

from core.canonical import JsonValue

__all__ = ["COSIGNATURE_EVENT", "ENTRY_TYPES", "CosignatureEntry"]

COSIGNATURE_EVENT: Final = "ledger.cosignature"


_JSON_INT = (1 << 53) - 1
"""The largest integer RFC 8785 (I-JSON) writes exactly: the entry must stay canonical."""


class CosignatureEntry(BaseModel):
    """A witness cosigned the ledger's checkpoint of ``size`` (``ledger.cosignature``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = COSIGNATURE_EVENT

    witness: str = Field(min_length=1, max_length=128, description="the witness identity")
    origin: str = Field(min_length=1, description="the checkpoint's origin line")
    size: int = Field(ge=0, le=_JSON_INT, description="the tree size the checkpoint states")
    root: str = Field(description="the checkpoint's root hash, base64")
    key_id: str = Field(
        pattern="^[0-9a-f]{8}$", description="the witness's cosignature/v1 key id, hex"
    )
    timestamp: int = Field(ge=0, le=_JSON_INT, description="the cosignature's POSIX time")
    cosignature: str = Field(
        description="base64(key id || u64 timestamp || Ed25519 signature), as on the note line"
    )

    def to_payload(self) -> dict[str, JsonValue]:
        """The ledger payload."""
        data: dict[str, JsonValue] = self.model_dump(mode="json")
        return data


ENTRY_TYPES: Final[tuple[type[BaseModel], ...]] = (CosignatureEntry,)
