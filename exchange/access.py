"""Who may call which route: one table, decided by the policy decision point.

Every route of the HTTP API is in :data:`ROUTES`, keyed by method and path
template. A route is either public (:data:`PUBLIC`) or names the actions it
needs; :func:`authorize` asks the decision point with the active policy
version (Casbin roles and domains + Rego) and nothing else decides. Route
code holds no role checks: it receives a :class:`Grant` (the caller and the
scope the pack allowed) and, for ``own`` scope, shows only the caller's own.

A route missing from the table is refused (fail closed), and a test walks the
OpenAPI document to keep the table and the routes equal. Decisions on writes
are recorded on the ledger (``authz.decision``), allowed or denied.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.events import Event
from exchange.entries import AuthzDecisionEntry
from exchange.error_table import AuthError, ForbiddenError
from exchange.identities import Identity, Role

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = [
    "ADMIN_ROLES",
    "CONSOLE",
    "PUBLIC",
    "ROUTES",
    "Access",
    "Grant",
    "Scope",
    "authorize",
    "domain_of",
]


class Scope(enum.StrEnum):
    """How much of a resource kind a granted action reaches."""

    ALL = "all"
    OWN = "own"
    """Only what concerns the caller (its own consents, its own ledger entries)."""


@dataclass(frozen=True)
class Access:
    """What one route needs: the first of ``actions`` the pack allows wins.

    ``kind`` is the Casbin resource kind; ``resource_param`` names the path
    parameter that identifies the resource (else ``*``); ``write`` routes have
    their decision recorded on the ledger. A ``records_allow`` route records
    an allowed decision itself, in the transaction of what it does (the grant
    carries the entry as :attr:`Grant.pending`; ``POST /v1/requests`` records
    it with the pipeline's decision, or alone when the request is refused), so
    the call pays for one durable commit, not two; a denial is recorded here.
    """

    actions: tuple[tuple[str, Scope], ...]
    kind: str
    write: bool = False
    resource_param: str | None = None
    records_allow: bool = False

    @property
    def public(self) -> bool:
        """No token needed (health, OpenAPI, checkpoint, CA, CRL, OCSP)."""
        return not self.actions


PUBLIC = Access((), "public")

CONSOLE = Access((), "console")
"""The web console's pages (``/console/...``): no token at this layer — they hold a
session and reach data only through this API with its token (exchange/console/api.py)."""


def _one(action: str, kind: str, *, write: bool = False, param: str | None = None) -> Access:
    return Access(((action, Scope.ALL),), kind, write=write, resource_param=param)


def _read(all_action: str, own_action: str, kind: str, *, param: str | None = None) -> Access:
    return Access(((all_action, Scope.ALL), (own_action, Scope.OWN)), kind, resource_param=param)


ROUTES: Mapping[tuple[str, str], Access] = {
    # public: no token
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/v1/ledger/checkpoint"): PUBLIC,
    ("GET", "/v1/ledger/vkey"): PUBLIC,
    ("GET", "/v1/ledger/checkpoints"): PUBLIC,
    ("GET", "/v1/pki/ca"): PUBLIC,
    ("GET", "/v1/pki/crl"): PUBLIC,
    ("GET", "/v1/pki/ocsp/{encoded}"): PUBLIC,
    ("POST", "/v1/pki/ocsp"): PUBLIC,
    ("GET", "/.well-known/est/{rest}"): PUBLIC,  # a problem naming the edge port
    ("POST", "/.well-known/est/{rest}"): PUBLIC,
    # everyone authenticated
    ("GET", "/v1/me"): _one("whoami", "identity"),
    ("POST", "/v1/me/token"): _one("token_rotate", "identity", write=True),
    # the registry: the system administrator (administrators only with an officer's duty)
    ("POST", "/v1/identities"): _one("identity_manage", "identity", write=True),
    ("POST", "/v1/identities/{name}/revocation"): _one(
        "identity_manage", "identity", write=True, param="name"
    ),
    # the catalog (metadata only)
    ("GET", "/v1/datasets"): _one("catalog_read", "dataset"),
    ("POST", "/v1/datasets"): _one("catalog_register", "dataset", write=True),
    ("GET", "/v1/datasets/{dataset_id}"): _one("catalog_read", "dataset", param="dataset_id"),
    # consents
    ("GET", "/v1/consents"): _read("consent_read_all", "consent_read_own", "consent"),
    ("POST", "/v1/consents"): _one("grant_consent", "consent", write=True),
    ("POST", "/v1/consents/check"): _one("consent_check", "consent"),
    ("GET", "/v1/consents/{consent_id}"): _read(
        "consent_read_all", "consent_read_own", "consent", param="consent_id"
    ),
    ("POST", "/v1/consents/{consent_id}/revocation"): _one(
        "revoke_consent", "consent", write=True, param="consent_id"
    ),
    ("GET", "/v1/usage"): _read("usage_read_all", "usage_read_own", "consent"),
    # drafts to sign in a browser (nothing recorded: the signed statement goes to the routes above)
    ("POST", "/v1/consents/drafts"): _one("grant_consent", "consent"),
    ("POST", "/v1/consents/{consent_id}/revocation/draft"): _one(
        "revoke_consent", "consent", param="consent_id"
    ),
    ("PUT", "/v1/me/consent-key"): _one("consent_key_register", "consent", write=True),
    # edge: an enterprise's bootstrap tokens and sealed readings
    ("POST", "/v1/edge/tokens"): _one("edge_token_create", "edge", write=True),
    ("GET", "/v1/edge/readings"): _one("reading_pull", "reading"),
    # an enterprise's own devices: edge certificates, its agent's last poll (an index row)
    ("GET", "/v1/edge/devices"): _one("devices_read_own", "edge"),
    ("GET", "/v1/agent/contact"): _one("devices_read_own", "edge"),
    # policy: four eyes
    ("GET", "/v1/policies"): _one("policy_read", "policy"),
    ("POST", "/v1/policies"): _one("policy_propose", "policy", write=True),
    ("GET", "/v1/policies/{ref}"): _one("policy_read", "policy", param="ref"),
    ("GET", "/v1/policies/{ref}/source"): _one("policy_read", "policy", param="ref"),
    ("GET", "/v1/policies/{ref}/report"): _one("policy_read", "policy", param="ref"),
    ("POST", "/v1/policies/{ref}/test"): _one("policy_test", "policy", write=True, param="ref"),
    ("POST", "/v1/policies/{ref}/diff"): _one("policy_test", "policy", param="ref"),
    ("POST", "/v1/policies/{ref}/approve"): _one(
        "policy_approve", "policy", write=True, param="ref"
    ),
    ("POST", "/v1/policies/{ref}/activate"): _one(
        "policy_activate", "policy", write=True, param="ref"
    ),
    ("POST", "/v1/decisions"): _one("policy_decide", "policy"),
    # certificates
    ("POST", "/v1/pki/certificates/{serial}/revocation"): _one(
        "cert_revoke", "certificate", write=True, param="serial"
    ),
    # the ledger: auditors and witnesses read all, others what concerns them
    ("GET", "/v1/ledger/entries"): _read("ledger_read", "ledger_read_own", "ledger"),
    ("GET", "/v1/ledger/proof/inclusion"): _read("ledger_read", "ledger_read_own", "ledger"),
    ("GET", "/v1/ledger/proof/consistency"): _read("ledger_read", "ledger_read_own", "ledger"),
    # audit: the rows as served, reconciled with the ledger by ibx audit verify
    ("GET", "/v1/audit/state"): _one("ledger_read", "ledger"),
    # alerts (row.mismatch, risk.*, witness.fork): auditors and security officers
    ("GET", "/v1/alerts"): _one("alert_read", "ledger"),
    # witnesses: cosignatures on checkpoints, fork reports (exchange/witnessing.py)
    ("POST", "/v1/ledger/cosignatures"): _one("ledger_cosign", "ledger", write=True),
    ("POST", "/v1/ledger/forks"): _one("ledger_cosign", "ledger", write=True),
    # the pipeline: compute requests, jobs and results (docs/pipeline.md)
    ("POST", "/v1/requests"): Access(
        (("request_submit", Scope.ALL),), "job", write=True, records_allow=True
    ),
    # what a submission would be decided now (nothing recorded; as POST /v1/consents/check)
    ("POST", "/v1/requests/preview"): _one("request_submit", "job"),
    ("GET", "/v1/jobs"): _read("job_read_all", "job_read_own", "job"),
    ("GET", "/v1/jobs/{job_id}"): _read("job_read_all", "job_read_own", "job", param="job_id"),
    ("POST", "/v1/jobs/{job_id}/cancel"): _one("job_cancel", "job", write=True, param="job_id"),
    ("GET", "/v1/results/{job_id}"): _one("result_read", "job", param="job_id"),
    # the enterprises' data agents (each statement is signed and verified by the pipeline)
    ("GET", "/v1/agent/tasks"): _one("agent_task", "agent"),
    ("GET", "/v1/agent/jobs/{job_id}/he-context"): _one("agent_task", "agent", param="job_id"),
    ("GET", "/v1/agent/jobs/{job_id}/evidence"): _one("agent_task", "agent", param="job_id"),
    ("POST", "/v1/agent/jobs/{job_id}/contributions"): _one("agent_task", "agent", param="job_id"),
    ("POST", "/v1/agent/jobs/{job_id}/refusals"): _one("agent_task", "agent", param="job_id"),
}
"""Every route of the API: ``(method, path template) -> Access``."""

ADMIN_ROLES = frozenset({Role.SYSADMIN, Role.SECURITY_OFFICER, Role.AUDITOR})
"""The three separated duties: they authenticate with two factors (token + client
certificate issued by the deployment CA for that identity)."""


@dataclass(frozen=True)
class Grant:
    """An authorized call: who, which action the pack allowed, and how far it reaches."""

    identity: Identity
    action: str
    scope: Scope
    policy_version: str | None
    pending: Event | None = None
    """The ``authz.decision`` entry a ``records_allow`` route must record itself."""

    @property
    def own_only(self) -> bool:
        """Whether the route must show only what concerns the caller."""
        return self.scope is Scope.OWN


def domain_of(identity: Identity) -> str:
    """The Casbin domain a caller acts in: its industry, else the platform."""
    return identity.industry or "platform"


def authorize(
    runtime: Runtime,
    identity: Identity,
    access: Access,
    *,
    resource_id: str | None = None,
    second_factor: bool,
) -> Grant:
    """Ask the decision point whether ``identity`` may make this call.

    ``second_factor`` says whether the caller proved possession of its client
    certificate (or of the deployment itself, for the in-process local mode).

    Raises:
        AuthError: an administrative identity without its second factor.
        ForbiddenError: the active policy allows none of the route's actions
            (the message names the rules that decided).
    """
    if identity.role in ADMIN_ROLES and not second_factor:
        raise AuthError(
            f"{identity.name} is {identity.role}: administrators authenticate with their token "
            "and their client certificate (ibx identity create --cert-out; --client-cert)"
        )
    from policies import Subject

    subject = Subject(identity.name, identity.role.value, identity.industry)
    resource = f"{access.kind}:{resource_id or '*'}"
    context = {"domain": domain_of(identity)}
    first_denial = None
    for action, scope in access.actions:
        decision = runtime.policy.decide(subject, action, resource, context)
        if decision.allow:
            pending = None
            if access.write:
                event = _authz_event(identity, action, resource, decision.version, allowed=True)
                if access.records_allow:
                    pending = event
                else:
                    _record(runtime, event)
            return Grant(identity, action, scope, decision.version, pending)
        if first_denial is None:
            first_denial = (action, decision)
    assert first_denial is not None, "a public route needs no grant"
    action, decision = first_denial
    if access.write:
        denied = _authz_event(
            identity, action, resource, decision.version, allowed=False, reasons=decision.reasons
        )
        _record(runtime, denied)
    rules = "; ".join(decision.reasons)
    raise ForbiddenError(f"{identity.name} ({identity.role}) may not {action} {resource}: {rules}")


def _authz_event(
    identity: Identity,
    action: str,
    resource: str,
    version: str | None,
    *,
    allowed: bool,
    reasons: tuple[str, ...] = (),
) -> Event:
    entry = AuthzDecisionEntry(
        role=identity.role.value,
        action=action,
        resource=resource,
        effect="allow" if allowed else "deny",
        policy_version=version,
        reasons=reasons,
    )
    return Event(entry.TYPE, identity.name, entry.payload())


def _record(runtime: Runtime, event: Event) -> None:
    """Record the decision on the ledger, durably, before the route runs.

    The record joins the pipeline's group commit: concurrent write routes share
    one durable commit, and their threads wait on it instead of polling for
    SQLite's write lock (its busy handler sleeps up to 100 ms between tries).

    Raises:
        ledger.LedgerError: the record could not be made.
    """
    runtime.pipeline.group.run(lambda session: runtime.ledger.record(event, session=session))
