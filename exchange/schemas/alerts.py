"""Alerts at the HTTP edge: ``GET /v1/alerts`` pages (``exchange/routes/alerts.py``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = ["AlertPage", "AlertPublic"]


class AlertPublic(BaseModel):
    """One alert as recorded (``audit.alert``), with where and when."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="the alert's ledger index")
    time: str = Field(description="when it was recorded (RFC 3339)")
    actor: str = Field(description="who raised it (ibx-risk, a service, a witness)")
    rule: str = Field(description="row.mismatch, risk.<name> or witness.fork")
    severity: str = Field(description="warning or critical")
    subject: str = Field(description="whom or what it is about")
    message: str
    evidence: list[int] = Field(description="the ledger indices it rests on")
    details: dict[str, JsonValue] = Field(description="rule-specific facts")


class AlertPage(BaseModel):
    """A page of alerts in index order."""

    model_config = ConfigDict(extra="forbid")

    items: list[AlertPublic]
    next_since: int | None = Field(description="?since= of the next page; null on the last")
