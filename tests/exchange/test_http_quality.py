"""HTTP quality: request ids, access logs without secrets, problem+json for every error,
``Idempotency-Key`` replays, and the completed OpenAPI document."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, select
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from core.clock import utcnow
from exchange.access import ROUTES
from exchange.access_log import RequestContext
from exchange.app import create_app
from exchange.auth import enforce_access
from exchange.client import InProcessTransport
from exchange.idempotency import (
    PENDING_TIMEOUT,
    TTL,
    ClaimOutcome,
    IdempotencyStore,
    _IdempotencyRow,
    entry_id,
)
from exchange.identities import Role
from exchange.openapi import PROBLEM_STATUSES
from exchange.request_id import install_log_context
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import bootstrap, register
from tests.server import running_exchange

PROBLEM = "application/problem+json"
INDUSTRY = "lithium-battery"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    data = initialised(tmp_path_factory.mktemp("http-quality") / "data")
    rt = Runtime(Settings(data_dir=data))
    bootstrap(rt)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[httpx.Client]:
    with httpx.Client(
        transport=InProcessTransport(create_app(runtime=runtime)), base_url="http://ibx.local"
    ) as http:
        yield http


_names = iter(range(1_000_000))


def _token(runtime: Runtime, role: Role = Role.ENTERPRISE) -> tuple[str, str]:
    """A new identity of ``role``: its name and bearer token."""
    name = f"q-{role.value}-{next(_names)}"
    industry = INDUSTRY if role in (Role.ENTERPRISE, Role.SUBBRAIN) else None
    issued = register(runtime, name, role, industry)
    return name, issued.token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _is_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    return body  # type: ignore[no-any-return]


# --- request ids -------------------------------------------------------------------------


def test_every_answer_carries_a_new_request_id(client: httpx.Client) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/nowhere").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{24}", first)
    assert re.fullmatch(r"[0-9a-f]{24}", second)
    assert first != second


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("client-7f3a.42_x", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("two words", False),
        ("100%", False),
        ("-leading-dash", False),
        ("", False),
    ],
    ids=["well-formed", "longest", "too-long", "space", "percent", "leading-dash", "empty"],
)
def test_a_well_formed_incoming_request_id_is_kept_else_replaced(
    client: httpx.Client, sent: str, kept: bool
) -> None:
    got = client.get("/healthz", headers={"X-Request-ID": sent}).headers["x-request-id"]
    if kept:
        assert got == sent
    else:
        assert got != sent
        assert re.fullmatch(r"[0-9a-f]{24}", got)


def test_every_log_line_of_a_request_carries_its_id(
    client: httpx.Client, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    name, token = _token(runtime)
    with caplog.at_level(logging.DEBUG):
        answer = client.get("/v1/me", headers={**_bearer(token), "X-Request-ID": "trace-me-1"})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "trace-me-1"
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore", "asyncio"))]
    assert server, "the request logged nothing"
    for record in server:
        assert record.request_id == "trace-me-1", record.getMessage()  # type: ignore[attr-defined]
        assert record.getMessage().startswith("[trace-me-1] ")
    access = [r.getMessage() for r in server if r.name == "exchange.access_log"]
    assert access == [f"[trace-me-1] GET /v1/me 200 {_ms(access[0])}ms caller={name}"]


def _ms(line: str) -> str:
    found = re.search(r" (\d+\.\d)ms ", line)
    assert found, line
    return found.group(1)


def test_the_access_log_names_the_template_never_the_path_query_or_body(
    client: httpx.Client, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    _name, token = _token(runtime)
    with caplog.at_level(logging.INFO, logger="exchange.access_log"):
        client.get(
            "/v1/datasets/secret-dataset-name",
            params={"q": "query-secret"},
            headers=_bearer(token),
        )
        client.post("/v1/datasets", json={"dataset_id": "body-secret"}, headers=_bearer(token))
        client.get("/v1/no-such-route-secret")
    lines = [r.getMessage() for r in caplog.records if r.name == "exchange.access_log"]
    assert len(lines) == 3
    assert " GET /v1/datasets/{dataset_id} " in lines[0]
    assert " POST /v1/datasets " in lines[1]
    assert " GET <unmatched> 404 " in lines[2]
    for secret in ("secret-dataset-name", "query-secret", "body-secret", "route-secret"):
        assert secret not in caplog.text


def test_a_token_in_the_authorization_header_never_reaches_the_logs(
    client: httpx.Client, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG on every logger (SQL included): accepted, refused and unknown tokens."""
    _name, token = _token(runtime)
    _admin, admin_token = _token(runtime, Role.SYSADMIN)
    forged = "ibx_" + "A" * 43
    with caplog.at_level(logging.DEBUG):
        for secret in (token, admin_token, forged):
            client.get("/v1/me", headers=_bearer(secret))
            client.get("/v1/consents", headers=_bearer(secret))
            client.post("/v1/datasets", content=b"{", headers=_bearer(secret))
            client.get("/nowhere", headers=_bearer(secret))
    assert caplog.records
    for secret in (token, admin_token, forged):
        assert secret not in caplog.text
        assert secret.removeprefix("ibx_") not in caplog.text


