"""The policy decision point: Casbin (RBAC with domains) AND Rego (attribute rules).

Every use of data in ibx asks :meth:`PolicyDecisionPoint.decide`; security
officers change the policy through versions that are proposed, tested,
approved by a second officer and activated (see ``docs/policies.md``).
"""

from pathlib import Path

from policies._coverage import CoverageReport, CoverageThresholds, RuleCoverage
from policies._engine import CompiledPolicy, InputSchema, Verdict, combine, prepare_input
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
from policies._opa import OpaEvaluator
from policies._rego_check import ALLOWED_BUILTINS
from policies._sandbox import (
    SandboxLimits,
    SandboxRun,
    check_in_sandbox,
    run_sandbox,
    run_tests_in_sandbox,
)
from policies._service import PolicyConfig, PolicyDecisionPoint
from policies._source import (
    BASELINE_PACK,
    CasbinLine,
    PolicySource,
    RegoModule,
    parse_requests_file,
)
from policies.errors import (
    CasbinLineError,
    FourEyesError,
    OfficerRequiredError,
    OpaServerError,
    PolicyError,
    PolicyInputError,
    PolicyLifecycleError,
    PolicyNotFoundError,
    PolicySandboxError,
    PolicyTestsFailedError,
    RegoSourceError,
    SandboxMemoryError,
    UnsafeRegoError,
)

MIGRATIONS = Path(__file__).parent / "migrations"
"""The policies package's Alembic branch."""

__all__ = [
    "ALLOWED_BUILTINS",
    "BASELINE_PACK",
    "MIGRATIONS",
    "CasbinLine",
    "CasbinLineError",
    "CompiledPolicy",
    "CoverageReport",
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
    "PolicyConfig",
    "PolicyDecisionPoint",
    "PolicyError",
    "PolicyInputError",
    "PolicyLifecycleError",
    "PolicyNotFoundError",
    "PolicySandboxError",
    "PolicySource",
    "PolicyTestsFailedError",
    "PolicyVersion",
    "RegoModule",
    "RegoSourceError",
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
]
