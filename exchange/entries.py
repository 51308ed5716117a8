"""The ledger entries the exchange itself writes (beyond identities and the pipeline).

One model per entry type; ``TYPE`` is the entry type, the fields are exactly
the payload, unknown members are refused (``docs/audit.md``, "Typed
entries"; JSON Schema in ``docs/schemas/ledger/``).

* ``authz.decision`` — :class:`AuthzDecisionEntry`: the policy decision on a
  write call (every denial; the allows a route records).
* ``audit.alert`` — :class:`AlertEntry`: an alert, whoever raised it; it mirrors
  :meth:`core.alerts.Alert.to_payload` (``core`` writes it and cannot import
  this module; a test holds the two together).
* ``audit.risk_rules`` — :class:`RiskRulesEntry`: the risk rules in force when the
  exchange's risk watch started (``exchange/risk_watch.py``).

The identity registry's entries are in :mod:`exchange.identity_entries`, the
pipeline's in :mod:`exchange.pipeline.entries`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from core.alerts import ALERT_EVENT, Alert, Severity
from core.canonical import JsonValue as CoreJsonValue

__all__ = [
    "ENTRY_TYPES",
    "AlertEntry",
    "AuthzDecisionEntry",
    "DifferencingRuleEntry",
    "OffHoursRuleEntry",
    "RiskRuleEntry",
    "RiskRulesEntry",
]

_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class AuthzDecisionEntry(BaseModel):
    """``authz.decision``: the policy decision on a write call (actor: the caller)."""

    TYPE: ClassVar[str] = "authz.decision"
    model_config = _CONFIG

    role: str = Field(min_length=1)
    """The caller's role."""
    action: str = Field(min_length=1)
    """The action asked (``consent.grant``, ``request.create``...)."""
    resource: str = Field(min_length=1)
    """``kind:id`` of what the call acts on (``kind:*`` when it names none)."""
    effect: Literal["allow", "deny"]
    """The decision."""
    policy_version: str | None
    """Content hash of the policy version that decided, ``null`` when none is active."""
    reasons: tuple[str, ...]
    """The rules that decided a denial (empty for an allow)."""

    def payload(self) -> dict[str, CoreJsonValue]:
        """The ledger payload."""
        return self.model_dump(mode="json")


class AlertEntry(BaseModel):
    """``audit.alert``: an alert (``row.mismatch``, ``risk.*``, ``witness.fork``...)."""

    TYPE: ClassVar[str] = ALERT_EVENT
    model_config = _CONFIG

    rule: str = Field(min_length=1)
    """The rule that fired (a stable dotted name)."""
    severity: Severity
    """``warning`` or ``critical``."""
    subject: str = Field(min_length=1)
    """Whom or what it is about (a requester, a consent id, an enterprise)."""
    message: str = Field(min_length=1)
    """What is wrong, in words a security officer can act on."""
    evidence: tuple[Annotated[int, Field(ge=0)], ...]
    """Ledger indices the alert rests on."""
    details: dict[str, JsonValue]
    """Rule-specific facts (counts, window, the disagreeing values)."""

    @classmethod
    def of(cls, alert: Alert) -> AlertEntry:
        """The entry ``alert`` records (:meth:`core.alerts.Alert.to_payload`, parsed)."""
        return cls.model_validate(alert.to_payload())

    def alert(self) -> Alert:
        """The :class:`core.alerts.Alert` this entry records."""
        return Alert(
            rule=self.rule,
            severity=self.severity,
            subject=self.subject,
            message=self.message,
            evidence=self.evidence,
            details=self.details,
        )


class RiskRuleEntry(BaseModel):
    """One risk rule's thresholds as in force (a section of ``risk.toml``)."""

    model_config = _CONFIG

    enabled: bool
    """Whether the rule runs."""
    threshold: int = Field(ge=1)
    """Entries about one subject within the window that raise an alert."""
    window_minutes: int = Field(ge=1)
    """The sliding window, in minutes (also the quiet time after an alert)."""
    severity: Severity
    """The alerts' severity."""


class DifferencingRuleEntry(RiskRuleEntry):
    """``differencing``: which refusal reasons count."""

    reasons: tuple[str, ...] = Field(min_length=1)
    """A refused job counts when its reason starts with one of these."""


class OffHoursRuleEntry(RiskRuleEntry):
    """``off_hours_policy``: the working hours and the policy steps watched."""

    timezone: str = Field(min_length=1)
    """IANA time zone of the working hours."""
    start: str = Field(pattern=r"^[0-2][0-9]:[0-5][0-9]$")
    """Working hours start (``HH:MM``, included)."""
    end: str = Field(pattern=r"^[0-2][0-9]:[0-5][0-9]$")
    """Working hours end (``HH:MM``, excluded)."""
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...]
    """Working days."""
    types: tuple[str, ...]
    """The ``policy.*`` entry types that count."""


class RiskRulesEntry(BaseModel):
    """``audit.risk_rules``: the risk rules in force from now on (actor: ``ibx-risk``)."""

    TYPE: ClassVar[str] = "audit.risk_rules"
    model_config = _CONFIG

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex SHA-256 of the rules file's bytes (of the shipped defaults when none is set)."""
    source: Literal["file", "defaults"]
    """A rules file the security officer set, or the shipped defaults."""
    differencing: DifferencingRuleEntry
    """``risk.differencing``."""
    denial_burst: RiskRuleEntry
    """``risk.denial_burst``."""
    cohort_minimum: RiskRuleEntry
    """``risk.cohort_minimum``."""
    enrolment_failures: RiskRuleEntry
    """``risk.enrolment_failures``."""
    off_hours_policy: OffHoursRuleEntry
    """``risk.off_hours_policy``."""
    auth_failures: RiskRuleEntry
    """``risk.auth_failures``."""

    def payload(self) -> dict[str, CoreJsonValue]:
        """The ledger payload."""
        return self.model_dump(mode="json")


ENTRY_TYPES: Final[tuple[type[BaseModel], ...]] = (AuthzDecisionEntry, AlertEntry, RiskRulesEntry)
"""Every entry type the exchange writes outside the identity registry and the pipeline."""