# --- problem+json for every error --------------------------------------------------------


def test_not_found_method_not_allowed_and_invalid_input_are_problems(
    client: httpx.Client, runtime: Runtime
) -> None:
    _is_problem(client.get("/v1/nothing-here"), 404)
    _is_problem(client.delete("/v1/me"), 405)
    _name, token = _token(runtime)
    _is_problem(client.post("/v1/datasets", content=b"{not json", headers=_bearer(token)), 400)
    body = _is_problem(client.post("/v1/datasets", json={"x": 1}, headers=_bearer(token)), 400)
    assert body["errors"]
    _is_problem(client.post("/v1/datasets", content=b"x" * (65 * 1024)), 413)


def test_only_an_authenticated_caller_may_send_a_contribution_sized_body(
    client: httpx.Client, runtime: Runtime
) -> None:
    """The contribution route takes large bodies (HE ciphertexts), but not from just anyone:
    without a live token the server reads no more than the default 64 KiB."""
    path = "/v1/agent/jobs/job_" + "0" * 32 + "/contributions"
    large = b"x" * (1024 * 1024)
    _is_problem(client.post(path, content=large), 413)
    forged = {"Authorization": "Bearer ibx_" + "A" * 43}
    _is_problem(client.post(path, content=large, headers=forged), 413)
    _name, token = _token(runtime)
    answer = client.post(
        path, content=large, headers={**_bearer(token), "Content-Type": "application/json"}
    )
    assert answer.status_code != 413, answer.text  # read, then refused on its merits


