"""Policy errors.

::

    PolicyError
    ├── PolicyInputError          a policy dir, file or request that cannot be used
    │   ├── RegoSourceError       a Rego syntax/type error (file, line, column)
    │   │   └── UnsafeRegoError   a refused built-in, `with` or test_ rule (parsed tree)
    │   └── CasbinLineError       a Casbin line that is malformed or names an unknown role/action
    ├── PolicyNotFoundError       no policy version with that hash (or prefix)
    ├── PolicyLifecycleError      a transition the version's state does not allow
    │   ├── PolicyTestsFailedError  approving a version whose tests did not pass
    │   └── PolicyLockoutError  a version that would lock the security officers out of policy
    ├── FourEyesError             the proposer tried to approve or activate their own version
    ├── OfficerRequiredError      the acting identity is not a security officer
    ├── ActiveVersionMismatchError  the active row disagrees with the ledger's activations
    ├── PolicySandboxError        the test subprocess crashed, timed out or spoke nonsense
    │   └── SandboxMemoryError    it passed its resident-memory bound and was killed
    └── OpaServerError            the configured OPA server refused or failed

A signed duty that does not verify raises :class:`core.duty.DutyError` (not a
``PolicyError``: every package that checks duties raises the same).

Evaluation errors never escape :meth:`policies.PolicyDecisionPoint.decide`:
they become a deny whose reasons say why (fail closed).
"""

from __future__ import annotations

from core.errors import IbxError

__all__ = [
    "ActiveVersionMismatchError",
    "CasbinLineError",
    "FourEyesError",
    "OfficerRequiredError",
    "OpaServerError",
    "PolicyError",
    "PolicyInputError",
    "PolicyLifecycleError",
    "PolicyLockoutError",
    "PolicyNotFoundError",
    "PolicySandboxError",
    "PolicyTestsFailedError",
    "RegoSourceError",
    "SandboxMemoryError",
    "UnsafeRegoError",
]


class PolicyError(IbxError):
    """Root of every error raised by :mod:`policies`."""

    title = "policy error"


class PolicyInputError(PolicyError):
    """A policy directory, file or request that cannot be used as given."""

    title = "invalid policy input"


class RegoSourceError(PolicyInputError):
    """A Rego module that does not parse or type-check.

    ``file``, ``line`` and ``column`` (1-based) locate the first error.
    """

    title = "invalid Rego"

    def __init__(self, message: str, *, file: str, line: int, column: int) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file = file
        self.line = line
        self.column = column


class UnsafeRegoError(RegoSourceError):
    """A construct the sandbox rules refuse, found on the module's parsed tree.

    A built-in outside the allowlist, ``with`` outside a ``test_`` rule of a
    ``_test`` package, a ``test_`` rule elsewhere. ``construct`` names the
    refused built-in or function when there is one.
    """

    title = "refused Rego construct"

    def __init__(
        self, message: str, *, file: str, line: int, column: int, construct: str = ""
    ) -> None:
        super().__init__(message, file=file, line=line, column=column)
        self.construct = construct


class CasbinLineError(PolicyInputError):
    """A Casbin policy line that is malformed or names an unknown role, action or domain."""

    title = "invalid Casbin policy line"

    def __init__(self, message: str, *, file: str, line: int) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line


class PolicyNotFoundError(PolicyError):
    """No stored policy version matches."""

    title = "policy version not found"


class PolicyLifecycleError(PolicyError):
    """A lifecycle transition that the version's current state does not allow."""

    title = "policy lifecycle violation"


class PolicyTestsFailedError(PolicyLifecycleError):
    """Approval of a version whose own tests have not passed."""

    title = "policy tests have not passed"


class PolicyLockoutError(PolicyLifecycleError):
    """Approval or activation of a version whose own decisions would deny the security
    officers the actions that manage policy (nobody could change policy again).

    ``actions`` names the denied actions.
    """

    title = "policy would lock out the security officers"

    def __init__(self, message: str, *, actions: tuple[str, ...]) -> None:
        super().__init__(message)
        self.actions = actions


class FourEyesError(PolicyError):
    """The officer who proposed a version tried to approve or activate it."""

    title = "four-eyes rule violated"


class OfficerRequiredError(PolicyError):
    """Only a security officer may change policy."""

    title = "security officer required"


class ActiveVersionMismatchError(PolicyError):
    """The ``policy_active`` row names another version than the ledger's latest
    ``policy.activate`` (it was changed outside the four-eyes workflow): nothing is
    decided under it until an officer activates a version."""

    title = "active policy disagrees with the ledger"


class PolicySandboxError(PolicyError):
    """The separate process that checks and tests officer-supplied Rego failed."""

    title = "policy sandbox failed"


class SandboxMemoryError(PolicySandboxError):
    """The sandbox child passed its resident-memory bound and was killed.

    ``limit`` is the bound in bytes.
    """

    title = "policy sandbox out of memory"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class OpaServerError(PolicyError):
    """The configured OPA server refused a module or could not evaluate a query."""

    title = "OPA server error"
