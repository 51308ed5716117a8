"""The policy decision point and the four-eyes workflow that changes it.

Lifecycle of a version: ``proposed`` → ``tested`` → ``approved`` → ``active``.
Every officer step is a duty the officer signed with their own key
(:mod:`core.duty`), verified against the key the ledger records for them
before anything happens; the verified signer is the acting officer. Only
security officers may act, the proposer may neither approve nor activate
their own version (four eyes on verified signers), no version that would lock
the security officers out of policy may be approved or activated
(:mod:`policies._lockout`), and every transition is recorded, its signed duty
in the payload, through the event recorder in the same transaction as the
state change.

The active version's row is an index of the ledger: whenever it is read
again (at most every ``active_version_ttl``), it is compared with the latest
``policy.activate`` entry (:class:`policies.ActivationRecord`). A row that
disagrees decides nothing (every decision is a reasoned deny) and is raised
once as a critical ``row.mismatch`` alert.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.alerts import Alert, Severity
from core.canonical import JsonValue, canonical_bytes
from core.clock import format_rfc3339, utcnow
from core.db import Database
from core.duty import DutyError, DutyKeys, SignedDuty, check_duty
from core.events import Event, EventRecorder
from policies._coverage_report import CoverageReport, CoverageThresholds
from policies._duties import ActivationRecord
from policies._lockout import lockout_probes, require_no_lockout
from policies._model import (
    OFFICER_ROLE,
    Decision,
    DecisionRequest,
    DiffRow,
    Officer,
    PolicyVersion,
    Subject,
    TestReport,
    VersionHash,
    VersionState,
)
from policies._release_terms import ReleaseTerms, release_terms_of
from policies._sandbox import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIMEOUT,
    SandboxLimits,
    check_in_sandbox,
    run_sandbox,
    run_tests_in_sandbox,
)
from policies._source import PolicySource
from policies._store import (
    ActiveRow,
    CasbinRuleRow,
    VersionRow,
    store_lines,
)
from policies.entries import (
    ACTIVE_SUBJECT,
    CoverageSummary,
    PolicyActivateEntry,
    PolicyApproveEntry,
    PolicyProposeEntry,
    PolicyTestEntry,
)
from policies.errors import (
    ActiveVersionMismatchError,
    FourEyesError,
    OfficerRequiredError,
    PolicyInputError,
    PolicyLifecycleError,
    PolicyNotFoundError,
    PolicySandboxError,
    PolicyTestsFailedError,
)

if TYPE_CHECKING:  # the Rego engine loads on first compile, not for listing versions
    from policies._engine import CompiledPolicy
    from policies._opa import OpaEvaluator

__all__ = ["PolicyConfig", "PolicyDecisionPoint"]

logger = logging.getLogger(__name__)

_ACTIVE = select(ActiveRow.version).where(ActiveRow.id == 1)
ALERT_ACTOR = "policy-decision-point"
"""The actor of the alerts the decision point raises."""


@dataclass(frozen=True)
class _ActiveState:
    """The active row as read, and why it may not decide (it disagrees with the ledger)."""

    version: VersionHash | None
    mismatch: str | None = None


@dataclass(frozen=True)
class PolicyConfig:
    """Settings of the decision point.

    ``sandbox_timeout``: seconds a proposal check, test run or dry run may take
    in its subprocess (default 60). ``sandbox_memory_limit``: bytes of resident
    memory it may use before it is killed (default 512 MiB). ``coverage``: what
    a test run must cover (default: every deny rule of ``ibx.authz`` fires for
    some sample request). ``opa_url``: a real OPA server on which the active
    version's Rego is evaluated instead of embedded regopy (default none).

    Raises:
        ValueError: a non-positive timeout or a memory limit under 64 MiB.
    """

    sandbox_timeout: float = DEFAULT_TIMEOUT
    sandbox_memory_limit: int = DEFAULT_MEMORY_LIMIT
    coverage: CoverageThresholds = field(default_factory=CoverageThresholds)
    opa_url: str | None = None
    bootstrap_pack: Path | None = None
    """Until the first version is activated, decide under this pack (the exchange
    passes the baseline shipped with the code); None: deny everything until then."""
    decision_cache_size: int = 4096
    """Decisions kept per process, keyed by version and the whole input (``now`` is
    whole seconds, so equal keys give equal decisions); 0 turns the cache off."""
    active_version_ttl: float = 0.5
    """Seconds this process may reuse the active version's hash before reading it
    again. An activation through this decision point counts at once; one made by
    another process (another worker, a local-mode CLI) counts here within this
    bound. 0: read it on every decision."""

    def __post_init__(self) -> None:
        SandboxLimits(self.sandbox_timeout, self.sandbox_memory_limit)  # raises ValueError
        if not 0 <= self.active_version_ttl <= 1:
            raise ValueError("active_version_ttl must be between 0 and 1 second")


class PolicyDecisionPoint:
    """Decide requests under the active version; propose, test, approve and activate versions."""

    def __init__(
        self,
        db: Database,
        recorder: EventRecorder,
        config: PolicyConfig | None = None,
        *,
        duty_keys: DutyKeys | None = None,
        origin: str = "",
        activations: ActivationRecord | None = None,
    ) -> None:
        """Wire the store, the recorder and the ledger checks.

        ``duty_keys``: where an officer's ledgered key is found; without it every
        officer step is refused. ``origin``: the ledger origin the duties must name.
        ``activations``: the latest ``policy.activate`` on the ledger, which the
        active row must match; without it the row is not checked (tests of the
        engine alone; the exchange always wires it).
        """
        self._db = db
        self._recorder = recorder
        self._config = config or PolicyConfig()
        self._duty_keys = duty_keys
        self._origin = origin
        self._activations = activations
        self._alerted: set[tuple[str | None, str | None]] = set()
        """Row/ledger disagreements already raised as alerts by this process."""
        self._alert_lock = threading.Lock()
        self._compiled: dict[VersionHash, CompiledPolicy] = {}
        self._compile_lock = threading.Lock()
        self._opa: OpaEvaluator | None = None
        self._bootstrap: CompiledPolicy | None = None
        self._decisions: OrderedDict[tuple[object, ...], Decision] = OrderedDict()
        self._decisions_lock = threading.Lock()
        self._active: tuple[_ActiveState, float] | None = None
        """The active version as last read, and until when (monotonic) it may be reused."""
        self._active_generation = 0
        """Bumped by each activation here, so a read that raced it is not kept."""
        self._active_lock = threading.Lock()
        self._vocabularies: dict[str, tuple[Mapping[str, JsonValue], str]] = {}
        """Each version's ``vocab`` (by hash; ``""``: the bootstrap pack), read once."""
        self._terms: dict[tuple[str, str], ReleaseTerms] = {}
        if self._config.opa_url:
            from policies._opa import OpaEvaluator  # noqa: PLC0415 -- only with IBX_OPA_URL

            self._opa = OpaEvaluator(self._config.opa_url)

    # --- decisions ------------------------------------------------------------------------

    def decide(
        self,
        subject: Subject,
        action: str,
        resource: str,
        context: Mapping[str, JsonValue],
        *,
        at: datetime | None = None,
    ) -> Decision:
        """Decide under the active version. Never raises: any failure is a reasoned deny."""
        try:
            request = DecisionRequest(subject, action, resource, dict(context), at or utcnow())
        except (ValueError, TypeError) as exc:
            return Decision(False, (f"request: {exc}",), None)
        return self.decide_request(request)

    def decide_request(self, request: DecisionRequest) -> Decision:
        """:meth:`decide` for a built request. Never raises."""
        try:
            state = self._active_state()
        except SQLAlchemyError as exc:
            logger.error("policy store unreadable: %s", type(exc).__name__)
            return Decision(False, ("the policy store could not be read; denied",), None)
        if state.mismatch is not None:
            return Decision(False, (state.mismatch,), None)
        version = state.version
        try:
            compiled = self._bootstrap_policy() if version is None else self.compiled(version)
        except Exception as exc:  # any compile failure must deny, never allow
            logger.error("policy %s does not compile: %s", (version or "bootstrap")[:12], exc)
            return Decision(False, (f"the active policy does not compile: {exc}",), version)
        if compiled is None:
            return Decision(False, ("no policy version is active; denied by default",), None)
        if self._opa is not None:
            return self._opa.decide(compiled, request)
        if self._config.decision_cache_size <= 0:
            return compiled.decide(request)
        try:
            key = _cache_key(compiled.version, request)
        except (TypeError, ValueError):  # a context that is not canonical JSON: no caching
            return compiled.decide(request)
        with self._decisions_lock:
            cached = self._decisions.get(key)
            if cached is not None:
                self._decisions.move_to_end(key)
                return cached
        decision = compiled.decide(request)
        with self._decisions_lock:
            self._decisions[key] = decision
            if len(self._decisions) > self._config.decision_cache_size:
                self._decisions.popitem(last=False)
        return decision

    def release_terms(self, classification: str) -> ReleaseTerms:
        """The active version's release terms for ``classification`` (``vocab.release``).

        Before the first activation, the bootstrap pack's. Cached per version.

        Raises:
            ActiveVersionMismatchError: the active row disagrees with the ledger.
            PolicyNotFoundError: no version is active and there is no bootstrap pack.
            PolicyInputError: the version's release terms are malformed.
        """
        state = self._active_state()
        if state.mismatch is not None:
            raise ActiveVersionMismatchError(state.mismatch)
        version = state.version
        key = (version or "", classification)
        cached = self._terms.get(key)
        if cached is not None:
            return cached
        known = self._vocabularies.get(key[0])
        if known is None:
            if version is not None:
                source = self.source(version)
            elif self._config.bootstrap_pack is not None:
                source = PolicySource.from_dir(self._config.bootstrap_pack)
            else:
                raise PolicyNotFoundError("no policy version is active: no release terms")
            known = (source.vocabulary, source.hash)
            self._vocabularies[key[0]] = known
        vocabulary, named = known
        terms = release_terms_of(vocabulary, classification, version=named)
        self._terms[key] = terms
        return terms

    def _bootstrap_policy(self) -> CompiledPolicy | None:
        """The compiled bootstrap pack (before any activation), or None without one."""
        if self._config.bootstrap_pack is None:
            return None
        if self._bootstrap is None:
            from policies._engine import CompiledPolicy  # noqa: PLC0415 -- loads Rego

            with self._compile_lock:
                if self._bootstrap is None:
                    source = PolicySource.from_dir(self._config.bootstrap_pack)
                    self._bootstrap = CompiledPolicy.compile(source)
                    logger.info("deciding under the bootstrap pack until a version is active")
        return self._bootstrap

    def active_version(self) -> VersionHash | None:
        """The active version's hash as its row names it (one primary-key read), or None.

        Reused for at most ``PolicyConfig.active_version_ttl`` seconds, so an
        activation or rollback by another process takes effect here within that
        bound; one through this decision point takes effect at once. Whether the
        row agrees with the ledger: :meth:`active_mismatch`.
        """
        return self._active_state().version

    def active_mismatch(self) -> str | None:
        """Why the active row may not decide (it disagrees with the ledger), or None."""
        return self._active_state().mismatch

    def _active_state(self) -> _ActiveState:
        """The active row, checked against the ledger's latest activation when re-read."""
        ttl = self._config.active_version_ttl
        cached = self._active
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        generation, started = self._active_generation, time.monotonic()
        state = self._read_active()
        if ttl > 0:
            with self._active_lock:
                if generation == self._active_generation:  # no activation here meanwhile
                    self._active = (state, started + ttl)
        return state

    def _read_row(self) -> VersionHash | None:
        rows = self._db.fetch(_ACTIVE)
        return VersionHash(rows[0].version) if rows and rows[0].version else None

    def _read_active(self) -> _ActiveState:
        """Read the row and (if wired) the ledger; a disagreement is read once more (an
        activation may have committed between the two reads) before it is believed."""
        version = self._read_row()
        if self._activations is None:
            return _ActiveState(version)
        for attempt in range(2):
            try:
                recorded = self._activations.latest_activation()
            except Exception as exc:  # an unreadable ledger must deny, never allow
                logger.error("the ledger's activations could not be read: %s", exc)
                return _ActiveState(
                    version, f"the ledger's policy activations could not be read ({exc}); denied"
                )
            if recorded == version:
                return _ActiveState(version)
            if attempt == 0:
                version = self._read_row()
        return _ActiveState(version, self._raise_mismatch(version, recorded))

    def _raise_mismatch(self, row: VersionHash | None, recorded: str | None) -> str:
        """The reason a mismatched row denies; recorded once as a ``row.mismatch`` alert."""
        named = row[:12] if row else "none"
        on_ledger = recorded[:12] if recorded else "none"
        reason = (
            f"the active policy row disagrees with the ledger (row: {named}, latest "
            f"policy.activate: {on_ledger}); denied until an officer activates a version"
        )
        with self._alert_lock:
            if (row, recorded) not in self._alerted:
                self._alert_mismatch(row, recorded, named, on_ledger)
        return reason

    def _alert_mismatch(
        self, row: VersionHash | None, recorded: str | None, named: str, on_ledger: str
    ) -> None:
        logger.critical(
            "the active policy row names %s but the ledger's latest activation is %s",
            named,
            on_ledger,
        )
        alert = Alert(
            rule="row.mismatch",
            severity=Severity.CRITICAL,
            subject=ACTIVE_SUBJECT,
            message=(
                f"the policy_active row names version {named} but the latest policy.activate "
                f"on the ledger is {on_ledger}: the row was changed outside the four-eyes "
                "workflow; every decision is denied"
            ),
            details={"row": row, "ledger": recorded},
        )
        try:
            with self._db.write() as session:  # its own transaction
                self._recorder.record(alert.event(ALERT_ACTOR), session=session)
        except Exception as exc:  # the deny stands even if the alert cannot be written
            logger.error("the row.mismatch alert could not be recorded: %s", exc)
        else:
            self._alerted.add((row, recorded))

    def _forget_active_version(self) -> None:
        """An activation through this point: the next decision reads the store again."""
        with self._active_lock:
            self._active_generation += 1
            self._active = None

    def compiled(self, version: VersionHash) -> CompiledPolicy:
        """The compiled form of a stored version, built once and cached by hash.

        Raises:
            PolicyNotFoundError: no such version.
            PolicyInputError: it does not compile.
        """
        cached = self._compiled.get(version)
        if cached is not None:
            return cached
        with self._compile_lock:
            cached = self._compiled.get(version)
            if cached is None:
                source = self.source(version)
                from policies._casbin_adapter import VersionedCasbinAdapter  # noqa: PLC0415
                from policies._engine import CompiledPolicy  # noqa: PLC0415 -- loads Rego

                adapter = VersionedCasbinAdapter(self._db.engine, version)

                cached = CompiledPolicy.compile(source, adapter=adapter)
                if cached.version != version:
                    raise PolicyInputError(f"stored version {version[:12]} does not hash to itself")
                self._compiled[version] = cached
                logger.info("compiled policy version %s", version[:12])
        return cached

    # --- reading the store ----------------------------------------------------------------

    def versions(self) -> list[PolicyVersion]:
        """Every stored version, oldest proposal first."""
        with self._db.read() as session:
            rows = session.execute(select(VersionRow).order_by(VersionRow.proposed_at)).scalars()
            return [row.to_version() for row in rows]

    def get(self, ref: str) -> PolicyVersion:
        """The version whose hash is ``ref`` or starts with it (at least 8 hex digits).

        Raises:
            PolicyNotFoundError: no version, or the prefix is ambiguous or too short.
        """
        return self._resolve(ref).to_version()

    def source(self, ref: str) -> PolicySource:
        """A stored version's full content, its Casbin lines read back from their table.

        Raises:
            PolicyNotFoundError: no such version.
        """
        row = self._resolve(ref)
        content = json.loads(row.content)
        with self._db.read() as session:
            lines = session.execute(
                select(CasbinRuleRow)
                .where(CasbinRuleRow.version == row.hash)
                .order_by(CasbinRuleRow.id)
            ).scalars()
            content["lines"] = [str(line).split(", ") for line in lines]
        return PolicySource.from_dict(content)

    def test_report(self, ref: str) -> dict[str, JsonValue] | None:
        """A version's last stored test report (``TestReport.to_dict()``), None if never tested.

        Raises:
            PolicyNotFoundError: no such version.
        """
        row = self._resolve(ref)
        if row.test_report is None:
            return None
        report: dict[str, JsonValue] = json.loads(row.test_report)
        return report

    def _resolve(self, ref: str) -> VersionRow:
        ref = ref.strip().lower()
        if len(ref) < 8 or any(c not in "0123456789abcdef" for c in ref):
            raise PolicyNotFoundError(f"{ref!r} is not a version hash or a prefix of 8+ hex digits")
        with self._db.read() as session:
            rows = list(
                session.execute(
                    select(VersionRow).where(VersionRow.hash.startswith(ref, autoescape=True))
                ).scalars()
            )
            for row in rows:
                session.expunge(row)  # a detached snapshot, not expired by the rollback
        if not rows:
            raise PolicyNotFoundError(f"no policy version {ref}")
        if len(rows) > 1:
            raise PolicyNotFoundError(f"{ref} is ambiguous ({len(rows)} versions)")
        return rows[0]

    # --- the four-eyes workflow -----------------------------------------------------------

    def verify_duty(
        self,
        duty: SignedDuty,
        *,
        step: str,
        version: str,
        now: datetime | None = None,
        caller: Officer | None = None,
    ) -> Officer:
        """The officer who signed ``duty`` for ``policy.<step>`` on ``version``.

        ``caller``, when given, is the authenticated identity that sent the duty
        (the exchange passes its grant's): it must be a security officer and the
        duty's signer.

        Raises:
            OfficerRequiredError: ``caller`` is not a security officer.
            DutyError: no officer keys are configured here; or the duty is for
                another deployment, step or version, too old or too new, by no
                active security officer, not signed with their ledgered key, or
                not signed by ``caller``.
        """
        if caller is not None:
            _require_officer(caller)
        if self._duty_keys is None:
            raise DutyError(
                "no officer keys are configured for this decision point: policy steps are refused"
            )
        try:
            actor = check_duty(
                duty,
                keys=self._duty_keys,
                origin=self._origin,
                action=f"policy.{step}",
                subject=version,
                role=OFFICER_ROLE,
                now=now or utcnow(),
            )
        except DutyError as exc:
            logger.info("policy.%s on %s refused: %s", step, version[:12], exc)
            raise
        if caller is not None and caller.name != actor:
            logger.info("policy.%s: %s sent a duty signed by %s", step, caller.name, actor)
            raise DutyError(
                f"{caller.name} sent a duty signed by {actor}; each officer signs their own steps"
            )
        return Officer(actor, OFFICER_ROLE)

    def propose(
        self,
        source: PolicySource | Path,
        *,
        duty: SignedDuty,
        now: datetime | None = None,
        caller: Officer | None = None,
    ) -> PolicyVersion:
        """Check a policy (statically here, its Rego in the sandbox) and store it as proposed.

        ``duty`` is the proposing officer's signed ``policy.propose`` on the
        content's hash (:attr:`PolicySource.hash`); it is verified first.

        Raises:
            OfficerRequiredError: ``caller`` is not a security officer.
            DutyError: ``duty`` does not verify (:meth:`verify_duty`).
            PolicyInputError: the content is invalid (``RegoSourceError`` and
                ``CasbinLineError`` locate the problem).
            PolicySandboxError: the check crashed or timed out.
            PolicyLifecycleError: the same content was proposed before.
        """
        if caller is not None:
            _require_officer(caller)
        if isinstance(source, Path):
            source = PolicySource.from_dir(source)
        else:
            source.check()
        officer = self.verify_duty(
            duty, step="propose", version=source.hash, now=now, caller=caller
        )
        check_in_sandbox(
            source,
            timeout=self._config.sandbox_timeout,
            memory_limit=self._config.sandbox_memory_limit,
        )
        version = source.hash
        content = source.to_dict()
        del content["lines"]
        when = format_rfc3339(now or utcnow())
        with self._db.write() as session:
            if session.get(VersionRow, version) is not None:
                raise PolicyLifecycleError(f"version {version[:12]} was already proposed")
            session.add(
                VersionRow(
                    hash=version,
                    state=VersionState.PROPOSED.value,
                    content=canonical_bytes(content).decode(),
                    summary=json.dumps(source.summary()),
                    proposed_by=officer.name,
                    proposed_at=when,
                )
            )
            store_lines(session, version, source.lines)
            session.flush()
            self._record(
                session,
                PolicyProposeEntry(
                    version=version,
                    officer=officer.name,
                    duty=duty.to_dict(),
                    summary=dict(source.summary()),
                ),
            )
        logger.info("policy %s proposed by %s", version[:12], officer.name)
        return self.get(version)

    def test(
        self,
        ref: str,
        *,
        duty: SignedDuty,
        now: datetime | None = None,
        caller: Officer | None = None,
    ) -> TestReport:
        """Run the version's ``test_`` rules and sample requests in the sandbox.

        Passing moves a proposed version to ``tested``; failing moves a tested
        one back to ``proposed``. The report is stored and summarised on the ledger.
        ``duty``: the officer's signed ``policy.test`` on the full version hash.

        Raises:
            OfficerRequiredError: ``caller`` is not a security officer.
            PolicyNotFoundError: no such version.
            DutyError: ``duty`` does not verify (:meth:`verify_duty`).
            PolicyLifecycleError: the version is already approved or active.
        """
        if caller is not None:
            _require_officer(caller)
        row = self._resolve(ref)
        officer = self.verify_duty(duty, step="test", version=row.hash, now=now, caller=caller)
        if row.state not in (VersionState.PROPOSED, VersionState.TESTED):
            raise PolicyLifecycleError(
                f"version {row.hash[:12]} is {row.state}; "
                "only proposed or tested versions are tested"
            )
        report = run_tests_in_sandbox(
            self.source(row.hash),
            timeout=self._config.sandbox_timeout,
            memory_limit=self._config.sandbox_memory_limit,
            coverage=self._config.coverage,
        )
        with self._db.write() as session:
            current = session.get(VersionRow, row.hash)
            assert current is not None
            if current.state not in (VersionState.PROPOSED, VersionState.TESTED):
                raise PolicyLifecycleError(f"version {row.hash[:12]} changed state during the test")
            current.tests_passed = report.passed
            current.test_report = json.dumps(report.to_dict())
            current.tested_by = officer.name
            current.tested_at = format_rfc3339(now or utcnow())
            current.state = (VersionState.TESTED if report.passed else VersionState.PROPOSED).value
            session.flush()
            self._record(
                session,
                PolicyTestEntry(
                    version=row.hash,
                    officer=officer.name,
                    duty=duty.to_dict(),
                    passed=report.passed,
                    results=len(report.results),
                    failed=[r.name for r in report.results if not r.passed],
                    error=report.error,
                    coverage=_coverage_summary(report),
                ),
            )
        return report

    def approve(
        self,
        ref: str,
        *,
        duty: SignedDuty,
        now: datetime | None = None,
        caller: Officer | None = None,
    ) -> PolicyVersion:
        """Approve a tested version: needs a security officer other than its proposer.

        ``duty``: the approving officer's signed ``policy.approve`` on the full
        version hash. The version's own decisions are asked (in the sandbox)
        whether the security officers keep every policy duty under it
        (:mod:`policies._lockout`).

        Raises:
            OfficerRequiredError: ``caller`` is not a security officer.
            PolicyNotFoundError: no such version.
            DutyError: ``duty`` does not verify (:meth:`verify_duty`).
            FourEyesError: the duty's signer proposed this version.
            PolicyTestsFailedError: its tests have not been run or did not pass.
            PolicyLockoutError: it would deny the security officers a policy duty.
            PolicyLifecycleError: it is already approved or active.
            PolicySandboxError: the lockout check crashed or timed out.
        """
        if caller is not None:
            _require_officer(caller)
        when = now or utcnow()
        target = self._resolve(ref)
        officer = self.verify_duty(
            duty, step="approve", version=target.hash, now=when, caller=caller
        )
        _require_approvable(target, officer)
        probes = lockout_probes(officer, at=when)
        decisions = self._evaluate_in_sandbox(self.source(target.hash), probes)
        require_no_lockout(VersionHash(target.hash), probes, decisions, step="approved")
        with self._db.write() as session:
            row = session.get(VersionRow, target.hash)
            assert row is not None
            _require_approvable(row, officer)
            row.state = VersionState.APPROVED.value
            row.approved_by = officer.name
            row.approved_at = format_rfc3339(when)
            session.flush()
            self._record(
                session,
                PolicyApproveEntry(
                    version=row.hash,
                    officer=officer.name,
                    duty=duty.to_dict(),
                    proposer=row.proposed_by,
                    approver=officer.name,
                ),
            )
            version = row.to_version()
        logger.info("policy %s approved by %s", version.hash[:12], officer.name)
        return version

    def activate(
        self,
        ref: str,
        *,
        duty: SignedDuty,
        now: datetime | None = None,
        caller: Officer | None = None,
    ) -> PolicyVersion:
        """Make an approved version the active one (rollback = activating an earlier one).

        ``duty``: the activating officer's signed ``policy.activate`` on the full
        version hash; they may not be the version's proposer. The version is
        compiled before it is switched on, so a version that cannot decide never
        becomes active, nor one that would deny the security officers a policy
        duty (:mod:`policies._lockout`). An activation also ends a row/ledger
        disagreement (row and entry are written together).

        Raises:
            OfficerRequiredError: ``caller`` is not a security officer.
            PolicyNotFoundError: no such version.
            DutyError: ``duty`` does not verify (:meth:`verify_duty`).
            FourEyesError: the duty's signer proposed this version.
            PolicyLifecycleError: it has not been approved, or it is already active.
            PolicyLockoutError: it would deny the security officers a policy duty.
            PolicyInputError: it does not compile.
        """
        if caller is not None:
            _require_officer(caller)
        target = self._resolve(ref)
        officer = self.verify_duty(
            duty, step="activate", version=target.hash, now=now, caller=caller
        )
        if target.proposed_by == officer.name:
            raise FourEyesError(
                f"{officer.name} proposed version {target.hash[:12]} and cannot activate it"
            )
        if target.state == VersionState.ACTIVE:
            raise PolicyLifecycleError(f"version {target.hash[:12]} is already active")
        if target.state != VersionState.APPROVED or not target.approved_by:
            raise PolicyLifecycleError(
                f"version {target.hash[:12]} is {target.state}; "
                "only approved versions can be activated"
            )
        version = VersionHash(target.hash)
        compiled = self.compiled(version)  # compile before switching on; cached for decisions
        probes = lockout_probes(officer, at=now or utcnow())
        decisions = [compiled.decide(probe) for probe in probes]
        require_no_lockout(version, probes, decisions, step="activated")
        if self._opa is not None:
            self._opa.publish(self.source(version))
        when = format_rfc3339(now or utcnow())
        with self._db.write() as session:
            row = session.get(VersionRow, version)
            assert row is not None
            if row.state != VersionState.APPROVED:
                raise PolicyLifecycleError(f"version {version[:12]} changed state; try again")
            active = session.get(ActiveRow, 1)
            previous = active.version if active is not None else None
            if previous is not None:
                old = session.get(VersionRow, previous)
                if old is not None:
                    old.state = VersionState.APPROVED.value
            if active is None:
                session.add(ActiveRow(id=1, version=version, activated_at=when))
            else:
                active.version = version
                active.activated_at = when
            row.state = VersionState.ACTIVE.value
            row.activated_by = officer.name
            row.activated_at = when
            session.flush()
            self._record(
                session,
                PolicyActivateEntry(
                    version=version,
                    officer=officer.name,
                    duty=duty.to_dict(),
                    previous=self._previous_activation(session, previous),
                    rollback=target.activated_at is not None,
                    proposer=row.proposed_by,
                    approver=row.approved_by or "",
                    activator=officer.name,
                ),
            )
            result = row.to_version()
        self._forget_active_version()
        logger.info("policy %s activated by %s", version[:12], officer.name)
        return result

    def diff(
        self,
        ref: str,
        *,
        officer: Officer,
        requests: Sequence[DecisionRequest] | None = None,
        names: Sequence[str] | None = None,
    ) -> list[DiffRow]:
        """Dry run: decide sample requests under a candidate and under the active version.

        The candidate is evaluated in the sandbox (it may not have been tested
        yet); the default requests are the candidate's own sample requests.

        Raises:
            OfficerRequiredError: ``officer`` is not a security officer.
            PolicyNotFoundError: no such version.
            PolicySandboxError: the candidate crashed or timed out.
        """
        _require_officer(officer)
        source = self.source(ref)
        if requests is None:
            requests = [s.request for s in source.requests]
            names = [s.name for s in source.requests]
        labels = list(names) if names is not None else [str(i) for i in range(len(requests))]
        decisions = self._evaluate_in_sandbox(source, requests, labels=labels)
        rows = []
        active = self.active_version()
        for label, request, decision in zip(labels, requests, decisions, strict=True):
            current = self.decide_request(request) if active is not None else None
            rows.append(DiffRow(label, current, decision))
        return rows

    def _evaluate_in_sandbox(
        self,
        source: PolicySource,
        requests: Sequence[DecisionRequest],
        *,
        labels: Sequence[str] | None = None,
    ) -> list[Decision]:
        """Decide ``requests`` under ``source`` in the sandbox (it may not be compiled here yet).

        Raises:
            PolicySandboxError: the run crashed, timed out or left a request undecided.
        """
        run = run_sandbox(
            "evaluate",
            source,
            requests=requests,
            timeout=self._config.sandbox_timeout,
            memory_limit=self._config.sandbox_memory_limit,
        )
        if run.error is not None:
            raise PolicySandboxError(f"dry run failed: {run.error}")
        candidate = {int(s["index"]): s["decision"] for s in run.steps if "decision" in s}
        decisions = []
        for index in range(len(requests)):
            raw = candidate.get(index)
            if not isinstance(raw, dict):
                label = labels[index] if labels is not None else str(index)
                raise PolicySandboxError(f"dry run gave no decision for request {label}")
            decisions.append(
                Decision(raw["effect"] == "allow", tuple(raw["reasons"]), VersionHash(source.hash))
            )
        return decisions

    def _previous_activation(self, session: Session, row: str | None) -> str | None:
        """The version this activation replaces, as the ledger says (the row is an index;
        it may have been flipped by hand)."""
        if self._activations is None:
            return row
        return self._activations.latest_activation(session=session)

    def _record(
        self,
        session: Session,
        entry: PolicyProposeEntry | PolicyTestEntry | PolicyApproveEntry | PolicyActivateEntry,
    ) -> None:
        """Append ``entry`` about its version and officer (an activation: ``policy:active``)."""
        subjects: tuple[str, ...] = (entry.version, entry.officer)
        if isinstance(entry, PolicyActivateEntry):
            subjects += (ACTIVE_SUBJECT,)
        payload: dict[str, JsonValue] = entry.model_dump(mode="json")
        self._recorder.record(
            Event(entry.TYPE, entry.officer, payload, subjects=subjects), session=session
        )


