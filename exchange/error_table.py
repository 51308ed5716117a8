"""Which status and which exit code each error gets: one table, and it imports nothing.

The HTTP layer (:mod:`exchange.errors`) answers with :func:`status_for`; the
command line exits with :func:`exit_code_for`, derived from the same status,
so a refusal means the same locally and remotely. Rules name error classes by
their dotted path and are resolved against the modules already loaded: an
exception can only be an instance of a class whose module is loaded, so
looking up an error never imports the package that defines it (``ibx`` stays
fast on its error path too).
"""

from __future__ import annotations

import enum
import importlib
import sys
from dataclasses import dataclass

from core.errors import IbxError

__all__ = [
    "RULES",
    "AuthError",
    "ExitCode",
    "ForbiddenError",
    "NotFoundError",
    "RemoteRefusalError",
    "error_code",
    "exit_code_for",
    "register_status",
    "status_for",
]


class AuthError(IbxError):
    """Missing, unknown, expired or revoked credentials (one opaque message)."""

    title = "authentication required"


class ForbiddenError(IbxError):
    """An authenticated identity that may not do this."""

    title = "forbidden"


class NotFoundError(IbxError):
    """A named thing that does not exist."""

    title = "not found"


class RemoteRefusalError(IbxError):
    """An exchange answered with an HTTP error: carries its status and problem detail.

    The client side raises it so that a refusal seen over HTTP exits with the
    code the same error would give locally (:func:`exit_code_for`).
    """

    title = "refused by the exchange"

    def __init__(
        self, message: str, *, status: int, title: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        """The server's error code (:func:`error_code`), if it sent one."""
        if title:
            self.title = title


class ExitCode(enum.IntEnum):
    """What ``ibx`` exits with; the same for every command, local or remote."""

    OK = 0
    ERROR = 1
    """The operation failed: not found, conflict, bad state, server or I/O error."""
    USAGE = 2
    """The command line or an input is invalid."""
    DENIED = 3
    """Policy, consent or the release guard refused; the identity may not do this."""
    UNAUTHENTICATED = 4
    """No credentials, or unknown, expired or revoked ones."""
    VERIFICATION_FAILED = 5
    """An integrity check failed: ledger, checkpoint, signature, backup archive."""
    PARTIAL = 6
    """Done, but some items were skipped (each is named on stderr)."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C or a signal."""


@dataclass(frozen=True)
class _Rule:
    path: str
    status: int

    def matches(self, exc: BaseException) -> bool:
        module_name, _, name = self.path.rpartition(".")
        module = sys.modules.get(module_name)
        cls = getattr(module, name, None) if module is not None else None
        return isinstance(cls, type) and isinstance(exc, cls)

    def matches_class(self, error: type) -> bool:
        module_name, _, name = self.path.rpartition(".")
        module = sys.modules.get(module_name)
        cls = getattr(module, name, None) if module is not None else None
        return isinstance(cls, type) and issubclass(error, cls)


# Most specific first; the first matching rule wins.
RULES: tuple[_Rule, ...] = (
    _Rule("exchange.error_table.AuthError", 401),
    _Rule("exchange.auth_lockout.AuthLockedOutError", 429),
    _Rule("exchange.error_table.ForbiddenError", 403),
    _Rule("exchange.error_table.NotFoundError", 404),
    _Rule("exchange.identities.IdentityNotFoundError", 404),
    _Rule("exchange.identities.IdentityConflictError", 409),
    _Rule("exchange.pipeline.errors.InvalidComputeRequestError", 422),
    _Rule("exchange.pipeline.errors.RequestRefusedError", 403),
    _Rule("exchange.pipeline.errors.JobNotFoundError", 404),
    _Rule("exchange.pipeline.errors.JobStateError", 409),
    _Rule("exchange.pipeline.errors.StatementRefusedError", 403),
    _Rule("exchange.pipeline.errors.AnswerConflictError", 409),
    _Rule("exchange.pipeline.errors.NotCollectingError", 410),
    _Rule("exchange.pipeline.errors.InvalidPayloadError", 422),
    _Rule("exchange.pipeline.errors.EngineUnavailableError", 501),
    _Rule("exchange.pipeline.errors.PipelineError", 400),
    _Rule("ledger.errors.TreeSizeError", 400),
    _Rule("ledger.errors.EntryTooLargeError", 413),
    _Rule("ledger.errors.InvalidEntryError", 400),
    _Rule("ledger.errors.LedgerIntegrityError", 500),
    _Rule("ledger.errors.ProofError", 400),
    _Rule("ledger.errors.CheckpointError", 400),
    _Rule("exchange.witnessing.UnknownCheckpointError", 409),
    _Rule("exchange.witnessing.ForkReportRefusedError", 422),
    _Rule("edge_tls.errors.BootstrapTokenError", 401),
    _Rule("edge_tls.errors.IdentityMismatchError", 403),
    _Rule("edge_tls.errors.CertificateRejectedError", 401),
    _Rule("edge_tls.errors.CsrError", 400),
    _Rule("edge_tls.errors.CaNotInitializedError", 503),
    _Rule("edge_tls.errors.CaAlreadyInitializedError", 409),
    _Rule("edge_tls.errors.SerialNotFoundError", 404),
    _Rule("edge_tls.errors.AlreadyRevokedError", 409),
    _Rule("edge_tls.errors.SealingKeyMissingError", 409),
    _Rule("edge_tls.errors.BatchTooLargeError", 413),
    _Rule("edge_tls.errors.UploadQuotaError", 429),
    _Rule("edge_tls.errors.RenewalRefusedError", 401),
    _Rule("edge_tls.errors.RenewalUnavailableError", 503),
    _Rule("edge_tls.errors.EnrollmentError", 400),
    _Rule("consent.errors.ConsentAccessError", 403),
    _Rule("consent.errors.ConsentNotFoundError", 404),
    _Rule("consent.errors.UnknownDatasetError", 404),
    _Rule("consent.errors.DatasetExistsError", 409),
    _Rule("consent.errors.ReplayedNonceError", 409),
    _Rule("consent.errors.ConsentRefusedError", 422),
    _Rule("consent.errors.ConsentError", 400),
    _Rule("core.duty.DutyError", 403),
    _Rule("policies.errors.OfficerRequiredError", 403),
    _Rule("policies.errors.ActiveVersionMismatchError", 409),
    _Rule("policies.errors.FourEyesError", 403),
    _Rule("policies.errors.PolicyNotFoundError", 404),
    _Rule("policies.errors.PolicyLifecycleError", 409),
    _Rule("policies.errors.PolicySandboxError", 422),
    _Rule("policies.errors.OpaServerError", 502),
    _Rule("policies.errors.PolicyInputError", 422),
    _Rule("policies.errors.PolicyError", 400),
    _Rule("mpc.errors.PartyTimeoutError", 504),
    _Rule("mpc.errors.PartyError", 502),
    _Rule("mpc.errors.DeploymentError", 500),
    _Rule("mpc.errors.ReleaseRefusedError", 403),
    _Rule("mpc.errors.CustodianError", 403),
    _Rule("mpc.errors.InvalidContributionError", 422),
    _Rule("exchange.backup.errors.BackupError", 409),
    _Rule("core.errors.CanonicalJsonError", 400),
    _Rule("core.errors.ConfigurationError", 500),
    _Rule("core.errors.IbxError", 400),
)

_VERIFICATION = (
    "ledger.errors.LedgerIntegrityError",
    "ledger.errors.CheckpointError",
    "ledger.errors.ProofError",
    "consent.errors.BadConsentSignatureError",
    "exchange.backup.errors.ArchiveIntegrityError",
    "exchange.backup.errors.SnapshotVerificationError",
)
_DENIED = ("consent.errors.ConsentRefusedError",)
_INTERRUPTED = ("mpc.errors.JobInterruptedError",)

_EXTRA_RULES: list[_Rule] = []


def register_status(error: type[BaseException], status: int) -> None:
    """Map a package error root (or leaf) to an HTTP status, ahead of the defaults."""
    _EXTRA_RULES.append(_Rule(f"{error.__module__}.{error.__qualname__}", status))


def status_for(exc: BaseException) -> int:
    """The HTTP status for an ibx error (500 for anything unknown)."""
    if isinstance(exc, RemoteRefusalError):
        return exc.status
    for rule in (*_EXTRA_RULES, *RULES):
        if rule.matches(exc):
            return rule.status
    return 500


def error_code(exc: BaseException) -> str:
    """A stable machine name for an error: its class's dotted path (problem+json ``code``)."""
    if isinstance(exc, RemoteRefusalError) and exc.code:
        return exc.code
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _is(exc: BaseException, paths: tuple[str, ...]) -> bool:
    """Whether ``exc`` (or the server error a refusal stands for) is one of ``paths``."""
    if any(_Rule(path, 0).matches(exc) for path in paths):
        return True
    if isinstance(exc, RemoteRefusalError) and exc.code:
        module_name, _, name = exc.code.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            return False
        if isinstance(cls, type):
            return any(_Rule(path, 0).matches_class(cls) for path in paths)
    return False


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code for an error, from its HTTP status (integrity failures apart)."""
    if _is(exc, _VERIFICATION):
        return ExitCode.VERIFICATION_FAILED
    if _is(exc, _DENIED):
        return ExitCode.DENIED
    if _is(exc, _INTERRUPTED):
        return ExitCode.INTERRUPTED
    status = status_for(exc)
    if status == 401:
        return ExitCode.UNAUTHENTICATED
    if status == 403:
        return ExitCode.DENIED
    if status in (400, 413, 415, 422):
        return ExitCode.USAGE
    return ExitCode.ERROR