def test_missing_and_unknown_tokens_are_401_problems(client: httpx.Client) -> None:
    missing = client.get("/v1/me")
    _is_problem(missing, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    _is_problem(client.get("/v1/me", headers=_bearer("ibx_" + "B" * 43)), 401)


def _boom(_request: Request) -> PlainTextResponse:
    raise RuntimeError("password=hunter2 leaked into an exception message")


def test_an_unmapped_exception_is_a_500_problem_without_detail(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the whole app: a route that fails unexpectedly (the access check is lifted
    for this one test route, which has no rule)."""
    app = create_app(runtime=runtime)
    app.add_api_route("/v1/test-boom", _boom, methods=["GET"])
    app.dependency_overrides[enforce_access] = lambda: None
    with (
        httpx.Client(transport=InProcessTransport(app), base_url="http://ibx.local") as http,
        caplog.at_level(logging.DEBUG),
    ):
        answer = http.get("/v1/test-boom", headers={"X-Request-ID": "boom-1"})
    body = _is_problem(answer, 500)
    assert body == {"type": "about:blank", "title": "internal error", "status": 500}
    assert answer.headers["x-request-id"] == "boom-1"
    assert "hunter2" not in answer.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert message.startswith("[boom-1] unexpected error: RuntimeError at ")
    assert "_boom" in message
    assert "hunter2" not in caplog.text
    assert errors[0].exc_info is None  # no traceback text in the log either


async def _raising_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("token=ibx_not-a-real-one in an exception message")


def test_the_request_context_answers_for_an_app_that_raises_before_answering(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_context()
    app = RequestContext(_raising_app)
    with (
        httpx.Client(transport=InProcessTransport(app), base_url="http://ibx.local") as http,
        caplog.at_level(logging.INFO),
    ):
        answer = http.get("/boom")
    body = _is_problem(answer, 500)
    assert "detail" not in body
    rid = answer.headers["x-request-id"]
    lines = [r.getMessage() for r in caplog.records if r.name == "exchange.access_log"]
    assert lines[0].startswith(f"[{rid}] unexpected error: RuntimeError at ")
    assert lines[1].startswith(f"[{rid}] GET <unmatched> 500 ")
    assert "ibx_not-a-real-one" not in caplog.text


# --- Idempotency-Key ---------------------------------------------------------------------


def test_a_retried_token_rotation_replays_the_one_new_token(
    client: httpx.Client, runtime: Runtime
) -> None:
    _name, token = _token(runtime)
    headers = {**_bearer(token), "Idempotency-Key": "rotate-0001"}
    first = client.post("/v1/me/token", headers=headers)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    retry = client.post("/v1/me/token", headers=headers)
    assert retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    new = first.json()["token"]
    # rotated once: the token of the first answer works (a second rotation would void it)
    assert client.get("/v1/me", headers=_bearer(new)).status_code == 200
    assert client.get("/v1/me", headers=_bearer(token)).status_code == 401
    # the stored answer holds no readable secret
    with runtime.db.read() as session:
        bodies = [row.body or b"" for row in session.execute(select(_IdempotencyRow)).scalars()]
    assert bodies
    assert not any(new.encode() in body for body in bodies)
    assert not any(token.encode() in body for body in bodies)


def test_an_answer_is_stored_before_the_client_sees_it(runtime: Runtime) -> None:
    """A client that retries the moment it has an answer finds it stored (a replay),
    never "in progress": the middleware stores the answer before sending its last byte."""
    import asyncio

    _name, token = _token(runtime)
    authorization = f"Bearer {token}".encode()
    store = IdempotencyStore(runtime.db, runtime.master_key)
    entry = entry_id(authorization, "rotate-race-1", "POST", "/v1/me/token")
    seen_when_sent: list[ClaimOutcome | None] = []
    app = create_app(runtime=runtime)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/me/token",
        "raw_path": b"/v1/me/token",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"ibx.local"),
            (b"authorization", authorization),
            (b"idempotency-key", b"rotate-race-1"),
            (b"content-length", b"0"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("ibx.local", 80),
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            found = store.find(entry, hashlib.sha256(b"").digest())
            seen_when_sent.append(None if found is None else found.outcome)

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert seen_when_sent == [ClaimOutcome.REPLAY]


def test_the_same_key_with_another_body_is_a_422_problem(
    client: httpx.Client, runtime: Runtime
) -> None:
    name, token = _token(runtime)
    headers = {**_bearer(token), "Idempotency-Key": "dataset-0001"}
    body = {"dataset_id": f"{name}.energy", "fields": ["energy_kwh"]}
    first = client.post("/v1/datasets", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/v1/datasets", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    other = client.post("/v1/datasets", json={**body, "fields": ["output_units"]}, headers=headers)
    assert "Idempotency-Key" in str(_is_problem(other, 422)["detail"])
    # without the key, registering the same dataset again is the conflict it always was
    assert client.post("/v1/datasets", json=body, headers=_bearer(token)).status_code == 409


def test_keys_are_per_caller_and_a_failed_request_does_not_hold_its_key(
    client: httpx.Client, runtime: Runtime
) -> None:
    name_a, token_a = _token(runtime)
    name_b, token_b = _token(runtime)
    key = {"Idempotency-Key": "shared-key"}
    bad = client.post("/v1/datasets", json={"fields": []}, headers={**_bearer(token_a), **key})
    _is_problem(bad, 400)  # an error acted on nothing: not kept
    good = {"dataset_id": f"{name_a}.x", "fields": ["energy_kwh"]}
    made = client.post("/v1/datasets", json=good, headers={**_bearer(token_a), **key})
    assert made.status_code == 201, made.text
    assert "idempotent-replayed" not in made.headers
    other = {"dataset_id": f"{name_b}.x", "fields": ["energy_kwh"]}
    theirs = client.post("/v1/datasets", json=other, headers={**_bearer(token_b), **key})
    assert theirs.status_code == 201, theirs.text
    assert "idempotent-replayed" not in theirs.headers


def test_a_caller_who_is_nobody_writes_no_key(client: httpx.Client, runtime: Runtime) -> None:
    """Unknown tokens meet the 401 without a write to the key table (watched on the engine)."""
    writes: list[str] = []

    def watch(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "exchange_idempotency" in statement and not statement.lstrip().startswith("SELECT"):
            writes.append(statement.split(None, 1)[0])

    event.listen(runtime.db.engine, "before_cursor_execute", watch)
    try:
        for token in ("ibx_" + "D" * 43, "not-even-a-token"):
            headers = {**_bearer(token), "Idempotency-Key": f"nobody-{token[:8]}"}
            _is_problem(client.post("/v1/me/token", headers=headers), 401)
        assert writes == []
        _name, real = _token(runtime)  # the watch sees the writes of a real caller
        headers = {**_bearer(real), "Idempotency-Key": "somebody-1"}
        assert client.post("/v1/me/token", headers=headers).status_code == 200
        assert writes
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", watch)


@pytest.mark.parametrize(
    "key",
    [b"", b"k" * 256, b"has space", b"tab\there", "ü-non-ascii".encode()],
    ids=["empty", "too-long", "space", "tab", "non-ascii"],
)
def test_a_malformed_key_is_a_400_problem(
    client: httpx.Client, runtime: Runtime, key: bytes
) -> None:
    _name, token = _token(runtime)
    headers = {b"Idempotency-Key": key, b"Authorization": f"Bearer {token}".encode()}
    answer = client.post("/v1/me/token", headers=headers)
    _is_problem(answer, 400)
    assert client.get("/v1/me", headers=_bearer(token)).status_code == 200  # not rotated


def test_the_key_is_ignored_where_nothing_is_written(
    client: httpx.Client, runtime: Runtime
) -> None:
    _name, token = _token(runtime)
    headers = {**_bearer(token), "Idempotency-Key": "read-0001"}
    first = client.post("/v1/consents/check", json={}, headers=headers)
    second = client.post("/v1/consents/check", json={}, headers=headers)
    assert "idempotent-replayed" not in second.headers
    assert first.status_code == second.status_code


def test_the_store_expires_answers_and_frees_abandoned_claims(runtime: Runtime) -> None:
    store = IdempotencyStore(runtime.db, runtime.master_key)
    now = utcnow()
    entry, other = b"\x01" * 32, b"\x02" * 32
    assert store.claim(entry, b"h" * 32, now=now).outcome is ClaimOutcome.ACT
    assert store.claim(entry, b"h" * 32, now=now).outcome is ClaimOutcome.IN_PROGRESS
    store.complete(entry, 201, "application/json", b'{"ok":true}')
    replay = store.claim(entry, b"h" * 32, now=now + timedelta(hours=1))
    assert (replay.outcome, replay.status, replay.body) == (
        ClaimOutcome.REPLAY,
        201,
        b'{"ok":true}',
    )
    assert "ok" not in repr(replay)
    assert store.claim(entry, b"x" * 32, now=now).outcome is ClaimOutcome.MISMATCH
    later = now + TTL + timedelta(seconds=1)
    assert store.claim(entry, b"x" * 32, now=later).outcome is ClaimOutcome.ACT
    assert store.claim(other, b"h" * 32, now=now).outcome is ClaimOutcome.ACT
    abandoned = now + PENDING_TIMEOUT + timedelta(seconds=1)
    assert store.claim(other, b"h" * 32, now=abandoned).outcome is ClaimOutcome.ACT
    store.release(other)
    assert store.claim(other, b"y" * 32, now=abandoned).outcome is ClaimOutcome.ACT


# --- the OpenAPI document ----------------------------------------------------------------


def test_openapi_is_public_and_every_operation_documents_its_problems(
    client: httpx.Client,
) -> None:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert document["components"]["schemas"]["Problem"]["properties"]["status"]
    assert "HTTPValidationError" not in json.dumps(document)
    operations = [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    assert operations
    for method, path, operation in operations:
        access = ROUTES[(method, path)]
        expected = {s for s in PROBLEM_STATUSES if not (access.public and s in (401, 403))}
        responses = operation["responses"]
        for status in expected:
            content = responses[str(status)]["content"][PROBLEM]
            assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, (path, status)
        assert ("security" in operation) is not access.public, (method, path)
        names = {p["name"] for p in operation.get("parameters", [])}
        assert ("Idempotency-Key" in names) is (method == "POST" and access.write), (method, path)


def test_every_ref_of_the_openapi_document_resolves(client: httpx.Client) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    # every $ref resolves inside the document
    refs = set(re.findall(r'"\$ref": "#/([^"]+)"', json.dumps(document)))
    for ref in refs:
        node: object = document
        for part in ref.split("/"):
            assert isinstance(node, dict) and part in node, ref
            node = node[part]
    jsonschema.Draft202012Validator.check_schema(document["components"]["schemas"]["Problem"])


# --- a real ibx serve ------------------------------------------------------------------


def test_a_real_server_logs_one_access_line_per_request_without_secrets(
    tmp_path: Path,
) -> None:
    """``ibx serve`` over TLS: the answer carries the id, the server's stderr has one
    access line with it, and neither the token nor the query string reaches the log."""
    data = initialised(tmp_path / "data")
    rt = Runtime(Settings(data_dir=data))
    try:
        _name, token = _token(rt, Role.SUBBRAIN)
    finally:
        rt.close()
    with running_exchange(data) as base, base.client(token) as http:
        answer = http.get(
            "/v1/datasets",
            params={"q": "query-secret-7"},
            headers={"X-Request-ID": "e2e-trace-1"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == "e2e-trace-1"
        missing = http.get("/v1/nowhere", headers={"Authorization": "Bearer ibx_" + "C" * 43})
        _is_problem(missing, 404)
        deadline = time.monotonic() + 10  # a line is written once its answer is sent
        while " GET <unmatched> 404 " not in (log := base.log()) and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [line for line in log.splitlines() if "exchange.access_log" in line]
    assert any("[e2e-trace-1] GET /v1/datasets 200 " in line for line in lines), log
    assert any(" GET <unmatched> 404 " in line for line in lines), log
    for secret in (token, token.removeprefix("ibx_"), "query-secret-7", "C" * 43):
        assert secret not in log
