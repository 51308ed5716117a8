"""Lineage of a result: ``ibx audit trace JOB_ID`` (docs/audit.md, "Tracing").

From an export's leaves alone, a job's story as a tree, each node with the
ledger index it was read from::

    job → request → decision → policy version and its officers
                             → consents, each with its signer and its key's registration
        → key operations (mpc.key.*) → contributors (contributions, refusals, withdrawals)
        → release checks (the job's moves, the cohort against its minimum)
        → result (its hash) → alerts that cite any of the above

Tracing reads; it does not verify. A tampered export traces as it reads, and
``ibx audit verify`` is what finds the tampering. What the trace does notice on
the way (a consent signed by a key other than its enterprise's ledgered one, a
release below its minimum cohort, a payload that does not parse through the
typed registry) is put on the node as a ``problem``.
"""

from __future__ import annotations

import enum
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from audit._export import LedgerExport
from audit._parse import EntryTypes
from audit.errors import AuditError
from core.canonical import JsonValue
from core.clock import format_rfc3339
from ledger import InvalidEntryError, LedgerEntry

__all__ = [
    "JobTrace",
    "NodeKind",
    "TraceNode",
    "TraceNotFoundError",
    "decoded_entries",
    "trace_job",
]

logger = logging.getLogger(__name__)

_POLICY_STEPS: Final = ("policy.propose", "policy.test", "policy.approve", "policy.activate")
_KEY_PREFIX: Final = "mpc.key."
_VERBS: Final = {
    "policy.propose": "proposed",
    "policy.test": "tested",
    "policy.approve": "approved",
    "policy.activate": "activated",
}
_JOB_KEYS: Final = ("job_id", "decision_id")
"""The payload members that tie an entry to a job."""


class TraceNotFoundError(AuditError):
    """No decision on the ledger for the job (or result hash) asked about."""

    title = "not on the ledger"


class NodeKind(enum.Enum):
    """What a node of the lineage stands for."""

    JOB = "job"
    REQUEST = "request"
    DECISION = "decision"
    POLICY = "policy"
    POLICY_STEP = "policy_step"
    CONSENTS = "consents"
    CONSENT = "consent"
    CONSENT_CHECK = "consent_check"
    LEFT_OUT = "left_out"
    KEY_OPERATIONS = "key_operations"
    KEY_OPERATION = "key_operation"
    CONTRIBUTORS = "contributors"
    CONTRIBUTION = "contribution"
    REFUSAL = "refusal"
    WITHDRAWAL = "withdrawal"
    RELEASE_CHECKS = "release_checks"
    STATE = "state"
    CHECK = "check"
    RESULT = "result"
    ALERTS = "alerts"
    ALERT = "alert"
    OTHER = "other"


@dataclass(frozen=True)
class TraceNode:
    """One fact of the lineage: what it is, in words, and the ledger index it was read from."""

    kind: NodeKind
    text: str
    index: int | None = None
    """The ledger index of the entry this node states (None: a grouping or a derived check)."""
    details: Mapping[str, JsonValue] = field(default_factory=dict)
    children: tuple[TraceNode, ...] = ()
    problem: str | None = None
    """Something the trace noticed while reading (not a verification: see ``ibx audit verify``)."""

    def to_dict(self) -> dict[str, JsonValue]:
        """The ``--json`` form: ``{kind, text, index, details, problem, children}``."""
        return {
            "kind": self.kind.value,
            "text": self.text,
            "index": self.index,
            "details": dict(self.details),
            "problem": self.problem,
            "children": [child.to_dict() for child in self.children],
        }

    def walk(self) -> Iterator[TraceNode]:
        """This node and every node below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def line(self) -> str:
        """The node as one line of text: ``#index text`` and its problem, if any."""
        where = f"#{self.index} " if self.index is not None else ""
        flag = f"  [!] {self.problem}" if self.problem else ""
        return f"{where}{self.text}{flag}"


