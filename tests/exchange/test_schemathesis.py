"""No client input yields a 5xx, and every error is a problem: schemathesis over every
operation of the OpenAPI document, with a token of every role.

The app runs in process (ASGI), marked as the CLI's local mode so that the
administrators' second factor is present and their routes are reached past
authentication. For every operation, :data:`EXAMPLES` valid and as many
invalid (schema-violating) inputs are drawn once — they do not depend on the
caller — and sent as each role, so the file stays within its time budget. A
write route gets a fresh identity for every input: a valid token rotation
would otherwise leave the role's later inputs with a dead token.

schemathesis is imported inside the fixtures: it is a pytest plugin, so
pytest rewrites the asserts of its ~340 modules on import, which only the
sessions that run this file should pay for.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from core.clock import utcnow
from exchange.access import ROUTES
from exchange.app import create_app
from exchange.auth import LOCAL_EXTENSION
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import bootstrap, register

if TYPE_CHECKING:
    from schemathesis import APIOperation
    from schemathesis import Case as AnyCase
    from schemathesis.specs.openapi.schemas import OpenApiSchema

    Case = AnyCase[Any]

EXAMPLES = 2
"""Valid inputs per operation (and as many invalid ones), each sent as every role."""
PROBLEM = "application/problem+json"
INDUSTRY = "lithium-battery"
INDUSTRY_ROLES = frozenset({Role.ENTERPRISE, Role.SUBBRAIN, Role.EDGE_DEVICE, Role.COMPUTE_NODE})


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    data = initialised(tmp_path_factory.mktemp("schemathesis") / "data")
    rt = Runtime(Settings(data_dir=data))
    bootstrap(rt)
    rt.edge_pki.init(actor="sysadmin", now=utcnow())  # the PKI routes answer, not 503
    yield rt
    rt.close()


class _AsLocal:
    """The app as the CLI's in-process transport calls it (the ``ibx.local`` scope mark)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            extensions = {**(scope.get("extensions") or {}), LOCAL_EXTENSION: True}
            scope = {**scope, "extensions": extensions}
        await self._app(scope, receive, send)


@pytest.fixture(scope="module")
def api(runtime: Runtime) -> OpenApiSchema:
    import schemathesis

    return schemathesis.openapi.from_asgi("/openapi.json", _AsLocal(create_app(runtime=runtime)))


@pytest.fixture(scope="module")
def cases(api: OpenApiSchema) -> list[Case]:
    """Up to :data:`EXAMPLES` valid and as many invalid inputs for every operation."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    drawn: list[Case] = []
    for operation in _operations(api):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
            )
            def collect(case: Case) -> None:
                drawn.append(case)

            try:
                collect()
            except Unsatisfiable:  # nothing of this operation can be made invalid
                assert mode is GenerationMode.NEGATIVE, operation.label
    return drawn


def _operations(api: OpenApiSchema) -> list[APIOperation[Any, Any, Any, Any]]:
    """Every operation of the document (one that does not load is a failure)."""
    from schemathesis.core.result import Ok

    operations = []
    for result in api.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    return operations


_serial = itertools.count()


class Tokens:
    """A token per role, and a fresh one on demand (for routes that write)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._shared: dict[Role, str] = {}

    def fresh(self, role: Role) -> str:
        industry = INDUSTRY if role in INDUSTRY_ROLES else None
        name = f"st-{role.value.replace('_', '-')}-{next(_serial)}"
        return register(self._runtime, name, role, industry).token

    def shared(self, role: Role) -> str:
        if role not in self._shared:
            self._shared[role] = self.fresh(role)
        return self._shared[role]


@pytest.fixture(scope="module")
def tokens(runtime: Runtime) -> Tokens:
    return Tokens(runtime)


def _failure(case: Case, role: Role, tokens: Tokens) -> str | None:
    """What is wrong with the answer to ``case`` sent as ``role``, if anything."""
    access = ROUTES[(case.method.upper(), case.path)]
    if case.path == "/v1/agent/tasks" and isinstance((case.query or {}).get("wait"), int | float):
        case.query = {**(case.query or {}), "wait": 0}  # a valid long poll would just wait
    token = tokens.fresh(role) if access.write else tokens.shared(role)
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    where = f"{case.method} {case.formatted_path} as {role.value}: {response.status_code}"
    if response.status_code >= 500:
        return f"{where} {response.text[:300]}"
    if response.status_code >= 400:
        content_type = (response.headers.get("content-type") or [""])[0]
        if content_type != PROBLEM:
            return f"{where} answered {content_type!r}, not a problem"
        body = response.json()
        if body.get("status") != response.status_code or not body.get("title"):
            return f"{where} problem without its status or title: {body}"
    return None


def test_every_operation_of_the_document_is_exercised(
    api: OpenApiSchema, cases: list[Case]
) -> None:
    operations = {operation.label for operation in _operations(api)}
    assert operations
    assert {f"{case.method} {case.path}" for case in cases} == operations


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_no_input_yields_a_server_error_and_every_error_is_a_problem(
    cases: list[Case], role: Role, tokens: Tokens
) -> None:
    failures = [f for case in cases if (f := _failure(case, role, tokens)) is not None]
    assert not failures, "\n".join(failures)
