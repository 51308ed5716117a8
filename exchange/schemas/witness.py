"""Witnesses at the HTTP edge: fork reports in, cosignature receipts and checkpoint pages out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CheckpointPage", "CosignatureAccepted", "ForkRecorded", "ForkReport"]


class ForkReport(BaseModel):
    """Two signed checkpoints of this ledger that cannot both be its history."""

    model_config = ConfigDict(extra="forbid")

    checkpoints: list[str] = Field(
        min_length=2,
        max_length=2,
        description="the two signed notes (C2SP), each signed by this ledger's key",
    )
    consistency: list[str] | None = Field(
        None,
        max_length=128,
        description="the consistency proof (base64 hashes) the exchange served between "
        "them, if any: kept as evidence",
    )
    reason: str = Field("", max_length=500, description="what the witness saw, in words")


class ForkRecorded(BaseModel):
    """A fork report accepted: the ``witness.fork`` alert's ledger index."""

    alert_index: int = Field(ge=0)
    reason: str


class CosignatureAccepted(BaseModel):
    """A cosignature kept: on which checkpoint, its timestamp, the entry recording it."""

    witness: str
    size: int = Field(ge=0)
    timestamp: int = Field(ge=0)
    index: int = Field(ge=0, description="the ledger.cosignature entry's index")
    new: bool = Field(description="false when this witness had cosigned this size before")


class CheckpointPage(BaseModel):
    """Stored checkpoints in ascending size, each with its cosignature lines."""

    checkpoints: list[str] = Field(description="signed notes: the ledger's line, then cosignatures")
    next: int | None = Field(description="the ``start`` of the next page; null at the end")