@dataclass(frozen=True)
class JobTrace:
    """The lineage of one job, its root a :attr:`NodeKind.JOB` node."""

    job_id: str
    state: str | None
    result_sha256: str | None
    root: TraceNode

    @property
    def problems(self) -> tuple[TraceNode, ...]:
        """The nodes that carry a problem."""
        return tuple(node for node in self.root.walk() if node.problem)

    def to_dict(self) -> dict[str, JsonValue]:
        """The ``--json`` form: ``{job_id, state, result_sha256, tree}``."""
        return {
            "job_id": self.job_id,
            "state": self.state,
            "result_sha256": self.result_sha256,
            "tree": self.root.to_dict(),
        }

    def lines(self) -> list[str]:
        """The tree drawn in plain text (``├──``/``└──``), one node per line."""
        out = [self.root.line()]
        _draw(self.root.children, "", out)
        return out


def _draw(nodes: Sequence[TraceNode], prefix: str, out: list[str]) -> None:
    for position, node in enumerate(nodes):
        last = position == len(nodes) - 1
        out.append(f"{prefix}{'└── ' if last else '├── '}{node.line()}")
        _draw(node.children, prefix + ("    " if last else "│   "), out)


def decoded_entries(export: LedgerExport) -> list[LedgerEntry]:
    """The export's entries, decoded from their leaf bytes, in index order.

    A leaf that does not decode is left out (and logged): tracing and reports
    read, verification (``ibx audit verify``) is what names it.
    """
    entries: list[LedgerEntry] = []
    for item in export.entries:
        try:
            entries.append(LedgerEntry.from_leaf_input(item.leaf))
        except InvalidEntryError:
            logger.warning("export entry %d does not decode; left out of the reading", item.index)
    entries.sort(key=lambda e: e.index)
    return entries


def trace_job(export: LedgerExport, ref: str, *, entry_types: EntryTypes | None = None) -> JobTrace:
    """The lineage of the job ``ref`` (a job id, or the SHA-256 of its released result).

    Raises:
        TraceNotFoundError: no ``pipeline.decision`` for that job in the export.
    """
    entries = decoded_entries(export)
    by_job: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        for key in _JOB_KEYS:
            value = entry.payload.get(key)
            if isinstance(value, str):
                by_job[value].append(entry)
                break
    job_id = _resolve(ref, entries, by_job)
    return _Tracer(entries, by_job[job_id], entry_types).trace(job_id)


def _resolve(
    ref: str, entries: Sequence[LedgerEntry], by_job: Mapping[str, Sequence[LedgerEntry]]
) -> str:
    if any(e.type == "pipeline.decision" for e in by_job.get(ref, ())):
        return ref
    for entry in entries:
        if entry.type == "pipeline.result" and entry.payload.get("result_sha256") == ref:
            job = entry.payload.get("job_id")
            if isinstance(job, str):
                return job
    raise TraceNotFoundError(
        f"no pipeline.decision for job {ref!r} (nor a released result of that hash) "
        f"among the {len(entries)} entries read"
    )


