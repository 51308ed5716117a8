"""The console's session store: the token at rest opens only with the browser's cookie."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from core.clock import utcnow
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    made = Runtime(Settings(data_dir=initialised(tmp_path / "data")))
    yield made
    made.close()


def test_a_stored_token_needs_the_cookie_not_just_the_database_and_master_key(
    runtime: Runtime,
) -> None:
    issued = runtime.identities.create("acme", Role.ENTERPRISE, industry="lithium-battery")
    store = runtime.console_sessions
    session = store.open(issued.token, certificate=None, source="127.0.0.1")
    with runtime.db.read() as s:
        id_hash, blob = s.execute(
            text("SELECT id_hash, token FROM exchange_console_sessions")
        ).one()
    assert issued.token.encode() not in blob
    inner = runtime.master_key.decrypt(blob, aad=b"ibx/console/session-token/v1" + id_hash)
    assert issued.token.encode() not in inner  # still sealed under the session id's key
    resumed = store.resume(session.session_id, certificate=None)
    assert resumed is not None and resumed.token == issued.token
    assert store.resume("another-cookie", certificate=None) is None


def test_an_idle_session_ends_and_its_row_goes_at_the_next_sign_in(runtime: Runtime) -> None:
    issued = runtime.identities.create("acme", Role.ENTERPRISE, industry="lithium-battery")
    store = runtime.console_sessions
    old = store.open(issued.token, certificate=None, source="127.0.0.1")
    later = utcnow() + store.idle + timedelta(seconds=1)
    store.open(issued.token, certificate=None, source="127.0.0.1", now=later)
    with runtime.db.read() as s:
        rows = s.execute(text("SELECT count(*) FROM exchange_console_sessions")).scalar_one()
    assert rows == 1
    assert store.resume(old.session_id, certificate=None) is None
