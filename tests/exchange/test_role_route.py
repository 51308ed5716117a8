"""Every route × every role: the outcome is what the active policy pack says, and the
separation of the three duties holds whatever the pack says.

The routes are not listed here: the test walks :data:`exchange.access.ROUTES`
and the OpenAPI document (and checks that they and the app's routes are one
and the same set), so a route added anywhere is covered the moment it lands.
Each case calls the route through the in-process transport of the CLI's local
mode (which stands for an administrator's second factor) with a fresh identity
of the role, and compares the answer with the expectation:

* the pack's decisions for the route's actions, asked exactly as
  :func:`exchange.access.authorize` asks them; "allowed" means the answer is
  neither 401 nor the access check's 403, "denied" means a 403 problem whose
  detail names the action and every rule that refused it;
* :data:`SEPARATED_DUTIES`, written by hand from DESIGN.md (三权分立): a pack
  that lets the system administrator read consents or the audit ledger or
  change policy, the security officer read consents in full, or the auditor
  change policy fails here even if every route follows it faithfully.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from exchange.access import ROUTES, Access, domain_of
from exchange.app import create_app
from exchange.client import InProcessTransport
from exchange.identities import Identity, Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import bootstrap, register

PROBLEM = "application/problem+json"
INDUSTRY = "lithium-battery"
INDUSTRY_ROLES = frozenset({Role.ENTERPRISE, Role.SUBBRAIN, Role.EDGE_DEVICE, Role.COMPUTE_NODE})

SEPARATED_DUTIES: tuple[tuple[Role, str, bool], ...] = (
    # the system administrator runs the service: no consents, no audit, no policy
    (Role.SYSADMIN, "consent_read_all", False),
    (Role.SYSADMIN, "consent_read_own", False),
    (Role.SYSADMIN, "ledger_read", False),
    (Role.SYSADMIN, "policy_propose", False),
    (Role.SYSADMIN, "policy_approve", False),
    (Role.SYSADMIN, "policy_activate", False),
    # the security officer writes policy and revokes certificates; reads no consent in full
    (Role.SECURITY_OFFICER, "consent_read_all", False),
    (Role.SECURITY_OFFICER, "policy_propose", True),
    (Role.SECURITY_OFFICER, "policy_approve", True),
    (Role.SECURITY_OFFICER, "policy_activate", True),
    (Role.SECURITY_OFFICER, "cert_revoke", True),
    # the auditor reads everything and changes no policy
    (Role.AUDITOR, "consent_read_all", True),
    (Role.AUDITOR, "ledger_read", True),
    (Role.AUDITOR, "policy_propose", False),
    (Role.AUDITOR, "policy_approve", False),
    (Role.AUDITOR, "policy_activate", False),
)
"""(role, action, allowed): what the pack must decide, written by hand (DESIGN.md)."""

_MUST = {(role, action): allowed for role, action, allowed in SEPARATED_DUTIES}

_KIND = {action: access.kind for access in ROUTES.values() for action, _scope in access.actions}
"""The resource kind each action is asked about (as the routes ask)."""

PRIVATE_RULES = sorted(rule for rule, access in ROUTES.items() if not access.public)
PUBLIC_RULES = sorted(rule for rule, access in ROUTES.items() if access.public)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    data = initialised(tmp_path_factory.mktemp("role-route") / "data")
    rt = Runtime(Settings(data_dir=data))
    bootstrap(rt)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def app(runtime: Runtime) -> Any:
    return create_app(runtime=runtime)


@pytest.fixture(scope="module")
def http(app: Any) -> Iterator[httpx.Client]:
    with httpx.Client(transport=InProcessTransport(app), base_url="http://ibx.local") as client:
        yield client


@pytest.fixture(scope="module")
def openapi(http: httpx.Client) -> dict[str, Any]:
    document: dict[str, Any] = http.get("/openapi.json").json()
    return document


_serial = itertools.count()


def _identity(runtime: Runtime, role: Role) -> tuple[Identity, str]:
    industry = INDUSTRY if role in INDUSTRY_ROLES else None
    issued = register(runtime, f"rr-{role.value.replace('_', '-')}-{next(_serial)}", role, industry)
    return issued.identity, issued.token


def _app_rules(app: Any) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves (HEAD aside: it follows GET)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept lazily
        routes: list[Any] = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    rules = set()
    for route in routes:
        path = getattr(route, "path_format", None)
        if path is not None and path.startswith("/console"):
            continue  # the web console's pages: one rule by prefix (test_console_routes...)
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD" and path is not None:
                rules.add((method, path))
    return rules


def _sample(schema: dict[str, Any]) -> str:
    """A plain value of a parameter's schema (the access check runs before validation)."""
    if "enum" in schema:
        return str(schema["enum"][0])
    kind = schema.get("type")
    if kind is None and "anyOf" in schema:
        kind = next((s.get("type") for s in schema["anyOf"] if s.get("type") != "null"), None)
    if kind == "integer":
        return str(max(int(schema.get("minimum", 1)), 1))
    if kind == "boolean":
        return "false"
    return "x1"


