"""What a compute request would be decided now, before it is submitted (nothing recorded).

:meth:`exchange.pipeline.authorize.Authorizer.preview` runs the steps of a
submission ahead of the write lock — the data selected, the engine, the
consent check, the policy at the cohort the consents give, the minimum
cohort — and answers this :class:`RequestPreview` instead of recording a
decision. A refusal carries the very ``reason`` and ``detail`` the
submission's 403 would (``POST /v1/requests/preview``, docs/pipeline.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.canonical import JsonValue

__all__ = ["Covered", "NotCovered", "PolicyCheck", "RequestPreview"]


@dataclass(frozen=True)
class PolicyCheck:
    """One policy decision asked: for the first selected dataset of a classification."""

    classification: str
    dataset: str
    allow: bool
    reasons: tuple[str, ...]
    version: str | None

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form."""
        return {
            "classification": self.classification,
            "dataset": self.dataset,
            "allow": self.allow,
            "reasons": list(self.reasons),
            "version": self.version,
        }


@dataclass(frozen=True)
class Covered:
    """An owner whose consent would be used, and the dataset it would contribute."""

    owner: str
    dataset: str
    consent_id: str
    min_cohort: int

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form."""
        return {
            "owner": self.owner,
            "dataset": self.dataset,
            "consent_id": self.consent_id,
            "min_cohort": self.min_cohort,
        }


@dataclass(frozen=True)
class NotCovered:
    """An owner of a selected dataset that would be left out, and why (as the decision
    would record it: ``<reason code>: <detail>``)."""

    owner: str
    dataset: str | None
    reason: str

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form."""
        return {"owner": self.owner, "dataset": self.dataset, "reason": self.reason}


@dataclass(frozen=True)
class RequestPreview:
    """The decision a submission would meet now, with what it rests on.

    ``allowed`` false: ``reason`` (``policy`` or ``cohort``) and ``detail`` are the
    submission's refusal. ``policy`` lists the decisions asked, in order (a
    denying one ends the list); ``min_cohort`` is the strictest of
    ``policy_min_cohort`` and ``consent_min_cohorts``; ``cohort`` the owners the
    consents leave in (``covered``); ``left_out`` the others.
    """

    allowed: bool
    reason: str | None
    detail: str | None
    engine: str | None
    classification: str | None
    policy_version: str | None
    policy: tuple[PolicyCheck, ...]
    cohort: int
    min_cohort: int | None
    policy_min_cohort: int | None
    consent_min_cohorts: tuple[int, ...]
    covered: tuple[Covered, ...]
    left_out: tuple[NotCovered, ...]

    def __post_init__(self) -> None:
        if self.allowed != (self.reason is None):
            raise ValueError("a preview is allowed exactly when it has no refusal reason")

    @classmethod
    def refused_early(cls, reason: str, detail: str) -> RequestPreview:
        """A refusal before any consent was looked at (an industry without the fields)."""
        return cls(False, reason, detail, None, None, None, (), 0, None, None, (), (), ())

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form (the route's answer)."""
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "detail": self.detail,
            "engine": self.engine,
            "classification": self.classification,
            "policy_version": self.policy_version,
            "policy": [p.to_dict() for p in self.policy],
            "cohort": self.cohort,
            "min_cohort": self.min_cohort,
            "policy_min_cohort": self.policy_min_cohort,
            "consent_min_cohorts": list(self.consent_min_cohorts),
            "covered": [c.to_dict() for c in self.covered],
            "left_out": [o.to_dict() for o in self.left_out],
        }
