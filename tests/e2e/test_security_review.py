"""Security review: hostile HTTP input against a real uvicorn gets a 4xx problem."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from exchange.app import MAX_BODY, create_app
from exchange.identities import Role
from exchange.settings import Settings
from tests.conftest import initialised

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    data = initialised(tmp_path_factory.mktemp("http") / "data")
    app = create_app(Settings(data_dir=data))
    token = app.state.runtime.identities.create(
        "ent-a", Role.ENTERPRISE, industry="lithium-battery"
    ).token  # the pack lets enterprises of an industry create edge tokens
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http, token
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _chunks(total: int) -> Iterator[bytes]:
    yield b'{"device": "d1", "x": "'
    for _ in range(total // 4096):
        yield b"a" * 4096
    yield b'"}'


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_bodies_are_refused_before_parsing(
    client: tuple[httpx.Client, str], declared: bool
) -> None:
    test_client, token = client
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body: bytes | Iterator[bytes] = (
        b"".join(_chunks(4 * MAX_BODY)) if declared else _chunks(4 * MAX_BODY)
    )
    response = test_client.post("/v1/edge/tokens", content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM


def test_bodies_within_the_limit_still_work(client: tuple[httpx.Client, str]) -> None:
    test_client, token = client
    headers = {"Authorization": f"Bearer {token}"}
    ok = test_client.post("/v1/edge/tokens", json={"device": "d1"}, headers=headers)
    assert ok.status_code == 201, ok.text
    bad = test_client.post("/v1/edge/tokens", json={"device": "d1", "x": 1}, headers=headers)
    assert bad.status_code == 400
    assert bad.headers["content-type"] == PROBLEM


HOSTILE = {
    "deep-json": b"[" * 100_000,
    "non-utf8": b"\xff\xfe\xfd",
    "empty": b"",
    "huge-number": b'{"device": "d1", "ttl_seconds": 1' + b"0" * 4000 + b"}",
    "wrong-types": b'{"device": ["d1"], "ttl_seconds": "soon"}',
}


@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_json_is_a_4xx_problem(client: tuple[httpx.Client, str], body: bytes) -> None:
    test_client, token = client
    response = test_client.post(
        "/v1/edge/tokens",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "Traceback" not in response.text