def _request(
    openapi: dict[str, Any], method: str, template: str
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A request for the rule: its path with every parameter filled, the required query
    parameters, and a body (``{}`` for JSON, empty otherwise)."""
    operation = openapi["paths"].get(template, {}).get(method.lower(), {})
    params = {p["name"]: p for p in operation.get("parameters", [])}
    path = re.sub(
        r"\{(\w+)\}",
        lambda m: (
            _sample(params.get(m.group(1), {}).get("schema", {}))
            if m.group(1) != "rest"
            else "cacerts"
        ),
        template,
    )
    query = {
        name: _sample(p.get("schema", {}))
        for name, p in params.items()
        if p.get("in") == "query" and p.get("required")
    }
    body: dict[str, Any] = {}
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body = {"json": {}}
    elif content:
        body = {"content": b"", "headers": {"content-type": next(iter(content))}}
    elif method == "POST":
        body = {"content": b""}
    return path, query, body


def _resource_id(template: str, path: str, access: Access) -> str | None:
    if access.resource_param is None:
        return None
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    found = re.fullmatch(pattern, path)
    assert found, (template, path)
    return found.group(access.resource_param)


def _expectation(
    runtime: Runtime, identity: Identity, access: Access, resource_id: str | None
) -> tuple[bool, str, tuple[str, ...]]:
    """(allowed, the first action, the rules that refused it) from the pack, after the
    separated duties are checked against the pack's decisions."""
    from policies import Subject

    subject = Subject(identity.name, identity.role.value, identity.industry)
    resource = f"{access.kind}:{resource_id or '*'}"
    context = {"domain": domain_of(identity)}
    decisions = [
        (action, runtime.policy.decide(subject, action, resource, context))
        for action, _scope in access.actions
    ]
    for action, decision in decisions:
        must = _MUST.get((identity.role, action))
        assert must is None or decision.allow is must, (
            f"the pack lets {identity.role} {'not ' if must else ''}{action}: "
            f"separation of duties broken ({decision.reasons})"
        )
    first_action, first = decisions[0]
    return any(d.allow for _a, d in decisions), first_action, tuple(first.reasons)


def test_the_access_table_and_the_app_have_exactly_the_same_routes(app: Any) -> None:
    served = _app_rules(app)
    assert served - set(ROUTES) == set(), "routes without an access rule"
    assert set(ROUTES) - served == set(), "access rules without a route"


def test_every_openapi_operation_is_a_rule_and_openapi_is_public(
    openapi: dict[str, Any],
) -> None:
    operations = {
        (method.upper(), path)
        for path, item in openapi["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert operations
    assert operations <= set(ROUTES)
    assert ROUTES[("GET", "/openapi.json")].public


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    SEPARATED_DUTIES,
    ids=[f"{r.value}-{a}-{'allow' if ok else 'deny'}" for r, a, ok in SEPARATED_DUTIES],
)
def test_the_pack_keeps_the_three_duties_apart(
    runtime: Runtime, role: Role, action: str, allowed: bool
) -> None:
    from policies import Subject

    identity, _token = _identity(runtime, role)
    subject = Subject(identity.name, role.value, identity.industry)
    resource = f"{_KIND[action]}:*"
    decision = runtime.policy.decide(subject, action, resource, {"domain": domain_of(identity)})
    assert decision.allow is allowed, decision.reasons


@pytest.mark.parametrize(
    ("role", "method", "template"),
    [(role, method, path) for (method, path) in PRIVATE_RULES for role in Role],
    ids=[f"{role.value}-{method}-{path}" for (method, path) in PRIVATE_RULES for role in Role],
)
def test_each_role_gets_what_the_pack_decides_on_each_route(
    runtime: Runtime,
    http: httpx.Client,
    openapi: dict[str, Any],
    role: Role,
    method: str,
    template: str,
) -> None:
    access = ROUTES[(method, template)]
    identity, token = _identity(runtime, role)
    path, query, body = _request(openapi, method, template)
    resource_id = _resource_id(template, path, access)
    allowed, action, reasons = _expectation(runtime, identity, access, resource_id)
    headers = {"Authorization": f"Bearer {token}", **body.pop("headers", {})}
    answer = http.request(method, path, params=query, headers=headers, **body)
    denial = f"{identity.name} ({role.value}) may not "
    detail = ""
    if answer.headers.get("content-type") == PROBLEM:
        detail = str(answer.json().get("detail", ""))
    if allowed:
        assert answer.status_code != 401, detail
        assert not (answer.status_code == 403 and detail.startswith(denial)), detail
        assert answer.status_code != 500, answer.text
    else:
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"] == PROBLEM
        resource = f"{access.kind}:{resource_id or '*'}"
        assert detail.startswith(f"{denial}{action} {resource}: "), detail
        for reason in reasons:
            assert reason in detail, (reason, detail)


@pytest.mark.parametrize(
    ("method", "template"), PRIVATE_RULES, ids=[f"{m}-{p}" for m, p in PRIVATE_RULES]
)
def test_without_a_token_every_private_route_is_a_401_problem(
    http: httpx.Client, openapi: dict[str, Any], method: str, template: str
) -> None:
    path, query, body = _request(openapi, method, template)
    answer = http.request(method, path, params=query, headers=body.pop("headers", {}), **body)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("method", "template"), PUBLIC_RULES, ids=[f"{m}-{p}" for m, p in PUBLIC_RULES]
)
def test_public_routes_answer_without_a_token(
    http: httpx.Client, openapi: dict[str, Any], method: str, template: str
) -> None:
    path, query, body = _request(openapi, method, template)
    answer = http.request(method, path, params=query, headers=body.pop("headers", {}), **body)
    assert answer.status_code not in (401, 403), answer.text
    assert answer.status_code != 500, answer.text
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == PROBLEM


def test_console_pages_get_the_console_rule_and_never_an_api_one(app: Any) -> None:
    """Every page of the web console is under /console and gets the console's rule (its
    pages reach data only through this API with the session's token); no API route is
    under /console."""
    from starlette.requests import Request

    from exchange.access import CONSOLE
    from exchange.auth import route_access

    assert not any(path.startswith("/console") for _, path in ROUTES)
    for path in ("/console", "/console/officer", "/console/enterprise/consents"):
        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "app": app}
        scope["route"] = type("R", (), {"path_format": "/consents"})()  # a nested router's tail
        assert route_access(Request(scope)) is CONSOLE
