"""HTTP models of the policy routes: a pack upload, versions, test reports, diffs, decisions.

The answers carry exactly the fields ``ibx policy ... --json`` prints, so the
command line shows the same document whether it runs locally or remotely.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.canonical import JsonValue
from core.clock import format_rfc3339
from exchange.schemas.duties import SignedDutyBody
from policies import Decision, DiffRow, PolicyVersion, TestReport

__all__ = [
    "DecisionCreate",
    "DecisionPublic",
    "DiffCreate",
    "DiffPublic",
    "DiffRowPublic",
    "PolicyProposal",
    "PolicySourcePublic",
    "PolicySourceUpload",
    "PolicyStepCreate",
    "PolicyVersionPublic",
    "StoredTestReportPublic",
    "TestReportPublic",
    "TestResultPublic",
]

MAX_LINES = 10_000
MAX_MODULES = 64
MAX_REQUESTS = 1_000


class PolicySourceUpload(BaseModel):
    """A policy pack in its canonical form (``policies.PolicySource.to_dict()``).

    The exchange re-checks all of it (the vocabulary, the lines, and the Rego
    in its sandbox); the version's hash is that of this content.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(..., min_length=1, description="the Casbin model (model.conf)")
    lines: list[list[str]] = Field(
        ..., max_length=MAX_LINES, description="Casbin lines, each [ptype, values...]"
    )
    modules: dict[str, str] = Field(
        ..., max_length=MAX_MODULES, description="Rego modules by file name"
    )
    data: dict[str, Any] = Field(..., description="the data document (data.json)")
    requests: list[dict[str, Any]] = Field(
        default_factory=list, max_length=MAX_REQUESTS, description="sample requests"
    )

    def to_source_dict(self) -> dict[str, JsonValue]:
        """The canonical-form mapping ``PolicySource.from_dict`` reads."""
        value: dict[str, JsonValue] = self.model_dump(
            mode="json", include={"model", "lines", "modules", "data", "requests"}
        )
        return value


class PolicyProposal(PolicySourceUpload):
    """``POST /v1/policies``: the pack and the proposing officer's signed duty
    (``policy.propose`` on the pack's version hash, ``PolicySource.hash``)."""

    duty: SignedDutyBody


class PolicyStepCreate(BaseModel):
    """``POST /v1/policies/{ref}/test|approve|activate``: the officer's signed duty
    (``policy.<step>`` on the full version hash)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duty: SignedDutyBody


class PolicyVersionPublic(BaseModel):
    """A stored version (the full hash; times in RFC 3339 with microseconds)."""

    model_config = ConfigDict(frozen=True)

    hash: str
    state: str
    proposed_by: str
    proposed_at: str
    tests: str = Field(..., description="untested, passed or failed")
    tested_by: str | None
    approved_by: str | None
    activated_by: str | None
    activated_at: str | None
    summary: dict[str, int]
    tested_at: str | None = None
    approved_at: str | None = None

    @classmethod
    def from_version(cls, version: PolicyVersion) -> PolicyVersionPublic:
        """The wire form of a stored version."""
        return cls(
            hash=version.hash,
            state=str(version.state),
            proposed_by=version.proposed_by,
            proposed_at=format_rfc3339(version.proposed_at),
            tests={None: "untested", True: "passed", False: "failed"}[version.tests_passed],
            tested_by=version.tested_by,
            approved_by=version.approved_by,
            activated_by=version.activated_by,
            activated_at=format_rfc3339(version.activated_at) if version.activated_at else None,
            summary=dict(version.summary),
            tested_at=format_rfc3339(version.tested_at) if version.tested_at else None,
            approved_at=format_rfc3339(version.approved_at) if version.approved_at else None,
        )

    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON object (``policy list --json`` prints these)."""
        value: dict[str, JsonValue] = self.model_dump(mode="json")
        return value


class PolicySourcePublic(PolicySourceUpload):
    """``GET /v1/policies/{ref}/source``: a stored version's content (its Casbin lines read
    back from their table) and its hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hash: str


class TestResultPublic(BaseModel):
    """One Rego ``test_`` rule or sample request."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    message: str


class TestReportPublic(BaseModel):
    """The outcome of a test run; ``coverage`` is ``policies.CoverageReport.to_dict()``."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True)

    passed: bool
    error: str | None
    results: list[TestResultPublic]
    coverage: dict[str, Any] | None

    @classmethod
    def from_report(cls, report: TestReport) -> TestReportPublic:
        """The wire form of a test report."""
        return cls.model_validate(report.to_dict())

    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON object (``policy test --json`` prints it)."""
        value: dict[str, JsonValue] = self.model_dump(mode="json")
        return value


class StoredTestReportPublic(BaseModel):
    """``GET /v1/policies/{ref}/report``: the version's last test run, who ran it and when."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True)

    hash: str
    tested_by: str | None
    tested_at: str | None
    report: TestReportPublic | None = Field(..., description="null: never tested")


class DecisionPublic(BaseModel):
    """A decision: ``allow`` or ``deny``, every reason, and the deciding version."""

    model_config = ConfigDict(frozen=True)

    effect: str = Field(..., description="allow or deny")
    reasons: list[str]
    version: str | None

    @classmethod
    def from_decision(cls, decision: Decision) -> DecisionPublic:
        """The wire form of a decision."""
        return cls.model_validate(decision.to_dict())

    @property
    def allow(self) -> bool:
        """Whether the decision allows."""
        return self.effect == "allow"

    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON object (``policy decide --json`` prints it)."""
        value: dict[str, JsonValue] = self.model_dump(mode="json")
        return value


class DiffCreate(BaseModel):
    """Which sample requests to decide; none: the candidate version's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: list[dict[str, Any]] | None = Field(
        None, max_length=MAX_REQUESTS, description="sample requests, as in requests.json"
    )


class DiffRowPublic(BaseModel):
    """One sample request under the active version (null if none) and the candidate."""

    model_config = ConfigDict(frozen=True)

    name: str
    changed: bool
    active: DecisionPublic | None
    candidate: DecisionPublic

    @classmethod
    def from_row(cls, row: DiffRow) -> DiffRowPublic:
        """The wire form of a diff row."""
        return cls(
            name=row.name,
            changed=row.changed,
            active=DecisionPublic.from_decision(row.active) if row.active is not None else None,
            candidate=DecisionPublic.from_decision(row.candidate),
        )

    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON object (``policy diff --json`` prints a list of these)."""
        value: dict[str, JsonValue] = self.model_dump(mode="json")
        return value


class DiffPublic(BaseModel):
    """A dry run: every sample request, in the order given."""

    model_config = ConfigDict(frozen=True)

    rows: list[DiffRowPublic]


class DecisionCreate(BaseModel):
    """A question to the active policy, on behalf of a registered identity (the playground)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(
        ..., min_length=1, max_length=200, description="identity name of the requester"
    )
    action: str = Field(..., min_length=1, max_length=200, examples=["compute"])
    resource: str = Field(..., min_length=1, max_length=400, examples=["dataset:cell-energy"])
    context: dict[str, Any] = Field(
        default_factory=dict, description='attributes, e.g. {"domain": "lithium-battery"}'
    )
    at: str | None = Field(
        None, max_length=64, description="RFC 3339 time for a what-if (default: now)"
    )
