"""Alerts (风险预警): one ledger entry shape for every package that raises one.

A service that finds a stored row disagreeing with the ledger, the risk rules
over the stream of ledger events, and a witness that sees a fork all record an
``audit.alert`` entry: which rule fired, how severe, about whom, what the
evidence is (ledger indices and, for a fork, the two checkpoints), in words a
security officer can act on. The entry is recorded in its own transaction, so
the refusal that follows (whose own transaction rolls back) does not take the
alert with it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from core.canonical import JsonValue
from core.events import Event

__all__ = ["ALERT_EVENT", "ALERT_SUBJECT", "Alert", "Severity"]

ALERT_EVENT: Final = "audit.alert"
ALERT_SUBJECT: Final = "audit:alerts"
"""Every alert entry is indexed under this subject (and its own): the alert list is one lookup."""


class Severity(enum.StrEnum):
    """How urgently a security officer should look."""

    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Alert:
    """One alert.

    ``rule``: a stable dotted name (``row.mismatch``, ``risk.denial_burst``,
    ``witness.fork``...); ``subject``: whom or what it is about (a requester, a
    consent id, an enterprise); ``evidence``: ledger indices it rests on;
    ``details``: rule-specific facts (counts, window, the disagreeing values).
    """

    rule: str
    severity: Severity
    subject: str
    message: str
    evidence: Sequence[int] = ()
    details: Mapping[str, JsonValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.rule or not self.subject or not self.message:
            raise ValueError("an alert names its rule, its subject and what is wrong")

    def to_payload(self) -> dict[str, JsonValue]:
        """The ``audit.alert`` entry payload."""
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "subject": self.subject,
            "message": self.message,
            "evidence": list(self.evidence),
            "details": dict(self.details),
        }

    def event(self, actor: str) -> Event:
        """The ledger event recording this alert, raised by ``actor``, indexed under
        :data:`ALERT_SUBJECT` and the alert's subject."""
        return Event(ALERT_EVENT, actor, self.to_payload(), subjects=(ALERT_SUBJECT, self.subject))
