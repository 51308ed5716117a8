"""Fixtures for privacy compute: a real runtime's database, master key and ledger."""

from __future__ import annotations

import pytest

from exchange.runtime import Runtime
from mpc import KeyCustodian, ReleaseGuard


@pytest.fixture
def guard(runtime: Runtime) -> ReleaseGuard:
    """The release guard on a migrated SQLite database."""
    return runtime.release_guard


@pytest.fixture
def custodian(runtime: Runtime) -> KeyCustodian:
    """The key custodian, recording on the runtime's real SQL ledger."""
    return runtime.key_custodian
