"""The ledger entries :mod:`policies` writes: one typed payload per four-eyes step.

Each model is the exact payload of its entry type (``TYPE``); the service
writes payloads from them (``model.model_dump(mode="json")``) and an auditor
parses entries back through them (an entry that does not parse is a finding).
Every step carries the acting officer's signed duty (``duty``, the wire form of
:class:`core.duty.SignedDuty`), so the step is checked offline against the
officer's ledgered key::

    policy.propose   {version, officer, summary, duty}
    policy.test      {version, officer, passed, results, failed, error, coverage, duty}
    policy.approve   {version, officer, proposer, approver, duty}
    policy.activate  {version, officer, previous, rollback, proposer, approver, activator, duty}

Subjects (the ledger's index, not part of the entry): the version hash and the
officer; an activation also ``policy:active`` (:data:`ACTIVE_SUBJECT`), which is
how the exchange finds the latest activation to check the active row against.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.duty import DutyError, SignedDuty

__all__ = [
    "ACTIVE_SUBJECT",
    "ENTRY_TYPES",
    "CoverageSummary",
    "PolicyActivateEntry",
    "PolicyApproveEntry",
    "PolicyProposeEntry",
    "PolicyTestEntry",
]

ACTIVE_SUBJECT: Final = "policy:active"
"""The extra subject of every ``policy.activate`` entry (the active version's index)."""

_HASH = r"^[0-9a-f]{64}$"


class _PolicyEntry(BaseModel):
    """Fields every policy step records: the version, the officer and their signed duty."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]

    version: str = Field(..., pattern=_HASH, description="the version hash acted on")
    officer: str = Field(..., min_length=1, description="the verified actor of the duty")
    duty: dict[str, Any] = Field(..., description="the officer's signed duty (core.duty)")

    @field_validator("duty")
    @classmethod
    def _signed_duty(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            SignedDuty.from_dict(value)
        except DutyError as exc:
            raise ValueError(str(exc)) from exc
        return value

    def signed_duty(self) -> SignedDuty:
        """The duty as :class:`core.duty.SignedDuty` (it parsed on construction)."""
        return SignedDuty.from_dict(self.duty)


class PolicyProposeEntry(_PolicyEntry):
    """``policy.propose``: a version stored as proposed; ``summary`` counts its parts."""

    TYPE: ClassVar[str] = "policy.propose"

    summary: dict[str, int]


class CoverageSummary(BaseModel):
    """How much of the version's Rego its test run exercised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deny_fired: int = Field(..., ge=0)
    deny_rules: int = Field(..., ge=0)
    lines_evaluated: int = Field(..., ge=0)
    lines: int = Field(..., ge=0)


class PolicyTestEntry(_PolicyEntry):
    """``policy.test``: a test run; ``failed`` names the failing tests, ``error`` a failed run."""

    TYPE: ClassVar[str] = "policy.test"

    passed: bool
    results: int = Field(..., ge=0)
    failed: list[str]
    error: str | None
    coverage: CoverageSummary | None


class PolicyApproveEntry(_PolicyEntry):
    """``policy.approve``: the second officer's approval (``approver`` is ``officer``)."""

    TYPE: ClassVar[str] = "policy.approve"

    proposer: str = Field(..., min_length=1)
    approver: str = Field(..., min_length=1)


class PolicyActivateEntry(_PolicyEntry):
    """``policy.activate``: the version made active; ``previous`` the one it replaced."""

    TYPE: ClassVar[str] = "policy.activate"

    previous: str | None = Field(..., pattern=_HASH)
    rollback: bool
    proposer: str = Field(..., min_length=1)
    approver: str = Field(..., min_length=1)
    activator: str = Field(..., min_length=1)


ENTRY_TYPES: Final[tuple[type[BaseModel], ...]] = (
    PolicyProposeEntry,
    PolicyTestEntry,
    PolicyApproveEntry,
    PolicyActivateEntry,
)
"""Every entry type :mod:`policies` writes (the exchange gathers them for ``audit``)."""