def _coverage_summary(report: TestReport) -> CoverageSummary | None:
    if report.coverage is None:
        return None
    coverage = CoverageReport.from_dict(report.coverage)
    (fired, deny), (seen, lines) = coverage.deny_rules, coverage.lines
    return CoverageSummary(deny_fired=fired, deny_rules=deny, lines_evaluated=seen, lines=lines)


def _cache_key(version: VersionHash, request: DecisionRequest) -> tuple[object, ...]:
    """Everything a decision depends on: the version and the input, ``now`` in whole
    seconds exactly as the engine gives it to Rego."""
    subject = request.subject
    return (
        version,
        subject.name,
        subject.role,
        subject.industry,
        request.action,
        request.resource,
        canonical_bytes(dict(request.context)),
        int(request.at.timestamp()),
    )


def _require_approvable(row: VersionRow, officer: Officer) -> None:
    """The four-eyes rule and the state an approval needs.

    Raises:
        FourEyesError: ``officer`` proposed this version.
        PolicyTestsFailedError: its tests have not been run or did not pass.
        PolicyLifecycleError: it is already approved or active.
    """
    if row.proposed_by == officer.name:
        raise FourEyesError(
            f"{officer.name} proposed version {row.hash[:12]} and cannot approve it; "
            "a second security officer must"
        )
    if row.state == VersionState.PROPOSED:
        why = "were not run" if row.tests_passed is None else "failed"
        raise PolicyTestsFailedError(f"version {row.hash[:12]} cannot be approved: its tests {why}")
    if row.state != VersionState.TESTED or row.tests_passed is not True:
        raise PolicyLifecycleError(f"version {row.hash[:12]} is already {row.state}")


def _require_officer(officer: Officer) -> None:
    if officer.role != OFFICER_ROLE:
        raise OfficerRequiredError(
            f"{officer.name} is {officer.role}; only a security officer may change policy"
        )
