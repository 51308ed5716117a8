"""Repeated authentication failures from one address: slowed, then refused for a while.

The guard's arithmetic is checked with explicit times against a real ledger;
the lockout itself against a real ``ibx serve`` over TLS: 429 problem+json
with Retry-After, one ledger event per lockout (not per failure), and the
address let in again once the lockout is over.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from exchange.auth_lockout import AuthFailureGuard, AuthFailureLimits, AuthLockedOutError
from exchange.client import ExchangeClient
from exchange.error_table import ExitCode, RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.server import ExchangeUrl, running_exchange
from tests.zygote import ibx_argv

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LOCKOUT_EVENT = "identity.auth_lockout"


def _lockouts(runtime: Runtime) -> list[dict[str, object]]:
    size = runtime.ledger.size()
    found: list[dict[str, object]] = []
    for start in range(0, size, 1000):
        found += [
            dict(e.payload) for e in runtime.ledger.entries(start, 1000) if e.type == LOCKOUT_EVENT
        ]
    return found


def _guard(runtime: Runtime, **limits: object) -> AuthFailureGuard:
    return AuthFailureGuard(AuthFailureLimits(**limits), runtime.ledger)  # type: ignore[arg-type]


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_free_failures_then_growing_waits_then_a_lockout_recorded_once(runtime: Runtime) -> None:
    guard = _guard(
        runtime, max_failures=6, window=timedelta(seconds=60), lockout=timedelta(seconds=300)
    )
    for second in range(3):  # half of six cost nothing
        guard.check("198.51.100.7", now=_at(second))
        guard.failed("198.51.100.7", now=_at(second))
    guard.check("198.51.100.7", now=_at(3))
    guard.failed("198.51.100.7", now=_at(3))  # the 4th: wait 1 s
    with pytest.raises(AuthLockedOutError) as slowed:
        guard.check("198.51.100.7", now=_at(3.5))
    assert slowed.value.retry_after == 1
    guard.check("198.51.100.7", now=_at(4))
    guard.failed("198.51.100.7", now=_at(4))  # the 5th: wait 2 s
    with pytest.raises(AuthLockedOutError) as slowed:
        guard.check("198.51.100.7", now=_at(5))
    assert slowed.value.retry_after == 1 and "wait" in str(slowed.value)
    guard.check("198.51.100.7", now=_at(6))
    guard.check("203.0.113.9", now=_at(6))  # another address is not affected
    assert _lockouts(runtime) == []
    guard.failed("198.51.100.7", now=_at(6))  # the 6th within the window: locked out
    with pytest.raises(AuthLockedOutError) as locked:
        guard.check("198.51.100.7", now=_at(7))
    assert locked.value.retry_after == 299 and "refused until" in str(locked.value)
    events = _lockouts(runtime)
    assert len(events) == 1
    assert events[0]["source"] == "198.51.100.7" and events[0]["failures"] == 6
    guard.check("198.51.100.7", now=_at(306))  # over: let in, counting from zero
    guard.failed("198.51.100.7", now=_at(306))
    guard.check("198.51.100.7", now=_at(306))
    assert len(_lockouts(runtime)) == 1


def test_failures_outside_the_window_do_not_add_up(runtime: Runtime) -> None:
    guard = _guard(
        runtime, max_failures=4, window=timedelta(seconds=10), lockout=timedelta(seconds=60)
    )
    for second in (0, 20, 40, 60, 80, 100):  # one failure every 20 s, forever
        guard.check("198.51.100.8", now=_at(second))
        guard.failed("198.51.100.8", now=_at(second))
    guard.check("198.51.100.8", now=_at(101))
    assert _lockouts(runtime) == []


@pytest.mark.parametrize(
    "limits",
    [
        {"max_failures": 1},
        {"window": timedelta(0)},
        {"lockout": timedelta(seconds=-1)},
    ],
    ids=["one-failure", "no-window", "negative-lockout"],
)
def test_limits_that_cannot_hold_are_refused(limits: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        AuthFailureLimits(**limits)  # type: ignore[arg-type]


def test_the_local_mode_is_not_locked_out(tmp_path: Path) -> None:
    """The in-process client's caller holds the data dir: nothing to guess, nothing to slow."""
    runtime = Runtime(Settings(data_dir=initialised(tmp_path / "d"), auth_max_failures=2))
    try:
        for _ in range(6):
            with (
                ExchangeClient.local(runtime, token="ibx_wrong") as client,
                pytest.raises(RemoteRefusalError) as refused,
            ):
                client.get("/v1/me")
            assert refused.value.status == 401
        assert _lockouts(runtime) == []
    finally:
        runtime.close()


LOCKOUT_SECONDS = 6


@dataclass
class Served:
    base: ExchangeUrl
    runtime: Runtime
    token: str
    data: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = initialised(tmp_path_factory.mktemp("lockout") / "data")
    runtime = Runtime(Settings(data_dir=data))
    token = runtime.identities.create("factory-a", Role.ENTERPRISE, industry="lithium-battery")
    env = {
        "IBX_AUTH_MAX_FAILURES": "2",
        "IBX_AUTH_FAILURE_WINDOW_SECONDS": "60",
        "IBX_AUTH_LOCKOUT_SECONDS": str(LOCKOUT_SECONDS),
    }
    with running_exchange(data, env=env) as base:
        yield Served(base, runtime, token.token, data)
    runtime.close()


def _me(served: Served, token: str | None) -> httpx.Response:
    with served.base.client(token) as client:
        return client.get("/v1/me")


def test_a_locked_out_address_gets_429_until_the_lockout_ends(served: Served) -> None:
    for _ in range(5):  # no token at all is not a guess: never counted
        assert _me(served, None).status_code == 401
    assert _me(served, served.token).status_code == 200
    assert _me(served, "ibx_guess-1").status_code == 401
    last_failure = _me(served, "ibx_guess-2")  # the second within the window
    locked_at = time.monotonic()
    assert last_failure.status_code == 401
    refused = _me(served, served.token)  # the right token, from a locked-out address
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "exchange.auth_lockout.AuthLockedOutError"
    assert 1 <= int(refused.headers["Retry-After"]) <= LOCKOUT_SECONDS
    for n in range(5):  # more guesses while locked out: refused, and no more ledger events
        assert _me(served, f"ibx_guess-more-{n}").status_code == 429
    with served.base.client(served.token) as client:  # a forged address does not get out
        forged = client.get("/v1/me", headers={"X-Forwarded-For": "203.0.113.5"})
    assert forged.status_code == 429
    events = _lockouts(served.runtime)
    assert len(events) == 1 and events[0]["source"] == "127.0.0.1"
    cli = subprocess.run(
        [*ibx_argv(), "me", *served.base.cli_args()],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "IBX_TOKEN": served.token},
    )
    assert cli.returncode == ExitCode.ERROR
    assert "too many failed authentications" in cli.stderr
    time.sleep(max(0.0, LOCKOUT_SECONDS + 0.5 - (time.monotonic() - locked_at)))
    assert _me(served, served.token).status_code == 200  # recovered
    assert _me(served, "ibx_guess-3").status_code == 401  # counting from zero again
    assert len(_lockouts(served.runtime)) == 1
