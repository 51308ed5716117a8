"""The policy decision point: Casbin (RBAC with domains) AND Rego (attribute rules).

Every use of data in ibx asks :meth:`PolicyDecisionPoint.decide`; security
officers change the policy through versions that are proposed, tested,
approved by a second officer and activated (see ``docs/policies.md``), each
step a duty the officer signs with their own key (:func:`sign_policy_step`)
and the decision point verifies against the key the ledger records for them.
The entries it writes are typed (:mod:`policies.entries`); the active
version's row is checked against the latest ``policy.activate`` entry
(:class:`ActivationRecord`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from policies._coverage_report import CoverageReport, CoverageThresholds, RuleCoverage
from policies._duties import POLICY_STEPS, ActivationRecord, sign_policy_step
from policies._model import (
    Decision,
    DecisionRequest,
    DiffRow,
    Effect,
    Officer,
    PolicyVersion,
    SampleRequest,
    Subject,
    TestReport,
    TestResult,
    VersionHash,
    VersionState,
)
from policies._release_terms import OrderStatistics, ReleaseTerms
from policies._sandbox import (
    SandboxLimits,
    SandboxRun,
    check_in_sandbox,
    run_sandbox,
    run_tests_in_sandbox,
)
from policies._source import (
    BASELINE_PACK,
    CasbinLine,
    PolicySource,
    RegoModule,
    parse_requests_file,
)
from policies.entries import (
    ACTIVE_SUBJECT,
    ENTRY_TYPES,
    CoverageSummary,
    PolicyActivateEntry,
    PolicyApproveEntry,
    PolicyProposeEntry,
    PolicyTestEntry,
)
from policies.errors import (
    ActiveVersionMismatchError,
    CasbinLineError,
    FourEyesError,
    OfficerRequiredError,
    OpaServerError,
    PolicyError,
    PolicyInputError,
    PolicyLifecycleError,
    PolicyLockoutError,
    PolicyNotFoundError,
    PolicySandboxError,
    PolicyTestsFailedError,
    RegoSourceError,
    SandboxMemoryError,
    UnsafeRegoError,
)

if TYPE_CHECKING:
    from policies._engine import CompiledPolicy, InputSchema, Verdict, combine, prepare_input
    from policies._opa import OpaEvaluator
    from policies._rego_check import ALLOWED_BUILTINS
    from policies._service import PolicyConfig, PolicyDecisionPoint

_LAZY = {
    "PolicyConfig": "policies._service",
    "PolicyDecisionPoint": "policies._service",
    "ALLOWED_BUILTINS": "policies._rego_check",
    "CompiledPolicy": "policies._engine",
    "InputSchema": "policies._engine",
    "OpaEvaluator": "policies._opa",
    "Verdict": "policies._engine",
    "combine": "policies._engine",
    "prepare_input": "policies._engine",
}
"""Names whose modules load the Rego engine (regopy, and TenSEAL through it) or the
database layer (SQLAlchemy): imported on first use, so a client that only reads policy
versions or a coverage report over HTTP pays for neither."""


def __getattr__(name: str) -> object:
    """Load a Rego-bound name on first use (PEP 562).

    Raises:
        AttributeError: ``name`` is not part of the package.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'policies' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


MIGRATIONS = Path(__file__).parent / "migrations"
"""The policies package's Alembic branch."""

__all__ = [
    "ACTIVE_SUBJECT",
    "ALLOWED_BUILTINS",
    "BASELINE_PACK",
    "ENTRY_TYPES",
    "MIGRATIONS",
    "POLICY_STEPS",
    "ActivationRecord",
    "ActiveVersionMismatchError",
    "CasbinLine",
    "CasbinLineError",
    "CompiledPolicy",
    "CoverageReport",
    "CoverageSummary",
    "CoverageThresholds",
    "Decision",
    "DecisionRequest",
    "DiffRow",
    "Effect",
    "FourEyesError",
    "InputSchema",
    "Officer",
    "OfficerRequiredError",
    "OpaEvaluator",
    "OpaServerError",
    "OrderStatistics",
    "PolicyActivateEntry",
    "PolicyApproveEntry",
    "PolicyConfig",
    "PolicyDecisionPoint",
    "PolicyError",
    "PolicyInputError",
    "PolicyLifecycleError",
    "PolicyLockoutError",
    "PolicyNotFoundError",
    "PolicyProposeEntry",
    "PolicySandboxError",
    "PolicySource",
    "PolicyTestEntry",
    "PolicyTestsFailedError",
    "PolicyVersion",
    "RegoModule",
    "RegoSourceError",
    "ReleaseTerms",
    "RuleCoverage",
    "SampleRequest",
    "SandboxLimits",
    "SandboxMemoryError",
    "SandboxRun",
    "Subject",
    "TestReport",
    "TestResult",
    "UnsafeRegoError",
    "Verdict",
    "VersionHash",
    "VersionState",
    "check_in_sandbox",
    "combine",
    "parse_requests_file",
    "prepare_input",
    "run_sandbox",
    "run_tests_in_sandbox",
    "sign_policy_step",
]
