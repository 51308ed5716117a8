"""The agent's loop: long-poll for tasks, verify each, contribute or refuse, journal it.

The exchange is the source of truth for what is answered: a task it lists
is one it holds no answer for, so an agent that restarts simply asks again.
A contribution whose POST got no answer is sent again *unchanged* (the
exchange ignores the same statement, ``200``); a task listed again after a
lost answer is computed afresh. ``409`` means the round was answered
already, ``410`` that the job no longer collects.

Each poll sends ``since`` (the size of the checkpoint the agent kept), so
the task list carries the evidence for every task (the signed checkpoint
with its consistency proof, the decision entry with its inclusion proof, the
agent's consent, a PSI hand-off entry): the verifier reads it through
:class:`exchange.agent.reads.EvidenceReads` and checks it exactly as it
checks separate reads, which it falls back to for anything missing. An HE
contribution goes in the binary form (:mod:`exchange.pipeline.frames`),
as JSON if the exchange does not take it (``415``).

With a witness quorum (``--witness-quorum K``), a task whose decision is on
the served ledger but beyond every checkpoint K witnesses cosigned waits
instead of being refused (:class:`exchange.agent.errors.AwaitingWitnesses`):
one line ``waiting for K witness cosignatures on a checkpoint covering
decision #N``, nothing read for it. Until a witness moves, the agent polls
the witnessed checkpoint (``GET /v1/ledger/checkpoint?witnessed=true``) with
a growing delay instead of the task list (which would answer at once with
the waiting task): when it changes, or after :attr:`AgentConfig.wait`
seconds, the list is read again and every task re-checked. A waiting task
whose deadline passes is dropped with one line and no answer: the exchange's
sweeper fails or refuses the job on that deadline itself (a waiting task the
exchange stops listing, its collection ended, is forgotten with one line too).

When the exchange is down or restarting the agent waits and reconnects with
a growing delay (at most :attr:`AgentConfig.max_backoff`), printing one line
when an outage starts and one when it ends, never one per retry. Only a
rejected token (``401``) or an exchange without the agent routes (``404``)
stops it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from core.canonical import JsonValue
from core.clock import format_rfc3339, parse_rfc3339, utcnow
from core.keys import Ed25519Signer
from exchange.agent.contribute import Contribution, Contributor
from exchange.agent.errors import AgentError, AwaitingWitnesses, LedgerAlarm, TaskRefused
from exchange.agent.journal import AgentState
from exchange.agent.reads import EvidenceReads, kept_size
from exchange.agent.task import Task
from exchange.agent.verify import TaskVerifier, VerifiedHead
from exchange.client import ExchangeClient
from exchange.error_table import AuthError, RemoteRefusalError
from exchange.pipeline.frames import FramedContribution
from exchange.pipeline.statements import CONTRIBUTION_KIND, REFUSAL_KIND, AgentStatement

__all__ = ["AgentConfig", "AgentStopped", "DataAgent"]

Say = Callable[[str], None]

RANK_GRACE = timedelta(hours=1)
"""How long after a job's deadline the agent still asks for its rank."""


class AgentStopped(Exception):  # noqa: N818 - a signal, not a failure
    """Raised into an idle long poll when the agent is asked to stop."""


@dataclass(frozen=True)
class AgentConfig:
    """How the loop polls and retries."""

    wait: int = 20
    """Seconds the exchange may hold a long poll (at most 30)."""
    first_backoff: float = 0.5
    """Seconds before the first reconnection attempt."""
    max_backoff: float = 10.0
    """The longest wait between reconnection attempts."""
    post_attempts: int = 3
    """Times one contribution or refusal is sent before the round is left for the next poll."""


class _Outage(Exception):  # noqa: N818 - internal control flow
    def __init__(self, why: str) -> None:
        super().__init__(why)


