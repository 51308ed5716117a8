"""Domain types of the decision point: requests, decisions, versions, test reports."""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NewType

from core.canonical import JsonValue
from core.clock import format_rfc3339, parse_rfc3339, require_aware

__all__ = [
    "Decision",
    "DecisionRequest",
    "DiffRow",
    "Effect",
    "Officer",
    "PolicyVersion",
    "SampleRequest",
    "Subject",
    "TestReport",
    "TestResult",
    "VersionHash",
    "VersionState",
]

logger = logging.getLogger(__name__)

VersionHash = NewType("VersionHash", str)
"""Lower-case hex SHA-256 of a version's canonical form."""

_HASH = re.compile(r"^[0-9a-f]{64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$")
OFFICER_ROLE = "security_officer"


def check_hash(value: str) -> VersionHash:
    """``value`` as a :data:`VersionHash`.

    Raises:
        ValueError: not 64 lower-case hex digits.
    """
    if not _HASH.fullmatch(value):
        raise ValueError(f"{value!r} is not a policy version hash (64 hex digits)")
    return VersionHash(value)


class Effect(enum.StrEnum):
    """The two outcomes of a decision."""

    ALLOW = "allow"
    DENY = "deny"


class VersionState(enum.StrEnum):
    """Lifecycle of a policy version: proposed → tested → approved → active.

    A version that is replaced by another activation goes back to ``approved``,
    so that it can be activated again (rollback).
    """

    PROPOSED = "proposed"
    TESTED = "tested"
    APPROVED = "approved"
    ACTIVE = "active"


@dataclass(frozen=True)
class Subject:
    """Who asks: an identity's name, its registry role and its industry (if any)."""

    name: str
    role: str
    industry: str | None = None

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.name):
            raise ValueError(f"subject name {self.name!r} is not a valid identity name")
        if not self.role or len(self.role) > 64:
            raise ValueError("subject role must be a non-empty short name")

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form (as given to Rego)."""
        return {"name": self.name, "role": self.role, "industry": self.industry}

    @classmethod
    def from_dict(cls, value: Mapping[str, JsonValue]) -> Subject:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: missing or mistyped fields.
        """
        name, role, industry = value.get("name"), value.get("role"), value.get("industry")
        if not isinstance(name, str) or not isinstance(role, str):
            raise ValueError("subject needs string 'name' and 'role'")
        if industry is not None and not isinstance(industry, str):
            raise ValueError("subject 'industry' must be a string or null")
        return cls(name, role, industry)


@dataclass(frozen=True)
class Officer:
    """The identity acting on a policy version (checked to be a security officer)."""

    name: str
    role: str


@dataclass(frozen=True)
class DecisionRequest:
    """One question to the decision point.

    ``resource`` is ``kind:id`` (e.g. ``dataset:cathode-energy``); Casbin judges
    the kind, Rego sees both. ``context`` holds the attributes (``domain``,
    ``classification``, ``purpose``...). ``at`` is the time of the request.
    """

    subject: Subject
    action: str
    resource: str
    context: Mapping[str, JsonValue]
    at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", require_aware(self.at, what="decision time"))

    @property
    def resource_kind(self) -> str:
        """The part of ``resource`` before the first ``:`` (the whole string if none)."""
        return self.resource.split(":", 1)[0]

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form (sample requests, diff reports)."""
        return {
            "subject": self.subject.to_dict(),
            "action": self.action,
            "resource": self.resource,
            "context": dict(self.context),
            "at": format_rfc3339(self.at),
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, JsonValue]) -> DecisionRequest:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: missing or mistyped fields.
        """
        subject, action, resource = value.get("subject"), value.get("action"), value.get("resource")
        context, at = value.get("context", {}), value.get("at")
        if not isinstance(subject, Mapping):
            raise ValueError("request needs a 'subject' object")
        if not isinstance(action, str) or not isinstance(resource, str):
            raise ValueError("request needs string 'action' and 'resource'")
        if not isinstance(context, Mapping):
            raise ValueError("request 'context' must be an object")
        if not isinstance(at, str):
            raise ValueError("request needs an RFC 3339 'at' time")
        return cls(Subject.from_dict(subject), action, resource, dict(context), parse_rfc3339(at))