class _Tracer:
    """Builds one job's tree from the job's entries and the whole log (for policy and keys)."""

    def __init__(
        self,
        entries: Sequence[LedgerEntry],
        job_entries: Sequence[LedgerEntry],
        entry_types: EntryTypes | None,
    ) -> None:
        self._all = entries
        self._job = job_entries
        self._types = entry_types
        self._used: set[int] = set()

    def trace(self, job_id: str) -> JobTrace:
        decision = next(e for e in self._job if e.type == "pipeline.decision")
        self._used.add(decision.index)
        payload = decision.payload
        states = [e for e in self._job if e.type == "pipeline.job"]
        state = _text(states[-1].payload, "state") if states else "authorized"
        result = next((e for e in self._job if e.type == "pipeline.result"), None)
        result_hash = _text(result.payload, "result_sha256") if result is not None else None
        children = [
            self._request(decision),
            self._decision(decision),
            self._keys(),
            self._contributors(),
            self._release(decision, states, result),
            self._result(result),
        ]
        alerts = self._alerts(job_id)
        if alerts is not None:
            children.append(alerts)
        other = self._other()
        if other is not None:
            children.append(other)
        requester = _text(payload, "requester") or decision.actor
        root = TraceNode(
            NodeKind.JOB,
            f"job {job_id} of {requester}: {state}",
            None,
            {"job_id": job_id, "requester": requester, "state": state},
            tuple(children),
        )
        return JobTrace(job_id, state, result_hash, root)

    # -- request and decision -------------------------------------------------------------

    def _request(self, decision: LedgerEntry) -> TraceNode:
        request = _mapping(decision.payload, "request")
        fields = ", ".join(_texts(request, "fields")) or "-"
        datasets = _texts(request, "datasets")
        industry = _text(request, "industry")
        over = f"{len(datasets)} dataset(s)" if datasets else f"industry {industry or '-'}"
        text = (
            f"request: {_text(request, 'operation')} of {fields} over {over}, purpose "
            f"{_text(request, 'purpose')}, engine asked {_text(request, 'engine')}"
        )
        details: dict[str, JsonValue] = {
            "request": dict(request),
            "request_sha256": decision.payload.get("request_sha256"),
        }
        return TraceNode(NodeKind.REQUEST, text, decision.index, details)

    def _decision(self, decision: LedgerEntry) -> TraceNode:
        payload = decision.payload
        participants = _mappings(payload, "participants")
        version = _text(payload, "policy_version") or ""
        children = [self._policy(version, decision.index), self._consents(decision, participants)]
        left_out = _mappings(payload, "left_out")
        if left_out:
            children.append(
                TraceNode(
                    NodeKind.LEFT_OUT,
                    f"left out: {len(left_out)}",
                    None,
                    {},
                    tuple(
                        TraceNode(
                            NodeKind.LEFT_OUT,
                            f"{_text(item, 'enterprise')}: {_text(item, 'reason') or 'no reason'}",
                            None,
                            dict(item),
                        )
                        for item in left_out
                    ),
                )
            )
        text = (
            f"decision: allowed, engine {_text(payload, 'engine')}, {len(participants)} "
            f"participant(s), minimum cohort {payload.get('min_cohort')}, at "
            f"{_text(payload, 'decided_at') or format_rfc3339(decision.time)}"
        )
        details: dict[str, JsonValue] = {
            "engine": payload.get("engine"),
            "policy_version": version,
            "min_cohort": payload.get("min_cohort"),
            "participants": len(participants),
            "decided_at": payload.get("decided_at"),
            "deadline": payload.get("deadline"),
        }
        return TraceNode(
            NodeKind.DECISION, text, decision.index, details, tuple(children),
            self._unparsed(decision),
        )  # fmt: skip

    def _policy(self, version: str, before: int) -> TraceNode:
        steps = [
            e
            for e in self._all
            if e.type in _POLICY_STEPS and e.payload.get("version") == version and e.index < before
        ]
        nodes = tuple(self._policy_step(step) for step in steps)
        officers = sorted({_officer(s) for s in steps if s.type != "policy.test"})
        activations = [s for s in steps if s.type == "policy.activate"]
        problem = None
        if not steps:
            text = f"policy version {version}: no policy.* entry before the decision (bootstrap)"
        else:
            text = f"policy version {version}: officers {', '.join(officers)}"
            if not activations:
                problem = "no policy.activate of this version before the decision"
            elif len(officers) < 2:
                problem = "fewer than two distinct officers acted on this version"
        details: dict[str, JsonValue] = {"version": version, "officers": list(officers)}
        for step in steps:
            role = {"policy.propose": "proposer", "policy.approve": "approver",
                    "policy.activate": "activator"}.get(step.type)  # fmt: skip
            if role is not None:
                details[role] = _officer(step)
        return TraceNode(NodeKind.POLICY, text, None, details, nodes, problem)

    def _policy_step(self, step: LedgerEntry) -> TraceNode:
        verb = _VERBS[step.type]
        officer = _officer(step)
        signed = isinstance(step.payload.get("duty"), Mapping)
        extra = ""
        if step.type == "policy.test":
            extra = ", tests passed" if step.payload.get("passed") is True else ", tests FAILED"
        text = f"{verb} by {officer}{extra} ({'signed duty' if signed else 'no signed duty'})"
        details: dict[str, JsonValue] = {
            "step": step.type,
            "officer": officer,
            "signed": signed,
            "time": format_rfc3339(step.time),
        }
        return TraceNode(NodeKind.POLICY_STEP, text, step.index, details, (), self._unparsed(step))

    def _consents(
        self, decision: LedgerEntry, participants: Sequence[Mapping[str, JsonValue]]
    ) -> TraceNode:
        grants = {
            _text(e.payload, "consent_id"): e
            for e in self._all
            if e.type == "consent.grant" and e.index < decision.index
        }
        nodes: list[TraceNode] = []
        for part in participants:
            nodes.append(self._consent(part, grants.get(_text(part, "consent_id")), decision.index))
        for entry in self._job:
            if entry.type in ("consent.use", "consent.job"):
                self._used.add(entry.index)
                status = _text(entry.payload, "status")
                what = (
                    "checked and counted" if entry.type == "consent.use" else f"job check: {status}"
                )
                cited = len(_mappings(entry.payload, "consents"))
                nodes.append(
                    TraceNode(
                        NodeKind.CONSENT_CHECK,
                        f"{entry.type}: {cited} consent(s) {what}",
                        entry.index,
                        {"type": entry.type, "consents": cited, "status": status},
                        (),
                        self._unparsed(entry),
                    )
                )
        return TraceNode(
            NodeKind.CONSENTS, f"consents: {len(participants)}", None, {}, tuple(nodes)
        )

    def _consent(
        self, part: Mapping[str, JsonValue], grant: LedgerEntry | None, before: int
    ) -> TraceNode:
        consent_id = _text(part, "consent_id") or "?"
        enterprise = _text(part, "enterprise") or "?"
        cited_key = _text(part, "public_key")
        details: dict[str, JsonValue] = {
            "consent_id": consent_id,
            "enterprise": enterprise,
            "dataset": part.get("dataset"),
            "receipt_sha256": part.get("receipt_sha256"),
            "public_key": cited_key,
        }
        if grant is None:
            return TraceNode(
                NodeKind.CONSENT,
                f"consent {consent_id} of {enterprise}: no consent.grant before the decision",
                None,
                details,
                (),
                "the decision cites a consent the ledger never granted",
            )
        receipt = _mapping(grant.payload, "receipt")
        signer_key = _text(receipt, "public_key")
        signer = _text(receipt, "enterprise") or grant.actor
        registered = self._key_entry(signer, signer_key, before)
        details.update(
            {
                "granted_index": grant.index,
                "signer": signer,
                "signer_key": signer_key,
                "key_registered_index": registered.index if registered is not None else None,
            }
        )
        problem = None
        if grant.payload.get("receipt_hash") != part.get("receipt_sha256"):
            problem = "the decision cites another receipt than the one granted"
        elif registered is None:
            problem = f"{signer_key} is not a key the ledger recorded for {signer}"
        elif signer != enterprise:
            problem = f"signed by {signer}, not by the data owner {enterprise}"
        key_text = (
            f"key registered at #{registered.index}" if registered else "key not on the ledger"
        )
        text = (
            f"consent {consent_id} of {enterprise} (dataset {part.get('dataset')}): signed by "
            f"{signer} with {signer_key} ({key_text}); receipt {part.get('receipt_sha256')}"
        )
        return TraceNode(
            NodeKind.CONSENT, text, grant.index, details, (), problem or self._unparsed(grant)
        )

    def _key_entry(self, name: str, key: str | None, before: int) -> LedgerEntry | None:
        """The entry before ``before`` that recorded ``name``'s current key, if that is ``key``."""
        current: LedgerEntry | None = None
        for entry in self._all:
            if entry.index >= before:
                break
            registers = entry.type in ("identity.create", "identity.public_key")
            if registers and entry.payload.get("name") == name and entry.payload.get("public_key"):
                current = entry
        if current is None or current.payload.get("public_key") != key:
            return None
        return current

    # -- key operations and contributors --------------------------------------------------

    def _keys(self) -> TraceNode:
        nodes = []
        for entry in self._job:
            if not entry.type.startswith(_KEY_PREFIX):
                continue
            self._used.add(entry.index)
            operation = entry.type.removeprefix(_KEY_PREFIX)
            payload = entry.payload
            extra = ""
            if operation == "generate":
                extra = f" {payload.get('scheme')} key for {payload.get('operation')}"
            elif operation == "decrypt":
                extra = f" the aggregate of {payload.get('contributors')} contributor(s)"
            extra = f":{extra}" if extra else ""
            text = f"{entry.type} by {entry.actor}{extra} (key {payload.get('key_fingerprint')})"
            details: dict[str, JsonValue] = {"type": entry.type, "actor": entry.actor, **payload}
            nodes.append(
                TraceNode(
                    NodeKind.KEY_OPERATION, text, entry.index, details, (), self._unparsed(entry)
                )
            )
        decrypts = sum(1 for n in nodes if n.details.get("type") == "mpc.key.decrypt")
        problem = "more than one decryption for one job" if decrypts > 1 else None
        label = (
            f"key operations: {len(nodes)}"
            if nodes
            else "key operations: none recorded for this job"
        )
        return TraceNode(NodeKind.KEY_OPERATIONS, label, None, {}, tuple(nodes), problem)

    def _contributors(self) -> TraceNode:
        kinds = {
            "pipeline.contribution": (NodeKind.CONTRIBUTION, "contributed"),
            "pipeline.refusal": (NodeKind.REFUSAL, "refused"),
            "pipeline.withdrawal": (NodeKind.WITHDRAWAL, "withdrawn"),
        }
        nodes = []
        for entry in self._job:
            if entry.type not in kinds:
                continue
            self._used.add(entry.index)
            kind, verb = kinds[entry.type]
            payload = entry.payload
            enterprise = _text(payload, "enterprise") or entry.actor
            statement = _mapping(payload, "statement")
            digest = statement.get("payload_sha256")
            reason = _text(payload, "reason") or _text(statement, "reason")
            text = f"{enterprise} {verb}"
            if payload.get("round") is not None:
                text += f" (round {payload.get('round')})"
            if digest:
                text += f", ciphertext/shares {digest}"
            if reason:
                text += f": {reason}"
            signed = isinstance(payload.get("signature"), str)
            details: dict[str, JsonValue] = {
                "type": entry.type, "enterprise": enterprise, "round": payload.get("round"),
                "payload_sha256": digest, "reason": reason, "signed": signed,
            }  # fmt: skip
            nodes.append(TraceNode(kind, text, entry.index, details, (), self._unparsed(entry)))
        who = sorted(
            {str(n.details["enterprise"]) for n in nodes if n.kind is NodeKind.CONTRIBUTION}
        )
        label = f"contributors: {', '.join(who) if who else 'none'}"
        return TraceNode(
            NodeKind.CONTRIBUTORS, label, None, {"enterprises": list(who)}, tuple(nodes)
        )

    # -- release, result, alerts ----------------------------------------------------------

    def _release(
        self, decision: LedgerEntry, states: Sequence[LedgerEntry], result: LedgerEntry | None
    ) -> TraceNode:
        nodes = []
        for entry in states:
            self._used.add(entry.index)
            source, to = _text(entry.payload, "from"), _text(entry.payload, "state")
            reason = _text(entry.payload, "reason")
            text = f"{source} → {to}" + (f": {reason}" if reason else "")
            details: dict[str, JsonValue] = {"from": source, "state": to, "reason": reason}
            nodes.append(
                TraceNode(NodeKind.STATE, text, entry.index, details, (), self._unparsed(entry))
            )
        minimum = decision.payload.get("min_cohort")
        problem = None
        if result is not None:
            cohort = result.payload.get("cohort")
            contributors = _texts(result.payload, "contributors")
            participants = {
                _text(p, "enterprise") for p in _mappings(decision.payload, "participants")
            }
            ok = isinstance(cohort, int) and isinstance(minimum, int) and cohort >= minimum
            outsiders = sorted(set(contributors) - participants)
            text = f"cohort {cohort} {'≥' if ok else '<'} minimum {minimum} of the decision"
            if outsiders:
                problem = f"released with contributors not in the decision: {', '.join(outsiders)}"
            elif not ok:
                problem = "released below the decision's minimum cohort"
            details = {"cohort": cohort, "min_cohort": minimum, "contributors": list(contributors)}
            nodes.append(TraceNode(NodeKind.CHECK, text, result.index, details, (), problem))
        label = f"release checks: {len(states)} move(s)" + (
            ", released" if result else ", not released"
        )
        return TraceNode(NodeKind.RELEASE_CHECKS, label, None, {}, tuple(nodes))

    def _result(self, result: LedgerEntry | None) -> TraceNode:
        if result is None:
            return TraceNode(
                NodeKind.RESULT, "result: none released", None, {"result_sha256": None}
            )
        self._used.add(result.index)
        payload = result.payload
        digest = _text(payload, "result_sha256")
        released = format_rfc3339(result.time)
        text = f"result sha256 {digest}, cohort {payload.get('cohort')}, released at {released}"
        details: dict[str, JsonValue] = {
            "result_sha256": digest,
            "cohort": payload.get("cohort"),
            "contributors": list(_texts(payload, "contributors")),
            "released_at": released,
        }
        return TraceNode(NodeKind.RESULT, text, result.index, details, (), self._unparsed(result))

    def _alerts(self, job_id: str) -> TraceNode | None:
        cited = {e.index for e in self._job}
        nodes = []
        for entry in self._all:
            if entry.type != "audit.alert":
                continue
            evidence = entry.payload.get("evidence")
            indices = set(evidence) if isinstance(evidence, list) else set()
            if entry.payload.get("subject") != job_id and not (indices & cited):
                continue
            self._used.add(entry.index)
            text = (
                f"alert {_text(entry.payload, 'rule')} ({_text(entry.payload, 'severity')}): "
                f"{_text(entry.payload, 'message')}"
            )
            nodes.append(TraceNode(NodeKind.ALERT, text, entry.index, dict(entry.payload)))
        if not nodes:
            return None
        return TraceNode(NodeKind.ALERTS, f"alerts: {len(nodes)}", None, {}, tuple(nodes))

    def _other(self) -> TraceNode | None:
        rest = [e for e in self._job if e.index not in self._used]
        if not rest:
            return None
        nodes = tuple(
            TraceNode(NodeKind.OTHER, f"{e.type} by {e.actor}", e.index, dict(e.payload))
            for e in rest
        )
        return TraceNode(
            NodeKind.OTHER, f"other entries about this job: {len(rest)}", None, {}, nodes
        )

    def _unparsed(self, entry: LedgerEntry) -> str | None:
        """Why ``entry``'s payload does not parse through its typed class (None: it does)."""
        if self._types is None:
            return None
        parse = self._types.get(entry.type)
        if parse is None:
            return f"entry type {entry.type} is unknown to the typed registry"
        try:
            parse(entry.payload)
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            first = " ".join(str(exc).split())[:200]
            return f"the payload does not parse as {entry.type}: {first}"
        return None


def _officer(step: LedgerEntry) -> str:
    return _text(step.payload, "officer") or step.actor


def _text(payload: Mapping[str, JsonValue], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) else None


def _texts(payload: Mapping[str, JsonValue], key: str) -> tuple[str, ...]:
    value = payload.get(key)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _mapping(payload: Mapping[str, JsonValue], key: str) -> Mapping[str, JsonValue]:
    value = payload.get(key)
    return value if isinstance(value, Mapping) else {}


def _mappings(payload: Mapping[str, JsonValue], key: str) -> tuple[Mapping[str, JsonValue], ...]:
    value = payload.get(key)
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, Mapping))
