"""The ledger entries the exchange itself writes (beyond identities and the pipeline).

One model per entry type; ``TYPE`` is the entry type, the fields are exactly
the payload, unknown members are refused (``docs/audit.md``, "Typed
entries"; JSON Schema in ``docs/schemas/ledger/``).

* ``authz.decision`` — :class:`AuthzDecisionEntry`: the policy decision on a
  write call (every denial; the allows a route records).
* ``audit.alert`` — :class:`AlertEntry`: an alert, whoever raised it; it mirrors
  :meth:`core.alerts.Alert.to_payload` (``core`` writes it and cannot import
  this module; a test holds the two together).

The identity registry's entries are in :mod:`exchange.identity_entries`, the
pipeline's in :mod:`exchange.pipeline.entries`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from core.alerts import ALERT_EVENT, Alert, Severity
from core.canonical import JsonValue as CoreJsonValue

__all__ = ["ENTRY_TYPES", "AlertEntry", "AuthzDecisionEntry"]

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


ENTRY_TYPES: Final[tuple[type[BaseModel], ...]] = (AuthzDecisionEntry, AlertEntry)
"""Every entry type the exchange writes outside the identity registry and the pipeline."""