@dataclass(frozen=True)
class Decision:
    """The answer: allow or not, every reason that counted, and the deciding version."""

    allow: bool
    reasons: tuple[str, ...]
    version: VersionHash | None

    @property
    def effect(self) -> Effect:
        """:attr:`Effect.ALLOW` or :attr:`Effect.DENY`."""
        return Effect.ALLOW if self.allow else Effect.DENY

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form."""
        return {"effect": self.effect.value, "reasons": list(self.reasons), "version": self.version}


@dataclass(frozen=True)
class SampleRequest:
    """A named request with the decision a version must give (its test table)."""

    name: str
    request: DecisionRequest
    expect: Effect
    reason: str | None = None
    """If set, a substring that one of the decision's reasons must contain."""

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form (as in ``requests.json``)."""
        out: dict[str, JsonValue] = {"name": self.name, "expect": self.expect.value}
        out.update(self.request.to_dict())
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_dict(cls, value: Mapping[str, JsonValue]) -> SampleRequest:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: missing or mistyped fields.
        """
        name, expect, reason = value.get("name"), value.get("expect"), value.get("reason")
        if not isinstance(name, str) or not name:
            raise ValueError("sample request needs a 'name'")
        if expect not in ("allow", "deny"):
            raise ValueError(f"sample request {name!r}: 'expect' must be 'allow' or 'deny'")
        if reason is not None and not isinstance(reason, str):
            raise ValueError(f"sample request {name!r}: 'reason' must be a string")
        try:
            request = DecisionRequest.from_dict(value)
        except ValueError as exc:
            raise ValueError(f"sample request {name!r}: {exc}") from exc
        return cls(name, request, Effect(str(expect)), reason)


@dataclass(frozen=True)
class TestResult:
    """One Rego ``test_`` rule or one sample request, passed or not, and why."""

    __test__ = False  # not a pytest class

    name: str
    passed: bool
    message: str = ""

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form."""
        return {"name": self.name, "passed": self.passed, "message": self.message}


@dataclass(frozen=True)
class TestReport:
    """The outcome of testing a version (its ``test_`` rules, then its sample requests)."""

    __test__ = False  # not a pytest class

    results: tuple[TestResult, ...]
    error: str | None = None
    """Set when the run itself failed (crash, timeout, memory): then nothing passed."""
    coverage: Mapping[str, JsonValue] | None = None
    """The coverage report (``policies.CoverageReport.to_dict()``), when it was measured;
    its verdicts are among ``results`` (``coverage: deny rules``…)."""

    @property
    def passed(self) -> bool:
        """True when the run completed and every result passed."""
        return self.error is None and bool(self.results) and all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form (stored with the version, summarised on the ledger)."""
        return {
            "passed": self.passed,
            "error": self.error,
            "results": [r.to_dict() for r in self.results],
            "coverage": dict(self.coverage) if self.coverage is not None else None,
        }


@dataclass(frozen=True)
class PolicyVersion:
    """A stored version's identity and lifecycle (its content stays in the store)."""

    hash: VersionHash
    state: VersionState
    proposed_by: str
    proposed_at: datetime
    tests_passed: bool | None = None
    tested_by: str | None = None
    approved_by: str | None = None
    activated_by: str | None = None
    activated_at: datetime | None = None
    summary: Mapping[str, int] = field(default_factory=dict)
    tested_at: datetime | None = None
    approved_at: datetime | None = None


@dataclass(frozen=True)
class DiffRow:
    """One sample request evaluated by the active and by a candidate version."""

    name: str
    active: Decision | None
    candidate: Decision

    @property
    def changed(self) -> bool:
        """True when the two versions decide differently (or nothing is active)."""
        return self.active is None or self.active.allow != self.candidate.allow
