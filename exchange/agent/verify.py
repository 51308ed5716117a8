"""The checks an agent makes before it reads any data for a task (docs/pipeline.md).

1. **The ledger's head** (:meth:`TaskVerifier.head`): the served checkpoint
   must be signed by the ledger key given on the agent's command line (never
   one the exchange hands it), and the tree the agent last verified
   (``<state>/checkpoint``) must be a prefix of it (RFC 9162 consistency). A
   rolled-back, forked or rewritten log raises the ledger alarm
   (:class:`LedgerAlarm`): both checkpoints are kept as evidence and every
   task is refused while the alarm stands.
2. **The decision** (:meth:`TaskVerifier.verify`): the entry at the task's
   ``decision_index`` with its inclusion proof under the verified root
   (leaf hash ``SHA-256(0x00 || entry)``); a ``pipeline.decision`` of this
   job whose request, engine, dataset and consent are the task's, naming this
   enterprise as a participant.
3. **The consent**: the receipt the decision cites, signed by the agent's own
   key (the key the decision states for it), with the receipt hash the
   decision states, not revoked (at the
   exchange nor in the agent's own list), valid now by the agent's clock, for
   this deployment, and covering the request's fields, operation, engine,
   requester and purpose.
4. **A PSI hand-off** (round r > 1, :func:`check_handoff`): the points the
   exchange hands on must be exactly what the agent's predecessor on the
   ring (the decision's participants in order of name) signed as its round
   r − 1 contribution: the material names that ``pipeline.contribution``
   entry, which must be on the verified ledger (inclusion proof), by the
   predecessor, for this job and round, its statement signed with the key
   the *decision* states for the predecessor and stating the SHA-256 of the
   RFC 8785 form of ``{"points": handed}``. So the exchange cannot have the
   agents blind a guessed item's hash and test whether it is in their sets.

With ``--witness VKEY ... --witness-quorum K`` (K > 0) the agent trusts only a
checkpoint that carries valid cosignatures (C2SP ``tlog-cosignature``) of K
of the given witnesses: the served checkpoint if it does, else the newest
checkpoint the quorum cosigned (``GET /v1/ledger/checkpoint?witnessed=true
&quorum=K&witness=NAME...``), which must be signed by the pinned key and
consistent with the served one (else the ledger alarm). Tasks are verified
under that witnessed checkpoint (:meth:`TaskVerifier.check` over
:meth:`TaskVerifier.heads`): a task whose decision (or handed-on
contribution) is on the served ledger but beyond every checkpoint with the
quorum is not refused but waits (:class:`AwaitingWitnesses`), nothing read,
until a witness cosigns a checkpoint covering it.

Every failure is a :class:`TaskRefused` whose message is the reason the
agent signs and sends back.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from consent import ConsentReceipt, InvalidConsentError, SignedReceipt
from consent.errors import BadConsentSignatureError
from core.canonical import canonical_sha256
from core.clock import utcnow
from core.errors import CanonicalJsonError
from core.keys import Ed25519PublicKey
from exchange.agent.errors import AwaitingWitnesses, LedgerAlarm, TaskRefused
from exchange.agent.journal import AgentState
from exchange.agent.reads import VerifierReads
from exchange.agent.task import Task
from exchange.pipeline.entries import ContributionEntry
from exchange.pipeline.jobs import CONTRIBUTION_EVENT
from exchange.pipeline.psi_job import psi_predecessor
from exchange.pipeline.request import EngineName
from exchange.pipeline.statements import (
    CONTRIBUTION_KIND,
    DECISION_EVENT,
    AgentStatement,
    DecisionRecord,
    Participant,
    StatementError,
)
from ledger import (
    Checkpoint,
    CheckpointError,
    ConsistencyProofError,
    CosignatureVerifier,
    InvalidEntryError,
    KeptCheckpoint,
    LedgerEntry,
    LedgerIntegrityError,
    NoteVerifier,
    ProofError,
    SignedNote,
    check_kept_checkpoint,
    count_cosignatures,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "Authorization",
    "TaskVerifier",
    "VerifiedHead",
    "WitnessQuorum",
    "check_consent",
    "check_decision",
    "check_handoff",
]

COSIGNATURE_SKEW = 300
"""Seconds a cosignature's timestamp may be ahead of the agent's clock."""


@dataclass(frozen=True)
class WitnessQuorum:
    """How many of which witnesses must have cosigned a checkpoint the agent trusts."""

    witnesses: tuple[CosignatureVerifier, ...] = ()
    quorum: int = 0

    def __post_init__(self) -> None:
        distinct = {(w.name, w.public_key.raw) for w in self.witnesses}
        if not 0 <= self.quorum <= len(distinct):
            raise ValueError(
                f"a witness quorum of {self.quorum} needs at least that many distinct "
                f"witness keys (--witness), not {len(distinct)}"
            )

    @classmethod
    def of(cls, witnesses: Sequence[CosignatureVerifier], quorum: int) -> WitnessQuorum:
        """The quorum ``quorum`` of ``witnesses``.

        Raises:
            ValueError: more than the distinct witnesses given, or negative.
        """
        return cls(tuple(witnesses), quorum)


@dataclass(frozen=True)
class VerifiedHead:
    """The ledger head as the agent verified it.

    ``served`` is the latest checkpoint (signed by the pinned key, consistent with the
    kept one); ``trusted`` the one tasks are verified under: ``served`` itself without a
    witness quorum or when it carries the quorum, else the newest witnessed checkpoint
    with the quorum, None when there is none (``shortfall`` says why).
    """

    served: Checkpoint
    trusted: Checkpoint | None
    shortfall: str = ""
    witnessed_text: str | None = None
    """The witnessed checkpoint as served when it was read (what a waiting agent
    compares with to learn that witnesses moved)."""


@dataclass(frozen=True)
class Authorization:
    """A task the agent verified: the decision on the ledger and its own consent."""

    decision: DecisionRecord
    participant: Participant
    receipt: ConsentReceipt


class TaskVerifier:
    """Verifies tasks for enterprise ``enterprise`` against the pinned ledger key."""

    def __init__(
        self,
        reads: VerifierReads,
        ledger_key: NoteVerifier,
        state: AgentState,
        *,
        enterprise: str,
        public_key: Ed25519PublicKey,
        clock: Callable[[], datetime] = utcnow,
        witnesses: WitnessQuorum | None = None,
    ) -> None:
        self._reads = reads
        self._ledger_key = ledger_key
        self._state = state
        self.enterprise = enterprise
        self._public_key = public_key
        self._clock = clock
        self._witnesses = witnesses or WitnessQuorum()

    @property
    def reads(self) -> VerifierReads:
        """Where this verifier reads the material it checks."""
        return self._reads

    def with_reads(self, reads: VerifierReads) -> TaskVerifier:
        """This verifier (the same pinned key, state, enterprise, key and clock) reading
        through ``reads``, e.g. :class:`exchange.agent.reads.EvidenceReads` over the
        evidence served with a task list: only where the material comes from changes,
        never a check."""
        return TaskVerifier(
            reads,
            self._ledger_key,
            self._state,
            enterprise=self.enterprise,
            public_key=self._public_key,
            clock=self._clock,
            witnesses=self._witnesses,
        )

    @property
    def quorum(self) -> int:
        """How many witness cosignatures a trusted checkpoint carries (0: off)."""
        return self._witnesses.quorum

    def witnessed_text(self) -> str | None:
        """The newest checkpoint the quorum cosigned, as served (unchecked; None before
        any): what a waiting agent polls to learn that witnesses moved on.

        Raises:
            TaskRefused: the exchange refused.
        """
        return self._reads.witnessed_checkpoint_text(self.quorum, self._witness_names())

    def _witness_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(w.name for w in self._witnesses.witnesses))

    def head(self) -> Checkpoint:
        """Fetch, verify and keep the ledger's checkpoint.

        With a witness quorum, the checkpoint returned is the witnessed one the
        tasks are verified under (see the module docstring).

        Raises:
            LedgerAlarm: the alarm stands, or the log is not consistent with the kept
                checkpoint (rolled back, forked, rewritten), or with the checkpoint
                witnesses cosigned: the alarm is raised now.
            TaskRefused: the checkpoint is malformed or not signed by the pinned key,
                a proof could not be fetched, or no checkpoint carries the witness quorum.
        """
        verified = self.heads()
        if verified.trusted is None:
            raise TaskRefused(verified.shortfall)
        return verified.trusted

    def heads(self) -> VerifiedHead:
        """Fetch, verify and keep the ledger's checkpoint; with a witness quorum, find the
        witnessed checkpoint the tasks are verified under (None when none has it).

        Raises:
            LedgerAlarm: the alarm stands, or the log is not consistent with the kept
                checkpoint (rolled back, forked, rewritten), or with the checkpoint
                witnesses cosigned: the alarm is raised now.
            TaskRefused: the checkpoint is malformed or not signed by the pinned key, a
                proof could not be fetched, or the witnessed checkpoint served is
                malformed, not signed by the pinned key or of another origin.
        """
        standing = self._state.alarm()
        if standing is not None:
            raise LedgerAlarm(standing)
        served = self._reads.checkpoint_text()
        try:
            note = SignedNote.from_text(served)
            note.verify(self._ledger_key)
            head = Checkpoint.from_text(note.text)
        except CheckpointError as exc:
            raise TaskRefused(
                f"the exchange's checkpoint is not signed by the pinned ledger key: {exc}"
            ) from exc
        kept_text = self._state.kept_checkpoint()
        if kept_text is not None:
            self._check_kept(kept_text, served, head)
        self._state.keep_checkpoint(served)  # consistent with the kept one, so never smaller
        if self._witnesses.quorum == 0:
            return VerifiedHead(head, head)
        return self._witnessed(note, served, head)

    def _cosigned_by(self, note: SignedNote) -> int:
        not_after = int(self._clock().timestamp()) + COSIGNATURE_SKEW
        return count_cosignatures(note, self._witnesses.witnesses, not_after=not_after)

    def _witnessed(self, note: SignedNote, served: str, head: Checkpoint) -> VerifiedHead:
        """The checkpoint with the witness quorum the tasks are verified under.

        Raises:
            TaskRefused: the witnessed checkpoint is malformed, not signed by the pinned
                key, or of another origin.
            LedgerAlarm: the witnessed checkpoint is not consistent with the served one.
        """
        wanted = self._witnesses.quorum
        names = ", ".join(self._witness_names())
        have = self._cosigned_by(note)
        if have >= wanted:
            return VerifiedHead(head, head)
        text = self.witnessed_text()
        if text is None:
            return VerifiedHead(
                head,
                None,
                f"the ledger's checkpoint (size {head.size}) carries {have} of the {wanted} "
                f"witness cosignatures this agent requires ({names}) and no witness has "
                "cosigned any checkpoint yet",
            )
        try:
            witnessed_note = SignedNote.from_text(text)
            witnessed_note.verify(self._ledger_key)
            witnessed = Checkpoint.from_text(witnessed_note.text)
        except CheckpointError as exc:
            raise TaskRefused(
                f"the witnessed checkpoint is not signed by the pinned ledger key: {exc}"
            ) from exc
        if witnessed.origin != head.origin:
            raise TaskRefused(f"the witnessed checkpoint is for origin {witnessed.origin}")
        self._check_witnessed(witnessed, head, text, served)  # signed: a fork is a fork
        count = self._cosigned_by(witnessed_note)
        if count < wanted:
            return VerifiedHead(
                head,
                None,
                f"the newest witnessed checkpoint (size {witnessed.size}) carries {count} of "
                f"the {wanted} witness cosignatures this agent requires ({names})",
                text,
            )
        return VerifiedHead(head, witnessed, witnessed_text=text)

    def _check_witnessed(
        self, witnessed: Checkpoint, head: Checkpoint, text: str, served: str
    ) -> None:
        """Check the witnessed checkpoint is a prefix of the served one.

        Raises:
            LedgerAlarm: it is not (larger, another root at the same size, or no
                consistency proof joins them).
        """
        reason: str | None = None
        if witnessed.size > head.size:
            reason = (
                f"the witnessed checkpoint has {witnessed.size} entries, the served one "
                f"{head.size}: the ledger was rolled back"
            )
        elif witnessed.size == head.size:
            if witnessed.root != head.root:
                reason = f"two checkpoints of size {head.size} with different roots"
        elif witnessed.size > 0:
            proof = self._reads.consistency(witnessed.size, head.size)
            try:
                verify_consistency(witnessed.size, head.size, witnessed.root, head.root, proof)
            except ConsistencyProofError as exc:
                reason = f"the served checkpoint does not extend the witnessed one: {exc}"
        if reason is not None:
            evidence = self._state.raise_alarm(reason, text, served)
            raise LedgerAlarm(f"{reason} (evidence: {evidence})")

    def _check_kept(self, kept_text: str, served: str, head: Checkpoint) -> None:
        try:
            kept = KeptCheckpoint.parse(kept_text, self._ledger_key, head.origin)
        except CheckpointError as exc:
            reason = f"the kept checkpoint does not match the served log: {exc}"
            self._state.raise_alarm(reason, kept_text, served)
            raise LedgerAlarm(reason) from exc
        first = kept.checkpoint.size
        proof: tuple[bytes, ...] = ()
        if 0 < first < head.size:
            proof = self._reads.consistency(first, head.size)
        try:
            check_kept_checkpoint(kept, head.size, head.root, proof)
        except LedgerIntegrityError as exc:
            reason = f"the ledger is not consistent with the checkpoint this agent kept: {exc}"
            evidence = self._state.raise_alarm(reason, kept_text, served)
            raise LedgerAlarm(f"{reason} (evidence: {evidence})") from exc

    def verify(self, task: Task, head: Checkpoint) -> Authorization:
        """Check ``task`` against its decision on the ledger and the agent's own consent.

        Raises:
            TaskRefused: any check fails (the message is the reason).
        """
        return self._verify(task, head, head.origin)

    def check(self, task: Task, verified: VerifiedHead) -> Authorization:
        """Check ``task`` under ``verified.trusted``; with a witness quorum, a task whose
        decision (or handed-on contribution) is on the served ledger but not under the
        trusted checkpoint waits instead.

        Raises:
            AwaitingWitnesses: the task waits for a witness (nothing read for it but the
                checkpoints; no consent, no data).
            TaskRefused: any check fails (the message is the reason).
        """
        waits_below = verified.served.size if self._witnesses.quorum else 0
        if verified.trusted is None and task.decision_index >= waits_below:
            raise TaskRefused(verified.shortfall)
        return self._verify(task, verified.trusted, verified.served.origin, waits_below)

    def _verify(
        self, task: Task, head: Checkpoint | None, origin: str, waits_below: int = 0
    ) -> Authorization:
        """See :meth:`verify` and :meth:`check` (``head`` None: no entry is trusted yet).

        Raises:
            AwaitingWitnesses: an entry needed is below ``waits_below`` but not in ``head``.
            TaskRefused: any check fails.
        """
        leaf = self._verified_leaf(task.decision_index, head, "decision entry", waits_below)
        decision, participant = check_decision(task, leaf, self.enterprise)
        body = self._reads.consent(participant.consent_id)
        receipt = check_consent(
            task,
            decision,
            participant,
            body,
            public_key=self._public_key,
            origin=origin,
            revoked=self._state.revoked(),
            now=self._clock(),
            used_by=self._uses(participant.consent_id, body),
        )
        if decision.engine is EngineName.PSI and task.round > 1:
            index = _handoff_index(task)
            handed = self._verified_leaf(
                index, head, "the handed-on contribution entry", waits_below
            )
            check_handoff(task, decision, self.enterprise, handed)
        return Authorization(decision, participant, receipt)

    def _uses(self, consent_id: str, body: Mapping[str, Any]) -> frozenset[str]:
        """The jobs this agent contributed to under a consent, read from its journal only
        when the served receipt states a use limit (the journal grows with every task)."""
        receipt = body.get("receipt")
        if not isinstance(receipt, dict) or receipt.get("use_limit") is None:
            return frozenset()
        return self._state.jobs_contributed(consent_id)

    def _verified_leaf(
        self, index: int, head: Checkpoint | None, what: str, waits_below: int = 0
    ) -> bytes:
        """The leaf input at ``index``, proven included in the verified tree ``head``.

        Raises:
            AwaitingWitnesses: beyond ``head`` but below ``waits_below`` (on the served
                ledger, not yet under a checkpoint with the witness quorum).
            TaskRefused: beyond the checkpoint, not served, or the proof does not verify.
        """
        size = head.size if head is not None else 0
        if index >= size:
            if index < waits_below:
                what_waits = "decision" if what == "decision entry" else "contribution"
                raise AwaitingWitnesses(index, self._witnesses.quorum, what_waits)
            raise TaskRefused(f"{what} {index} is beyond the verified checkpoint ({size} entries)")
        assert head is not None  # size > index >= 0
        leaf = self._reads.entry(index)
        if leaf is None:
            raise TaskRefused(f"the exchange did not serve {what} {index}")
        proof = self._reads.inclusion(index, head.size)
        try:
            verify_inclusion(index, head.size, leaf_hash(leaf), proof, head.root)
        except ProofError as exc:
            raise TaskRefused(
                f"{what} {index} is not on the verified ledger (inclusion proof: {exc})"
            ) from exc
        return leaf


def check_decision(task: Task, leaf: bytes, enterprise: str) -> tuple[DecisionRecord, Participant]:
    """Parse the verified entry ``leaf`` as ``task``'s decision naming ``enterprise``.

    Raises:
        TaskRefused: not a decision, another job's, or the task differs from it.
    """
    try:
        entry = LedgerEntry.from_leaf_input(leaf)
    except InvalidEntryError as exc:
        raise TaskRefused(f"decision entry {task.decision_index} is no ledger entry") from exc
    if entry.index != task.decision_index:
        raise TaskRefused(f"entry {task.decision_index} claims index {entry.index}")
    if entry.type != DECISION_EVENT:
        raise TaskRefused(f"entry {entry.index} is a {entry.type}, not a {DECISION_EVENT}")
    try:
        decision = DecisionRecord.from_payload(entry.payload)
    except StatementError as exc:
        raise TaskRefused(f"entry {entry.index} is a malformed decision: {exc}") from exc
    if decision.job_id != task.job_id:
        raise TaskRefused(f"entry {entry.index} decides job {decision.job_id}, not {task.job_id}")
    if entry.actor != decision.requester:
        raise TaskRefused(f"entry {entry.index} was recorded by {entry.actor}, not its requester")
    if task.request.digest() != decision.request.digest():
        raise TaskRefused("the task's request is not the request the decision authorized")
    if task.engine is not decision.engine:
        raise TaskRefused(
            f"the task runs on {task.engine.value}, the decision authorized {decision.engine.value}"
        )
    participant = decision.participant(enterprise)
    if participant is None:
        raise TaskRefused(f"the decision does not include {enterprise}")
    if task.dataset != participant.dataset:
        raise TaskRefused(
            f"the task reads dataset {task.dataset}, the decision names {participant.dataset}"
        )
    if task.consent_id != participant.consent_id:
        raise TaskRefused(
            f"the task cites consent {task.consent_id}, the decision {participant.consent_id}"
        )
    return decision, participant


def check_consent(
    task: Task,
    decision: DecisionRecord,
    participant: Participant,
    body: Mapping[str, Any],
    *,
    public_key: Ed25519PublicKey,
    origin: str,
    revoked: frozenset[str],
    now: datetime,
    used_by: frozenset[str] = frozenset(),
) -> ConsentReceipt:
    """Check the consent the decision cites (``body``: as ``GET /v1/consents/{id}`` shows it).

    ``used_by`` are the jobs this agent already contributed to under the consent (its
    journal): with them, a consent whose use limit is reached is refused for any other
    job, whatever the exchange counts. A consent the exchange shows ``used_up`` is
    accepted otherwise: the decision that used its last use is this one.

    Raises:
        TaskRefused: not signed by ``public_key``, another receipt than the decision's,
            revoked, not valid at ``now``, another deployment's, used more often than its
            limit, or not covering the task.
    """
    cid = participant.consent_id
    try:
        signed = SignedReceipt.from_dict(
            {"receipt": body.get("receipt"), "signature": body.get("signature")}
        )
    except (InvalidConsentError, TypeError, ValueError) as exc:
        raise TaskRefused(f"consent {cid} as served is malformed: {exc}") from exc
    receipt = signed.receipt
    try:
        signed.verify(public_key)
    except BadConsentSignatureError as exc:
        raise TaskRefused(f"consent {cid} is not signed by this enterprise's key") from exc
    if receipt.public_key != public_key:
        raise TaskRefused(f"consent {cid} names another public key than this enterprise's")
    if participant.public_key != public_key:
        raise TaskRefused(
            f"the decision states another key for {participant.enterprise} than its consent's"
        )
    if signed.receipt_hash() != participant.receipt_sha256:
        raise TaskRefused(
            f"consent {cid}'s receipt hash is not the one the decision recorded "
            "(the decision cites another receipt)"
        )
    if receipt.consent_id != cid:
        raise TaskRefused(f"the exchange served consent {receipt.consent_id} for {cid}")
    if receipt.enterprise != participant.enterprise:
        raise TaskRefused(f"consent {cid} is {receipt.enterprise}'s")
    if receipt.origin != origin:
        raise TaskRefused(f"consent {cid} was made for {receipt.origin}, not for {origin}")
    if cid in revoked:
        raise TaskRefused(f"consent {cid} is revoked (this agent's own list)")
    status = body.get("status")
    if status not in ("active", "used_up"):
        raise TaskRefused(f"consent {cid} is {status} at the exchange")
    limit = receipt.use_limit
    if limit is not None and len(used_by - {task.job_id}) >= limit:
        raise TaskRefused(
            f"consent {cid} allows {limit} use(s) and this agent already contributed to "
            f"{len(used_by - {task.job_id})} job(s) under it"
        )
    if not receipt.valid_from <= now <= receipt.valid_until:
        raise TaskRefused(f"consent {cid} is not valid now (by this agent's clock)")
    _check_covers(task, decision, participant, receipt)
    return receipt


def _check_covers(
    task: Task, decision: DecisionRecord, participant: Participant, receipt: ConsentReceipt
) -> None:
    cid = receipt.consent_id
    request = decision.request
    scope = next((s for s in receipt.scope if s.dataset == participant.dataset), None)
    if scope is None:
        raise TaskRefused(f"consent {cid} does not cover dataset {participant.dataset}")
    outside = [f for f in request.fields if f not in scope.fields]
    if outside:
        raise TaskRefused(f"consent {cid} does not cover field(s) {', '.join(outside)}")
    if request.operation not in receipt.operations:
        raise TaskRefused(f"consent {cid} does not allow {request.operation.value}")
    if decision.engine.value not in {e.value for e in receipt.engines}:
        raise TaskRefused(f"consent {cid} does not allow the {decision.engine.value} engine")
    if request.purpose not in receipt.purposes:
        raise TaskRefused(f"consent {cid} does not allow the purpose {request.purpose.value}")
    who = receipt.requester
    if who.identity is not None and who.identity != decision.requester:
        raise TaskRefused(f"consent {cid} is for {who.identity}, not for {decision.requester}")
    if decision.min_cohort < receipt.min_cohort or len(decision.participants) < receipt.min_cohort:
        raise TaskRefused(
            f"consent {cid} needs a cohort of at least {receipt.min_cohort}; the decision has "
            f"{len(decision.participants)} participants and a minimum of {decision.min_cohort}"
        )
    if task.round < 1:
        raise TaskRefused("rounds start at 1")


def _handoff_index(task: Task) -> int:
    """The ledger index a PSI round-r material names for the handed-on contribution.

    Raises:
        TaskRefused: the material names none.
    """
    index = task.material.get("contribution_index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise TaskRefused(
            f"the PSI material of round {task.round} names no ledger entry of the points it "
            "hands on (contribution_index)"
        )
    return index


def check_handoff(task: Task, decision: DecisionRecord, enterprise: str, leaf: bytes) -> None:
    """Check that a PSI round-r task hands on exactly what the predecessor signed.

    ``leaf`` is the verified ledger entry the material's ``contribution_index``
    names; ``decision`` the verified decision (whose participants form the ring
    and state each one's key).

    Raises:
        TaskRefused: the material names another predecessor, the entry is not the
            predecessor's round r − 1 contribution to this job, its statement is not
            signed by the key the decision states for the predecessor, or the points
            handed on are not the ones that statement hashes.
    """
    material = task.material
    ring = sorted(p.enterprise for p in decision.participants)
    if not 2 <= task.round <= len(ring):
        raise TaskRefused(f"a PSI job of {len(ring)} participants has no round {task.round}")
    before = psi_predecessor(ring, enterprise)
    named = material.get("from")
    if named != before:
        raise TaskRefused(
            f"the PSI material hands on {named!r}'s points; this agent's predecessor on the "
            f"ring is {before}"
        )
    points = material.get("points")
    if not isinstance(points, list) or not all(isinstance(p, str) for p in points):
        raise TaskRefused("the PSI material's points are not a list of base64 strings")
    index = _handoff_index(task)
    try:
        entry = LedgerEntry.from_leaf_input(leaf)
    except InvalidEntryError as exc:
        raise TaskRefused(f"the handed-on contribution entry {index} is no ledger entry") from exc
    if entry.index != index:
        raise TaskRefused(f"entry {index} claims index {entry.index}")
    if entry.type != CONTRIBUTION_EVENT or entry.actor != before:
        raise TaskRefused(
            f"entry {index} is a {entry.type} by {entry.actor}, not {before}'s {CONTRIBUTION_EVENT}"
        )
    try:
        recorded = ContributionEntry.model_validate(entry.payload)
        statement = AgentStatement.from_dict(recorded.statement.model_dump(mode="json"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise TaskRefused(
            f"entry {index} holds no contribution statement: {where}: {first['msg']}"
        ) from exc
    except StatementError as exc:
        raise TaskRefused(f"entry {index} holds no contribution statement: {exc}") from exc
    signature = recorded.signature
    wanted = (CONTRIBUTION_KIND, task.job_id, before, task.round - 1)
    if (statement.kind, statement.job_id, statement.enterprise, statement.round) != wanted:
        raise TaskRefused(
            f"entry {index} is not {before}'s round {task.round - 1} contribution to {task.job_id}"
        )
    predecessor = decision.participant(before)
    assert predecessor is not None  # on the ring, so a participant
    if not statement.verify(predecessor.public_key, signature):
        raise TaskRefused(
            f"the contribution at entry {index} is not signed with the key the decision states "
            f"for {before}"
        )
    try:
        handed = canonical_sha256({"points": list(points)}).hex()
    except CanonicalJsonError as exc:
        raise TaskRefused("the PSI material's points are not canonical JSON") from exc
    assert statement.payload_sha256 is not None  # a contribution states it
    if not hmac.compare_digest(handed, statement.payload_sha256):
        raise TaskRefused(
            f"the points handed on are not the ones {before} signed for round "
            f"{task.round - 1} (entry {index}): refused to blind them"
        )
