"""Shared fixtures: the baseline pack, compiled once, and request builders."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.canonical import JsonValue
from policies import BASELINE_PACK, CompiledPolicy, DecisionRequest, PolicySource, Subject

AT = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LI = "lithium-battery"
CORE_COMPUTE: dict[str, JsonValue] = {
    "domain": LI,
    "classification": "core",
    "purpose": "risk_warning",
    "engine": "mpc",
    "operation": "mean",
    "cohort": 6,
}


def make_request(
    role: str,
    action: str,
    context: Mapping[str, JsonValue],
    *,
    name: str = "requester-1",
    industry: str | None = LI,
    resource: str = "dataset:cell-energy",
    at: datetime = AT,
) -> DecisionRequest:
    """A request by ``name`` holding ``role``."""
    return DecisionRequest(Subject(name, role, industry), action, resource, dict(context), at)


@pytest.fixture(scope="session")
def pack_source() -> PolicySource:
    """The shipped baseline pack, read and statically checked."""
    return PolicySource.from_dir(BASELINE_PACK)


@pytest.fixture(scope="session")
def pack(pack_source: PolicySource) -> CompiledPolicy:
    """The baseline pack, compiled once for the whole session."""
    return CompiledPolicy.compile(pack_source)


@pytest.fixture
def pack_copy(tmp_path: Path) -> Path:
    """A writable copy of the baseline pack, to be edited into variants."""
    target = tmp_path / "pack"
    shutil.copytree(BASELINE_PACK, target)
    return target