class DataAgent:
    """One enterprise's data agent."""

    def __init__(
        self,
        client: ExchangeClient,
        *,
        enterprise: str,
        signer: Ed25519Signer,
        verifier: TaskVerifier,
        contributor: Contributor,
        state: AgentState,
        say: Say,
        warn: Say,
        config: AgentConfig | None = None,
    ) -> None:
        self._client = client
        self.enterprise = enterprise
        self._signer = signer
        self._verifier = verifier
        self._contributor = contributor
        self._state = state
        self._say = say
        self._warn = warn
        self.config = config or AgentConfig()
        self._stop = threading.Event()
        self.idle = False
        """True while the agent waits on the exchange with nothing in hand (safe to interrupt)."""
        self._outage_since: datetime | None = None
        self._waiting: dict[tuple[str, int], Task] = {}
        """Tasks waiting for witness cosignatures, by job id and round."""
        self._dropped: set[tuple[str, int]] = set()
        """Tasks dropped when their deadline passed while waiting (not answered)."""
        self._witnessed_seen: str | None = None
        """The witnessed checkpoint as served at the last verification of the head."""
        self._only_dropped = False
        """The last list held tasks, every one dropped (its job not closed yet)."""

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop after the task in hand (from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    @property
    def waiting(self) -> tuple[Task, ...]:
        """The tasks waiting for witness cosignatures."""
        return tuple(self._waiting.values())

    def run_once(self) -> int:
        """Handle the tasks listed now and any ranks to learn; 0, or 5 while the ledger
        alarm stands.

        Raises:
            AuthError: the exchange rejects the token.
            AgentError: the exchange has no agent routes or cannot be reached.
        """
        try:
            self.handle(*self._tasks(0))
        except _Outage as exc:
            raise AgentError(f"the exchange is unreachable: {exc}") from exc
        self.learn_ranks()
        return 5 if self._state.alarm() is not None else 0

    def run(self) -> None:
        """Poll and handle tasks until :meth:`stop`.

        Raises:
            AuthError: the exchange rejects the token.
            AgentError: the exchange has no agent routes.
        """
        delay = self.config.first_backoff
        while not self.stopping:
            try:
                self.idle = True
                try:
                    tasks, evidence = self._tasks(self.config.wait)
                finally:
                    self.idle = False
                self._reconnected()
                delay = self.config.first_backoff
                self.handle(tasks, evidence)
                self.learn_ranks()
                if self._waiting:
                    self._await_witnesses()
                elif self._only_dropped:  # listed at once again until the job is closed
                    self._rest(self.config.first_backoff)
            except AgentStopped:
                return
            except _Outage as exc:
                self._down(str(exc))
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.config.max_backoff)

    # -- polling -------------------------------------------------------------------------

    def _tasks(self, wait: int) -> tuple[list[Mapping[str, Any]], Mapping[str, Any] | None]:
        """The listed tasks and the ledger evidence served with them (unchecked).

        Raises:
            _Outage: the exchange is unreachable, overloaded or answered nonsense.
            AuthError: the exchange rejects the token.
            AgentError: the exchange has no agent routes or refused the list.
        """
        since = kept_size(self._state.kept_checkpoint())
        try:
            body = self._client.get("/v1/agent/tasks", wait=wait, since=since)
        except httpx.TransportError as exc:
            raise _Outage(f"{type(exc).__name__}: {exc}") from exc
        except RemoteRefusalError as exc:
            if exc.status == 401:
                raise AuthError(f"the exchange rejects the agent's token: {exc}") from exc
            if exc.status == 404:
                raise AgentError(f"the exchange has no agent routes ({exc})") from exc
            if exc.status >= 500 or exc.status == 429:
                raise _Outage(f"HTTP {exc.status}: {exc}") from exc
            raise AgentError(f"the exchange refused the task list: {exc}") from exc
        tasks = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(tasks, list):
            raise _Outage("the exchange's task list is malformed")
        evidence = body.get("evidence")
        return [t for t in tasks if isinstance(t, dict)], (
            evidence if isinstance(evidence, dict) else None
        )

    def _down(self, why: str) -> None:
        if self._outage_since is None:
            self._outage_since = utcnow()
            self._warn(f"exchange unreachable ({why}); reconnecting with backoff")

    def _reconnected(self) -> None:
        if self._outage_since is not None:
            seconds = (utcnow() - self._outage_since).total_seconds()
            self._outage_since = None
            self._say(f"exchange reachable again after {seconds:.0f} s")

    # -- tasks ---------------------------------------------------------------------------

    def handle(
        self, listed: Sequence[Mapping[str, Any]], evidence: Mapping[str, Any] | None = None
    ) -> None:
        """Verify and answer each listed task (the checkpoint once for all of them).

        ``evidence``: the ledger head served with the list; each task's own
        evidence is its ``evidence`` member (both unchecked, see
        :class:`exchange.agent.reads.EvidenceReads`).

        Raises:
            _Outage: the exchange went away mid-way (the rest stay listed there).
        """
        self._forget_unlisted(listed)
        self._only_dropped = False
        if not listed:
            return
        tasks: list[tuple[Task, Mapping[str, Any] | None]] = []
        for obj in listed:
            try:
                served = obj.get("evidence")
                task = Task.from_dict(obj)
            except TaskRefused as exc:
                self._refuse_raw(obj, str(exc))
                continue
            if (task.job_id, task.round) not in self._dropped:
                tasks.append((task, served if isinstance(served, dict) else None))
        if not tasks:
            self._only_dropped = bool(self._dropped)
            return
        base = self._verifier
        head: VerifiedHead | None = None
        reason: str | None = None
        try:
            head = self._guard(base.with_reads(EvidenceReads(base.reads, evidence)).heads)
            self._witnessed_seen = head.witnessed_text
        except LedgerAlarm as exc:
            reason = f"ledger alarm: {exc}"
            self._warn(f"LEDGER ALARM: {exc}; refusing every task until it is cleared")
            self._state.journal.record("ledger_alarm", reason=str(exc))
        except TaskRefused as exc:
            reason = str(exc)
            self._warn(f"cannot verify the ledger: {exc}")
        for task, served in tasks:
            if self.stopping:
                return
            if (task.job_id, task.round) not in self._waiting:
                self._say(
                    f"{task.label}: received ({task.engine.value} "
                    f"{task.request.operation.value} of {', '.join(task.request.fields)}, "
                    f"decision #{task.decision_index})"
                )
            if head is None:
                self._waiting.pop((task.job_id, task.round), None)
                self.refuse(task, reason or "the ledger could not be verified")
                continue
            verifier = base.with_reads(EvidenceReads(base.reads, evidence, served))
            self._handle(task, head, verifier)

    def _handle(self, task: Task, head: VerifiedHead, verifier: TaskVerifier) -> None:
        key = (task.job_id, task.round)
        try:
            auth = self._guard(lambda: verifier.check(task, head))
        except AwaitingWitnesses as exc:
            self._wait(task, exc)
            return
        except TaskRefused as exc:
            self._waiting.pop(key, None)
            self.refuse(task, str(exc))
            return
        self._waiting.pop(key, None)
        size = head.trusted.size if head.trusted is not None else head.served.size
        try:
            self._say(
                f"{task.label}: verified decision #{task.decision_index} on the ledger "
                f"(size {size}) and consent {auth.participant.consent_id}"
            )
            contribution = self._guard(
                lambda: self._contributor.contribute(task, auth.decision.engine)
            )
        except TaskRefused as exc:
            self.refuse(task, str(exc))
            return
        if contribution.rank_tag is not None:
            deadline = format_rfc3339(task.deadline) if task.deadline else None
            self._state.add_rank_tag(task.job_id, contribution.rank_tag, deadline)
        self._send_contribution(task, contribution)

    # -- waiting for witnesses --------------------------------------------------------

    def _wait(self, task: Task, why: AwaitingWitnesses) -> None:
        """Keep ``task`` waiting for witnesses (one line the first time), or drop it when
        its deadline has passed."""
        key = (task.job_id, task.round)
        if task.deadline is not None and utcnow() >= task.deadline:
            self._drop(task)
            return
        if key in self._waiting:
            return
        self._waiting[key] = task
        self._state.journal.record(
            "waiting",
            job_id=task.job_id,
            round=task.round,
            decision_index=task.decision_index,
            reason=str(why),
        )
        self._say(f"{task.label}: {why}")

    def _drop(self, task: Task) -> None:
        key = (task.job_id, task.round)
        self._waiting.pop(key, None)
        if key in self._dropped:
            return
        self._dropped.add(key)
        deadline = format_rfc3339(task.deadline) if task.deadline else "?"
        self._state.journal.record(
            "dropped", job_id=task.job_id, round=task.round, deadline=deadline
        )
        self._say(
            f"{task.label}: dropped: its deadline {deadline} passed while waiting for "
            "witness cosignatures (not answered; the exchange closes the job)"
        )

    def _drop_expired(self) -> None:
        now = utcnow()
        for task in list(self._waiting.values()):
            if task.deadline is not None and now >= task.deadline:
                self._drop(task)

    def _forget_unlisted(self, listed: Sequence[Mapping[str, Any]]) -> None:
        """Forget waiting (and dropped) tasks the exchange no longer lists: answered,
        closed or failed there."""
        keys = {(obj.get("job_id"), obj.get("round")) for obj in listed}
        for key in [k for k in self._waiting if k not in keys]:
            task = self._waiting.pop(key)
            self._state.journal.record("unlisted", job_id=key[0], round=key[1])
            self._say(
                f"{task.label}: no longer listed (the exchange answered, closed or failed "
                "the job); stopped waiting for witness cosignatures"
            )
        self._dropped &= keys

    def _rest(self, seconds: float) -> None:
        """Wait ``seconds`` with nothing in hand (a signal interrupts it)."""
        self.idle = True
        try:
            self._stop.wait(seconds)
        finally:
            self.idle = False

    def _await_witnesses(self) -> None:
        """Poll the witnessed checkpoint with a growing delay until it changes (witnesses
        moved: time to re-check), :attr:`AgentConfig.wait` seconds pass, or no task waits
        any more (each dropped at its deadline).

        Raises:
            _Outage: the exchange went away.
            AgentStopped: (from a signal handler) the agent was asked to stop.
        """
        seen = self._witnessed_seen
        until = time.monotonic() + max(self.config.wait, 1)
        delay = self.config.first_backoff
        while True:
            self._drop_expired()
            if not self._waiting or self.stopping:
                return
            pause = min(delay, until - time.monotonic())
            deadlines = [t.deadline for t in self._waiting.values() if t.deadline is not None]
            if deadlines:
                pause = min(pause, (min(deadlines) - utcnow()).total_seconds() + 0.01)
            if pause <= 0:
                return
            self.idle = True
            try:
                if self._stop.wait(pause):
                    return
                try:
                    text = self._guard(self._verifier.witnessed_text)
                except TaskRefused:
                    return  # the list is read again; its checks say what is wrong
            finally:
                self.idle = False
            if text != seen:
                return
            delay = min(delay * 2, self.config.max_backoff)

    def _guard(self, step: Callable[[], Any]) -> Any:
        """Run ``step``; a lost connection or server error is an outage, not a refusal."""
        try:
            return step()
        except httpx.TransportError as exc:
            raise _Outage(f"{type(exc).__name__}: {exc}") from exc
        except RemoteRefusalError as exc:
            if exc.status >= 500:
                raise _Outage(f"HTTP {exc.status}: {exc}") from exc
            raise TaskRefused(f"the exchange refused a read: {exc}") from exc

    def _send_contribution(self, task: Task, contribution: Contribution) -> None:
        statement = AgentStatement(
            kind=CONTRIBUTION_KIND,
            job_id=task.job_id,
            enterprise=self.enterprise,
            round=task.round,
            payload_sha256=contribution.payload_sha256,
        )
        signature = statement.sign(self._signer)
        where = f"/v1/agent/jobs/{task.job_id}/contributions"
        journal = self._state.journal
        base: dict[str, JsonValue] = {"job_id": task.job_id, "round": task.round}
        try:
            if contribution.he_chunks is not None:
                try:
                    fingerprint = str(contribution.payload["key_fingerprint"])
                    framed = FramedContribution.of(
                        statement, signature, fingerprint, contribution.he_chunks
                    )
                    self._post(where, framed=framed)
                    sent = True
                except RemoteRefusalError as exc:
                    if exc.status != 415:
                        raise
                    sent = False  # an exchange without the binary form: JSON then
            else:
                sent = False
            if not sent:
                body = {
                    "statement": statement.to_dict(),
                    "signature": signature,
                    "payload": dict(contribution.payload),
                }
                self._post(where, body)
        except RemoteRefusalError as exc:
            self._answered(task, exc, "contribution")
            return
        journal.record(
            "contributed",
            **base,
            payload_sha256=contribution.payload_sha256,
            decision_index=task.decision_index,
            consent_id=task.consent_id,
        )
        self._say(f"{task.label}: contributed (payload sha256 {contribution.payload_sha256})")

    def refuse(self, task: Task, reason: str) -> None:
        """Sign and send a refusal of ``task`` with ``reason``; journal and print it."""
        self._send_refusal(task.job_id, task.round, reason, task.label)

    def _refuse_raw(self, obj: Mapping[str, Any], reason: str) -> None:
        job_id, round_no = obj.get("job_id"), obj.get("round")
        if (
            not isinstance(job_id, str)
            or isinstance(round_no, bool)
            or not isinstance(round_no, int)
        ):
            self._warn(f"skipped a task the exchange listed without a job id or round: {reason}")
            return
        self._send_refusal(job_id, round_no, reason, f"{job_id} round {round_no}")

    def _send_refusal(self, job_id: str, round_no: int, reason: str, label: str) -> None:
        reason = reason[:2000]
        journal = self._state.journal
        try:
            statement = AgentStatement(
                kind=REFUSAL_KIND,
                job_id=job_id,
                enterprise=self.enterprise,
                round=round_no,
                reason=reason,
            )
        except ValueError as exc:
            self._warn(f"{label}: not answered ({exc}); refused: {reason}")
            journal.record("refused", job_id=job_id, round=round_no, reason=reason, sent=False)
            return
        body = {"statement": statement.to_dict(), "signature": statement.sign(self._signer)}
        try:
            self._post(f"/v1/agent/jobs/{job_id}/refusals", body)
        except RemoteRefusalError as exc:
            journal.record(
                "refused",
                job_id=job_id,
                round=round_no,
                reason=reason,
                sent=False,
                exchange=f"{exc.status}: {exc}",
            )
            self._say(f"{label}: refused: {reason} (the exchange answered {exc.status}: {exc})")
            return
        journal.record("refused", job_id=job_id, round=round_no, reason=reason, sent=True)
        self._say(f"{label}: refused: {reason}")

    def _post(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        framed: FramedContribution | None = None,
    ) -> None:
        """POST ``body`` (JSON) or ``framed`` (binary), sending the same bytes again
        when no answer came.

        Raises:
            RemoteRefusalError: a 4xx answer.
            _Outage: no answer after the configured attempts, or a server error.
        """
        delay = self.config.first_backoff
        for attempt in range(1, self.config.post_attempts + 1):
            try:
                if framed is not None:
                    self._client.call("POST", path, content=framed.body, headers=framed.headers())
                else:
                    self._client.post(path, body)
                return
            except httpx.TransportError as exc:
                if attempt == self.config.post_attempts:
                    raise _Outage(f"{type(exc).__name__}: {exc}") from exc
            except RemoteRefusalError as exc:
                if exc.status < 500:
                    raise
                if attempt == self.config.post_attempts:
                    raise _Outage(f"HTTP {exc.status}: {exc}") from exc
            if self._stop.wait(delay):
                raise _Outage("stopping")
            delay = min(delay * 2, self.config.max_backoff)

    def _answered(self, task: Task, exc: RemoteRefusalError, what: str) -> None:
        base: dict[str, JsonValue] = {"job_id": task.job_id, "round": task.round}
        journal = self._state.journal
        if exc.status == 409:
            journal.record("answered", **base, detail=str(exc))
            self._say(f"{task.label}: answered already (the exchange holds this round's answer)")
        elif exc.status == 410:
            journal.record("closed", **base, detail=str(exc))
            self._say(f"{task.label}: job closed (no longer collecting)")
            self._contributor.forget(task.job_id)
        else:
            journal.record("rejected", **base, status=exc.status, reason=str(exc))
            self._warn(f"{task.label}: the exchange rejected the {what} ({exc.status}): {exc}")

    # -- ranks ---------------------------------------------------------------------------

    def learn_ranks(self) -> None:
        """For each job this agent dealt a rank tag to, read its share once released."""
        now = utcnow()
        for job_id, (tags, deadline) in self._state.rank_jobs().items():
            try:
                body = self._client.get(f"/v1/results/{job_id}")
            except httpx.TransportError:
                return
            except RemoteRefusalError as exc:
                expired = deadline is not None and parse_rfc3339(deadline) + RANK_GRACE < now
                if exc.status == 409 and not expired:
                    continue
                if exc.status >= 500:
                    return
                self._state.journal.record("rank_unknown", job_id=job_id, reason=str(exc))
                self._state.forget_ranks(job_id)
                continue
            self._rank(job_id, tags, body)

    def _rank(self, job_id: str, tags: list[int], body: Any) -> None:
        share = body.get("share") if isinstance(body, dict) else None
        ranked = share.get("rank_tags") if isinstance(share, dict) else None
        if not isinstance(ranked, list) or len(ranked) < 2:
            self._state.journal.record("rank_unknown", job_id=job_id, reason="no ranked tags")
            self._state.forget_ranks(job_id)
            return
        ordered = [int(t) for t in ranked if isinstance(t, int) and not isinstance(t, bool)]
        mine = next((t for t in tags if t in ordered), None)
        if mine is None:
            self._state.journal.record(
                "rank_unknown", job_id=job_id, reason="this agent's tag is not among the ranked"
            )
            self._warn(f"{job_id}: this agent's rank tag is not among the ranked tags")
        else:
            from mpc import RankKey

            percentile = RankKey(self.enterprise, mine).percentile(ordered)
            self._state.journal.record("rank", job_id=job_id, percentile=percentile)
            self._say(
                f"{job_id}: released; {self.enterprise} ranks above {percentile:.1f}% of the cohort"
            )
        self._state.forget_ranks(job_id)
