"""The active version a decision point reuses: an activation through it counts at once, one
through another process's decision point within ``PolicyConfig.active_version_ttl``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from exchange.runtime import Runtime
from policies import (
    BASELINE_PACK,
    PolicyConfig,
    PolicyDecisionPoint,
    PolicySource,
    Subject,
    VersionHash,
)
from tests.policies.duties import OFFICER_A, OFFICER_B, Steps, signed_point

TTL = 0.5
SUBJECT = Subject("li-brain", "subbrain", "lithium-battery")
CONTEXT = {"domain": "lithium-battery"}


def _approved(steps: Steps, pack: Path) -> VersionHash:
    version = steps.propose(OFFICER_A, pack)
    steps.test(OFFICER_B, version.hash)
    steps.approve(OFFICER_B, version.hash)
    return version.hash


def _seen_within(point: PolicyDecisionPoint, version: str, since: float) -> float:
    """Seconds from ``since`` until ``point`` decides under ``version`` (fails past 2 s)."""
    while point.decide(SUBJECT, "consent_check", "consent:*", CONTEXT).version != version:
        assert time.monotonic() - since < 2, "the activation was never seen"
        time.sleep(0.005)
    return time.monotonic() - since


def test_an_activation_counts_at_once_here_and_within_the_bound_in_other_processes(
    runtime: Runtime, pack_copy: Path, tmp_path: Path
) -> None:
    here, at_here = signed_point(
        runtime, PolicyConfig(bootstrap_pack=BASELINE_PACK, active_version_ttl=TTL)
    )
    there, at_there = signed_point(  # another worker or process on the same database
        runtime, PolicyConfig(bootstrap_pack=BASELINE_PACK, active_version_ttl=TTL)
    )
    uncached, _ = signed_point(
        runtime, PolicyConfig(bootstrap_pack=BASELINE_PACK, active_version_ttl=0)
    )
    versions = []
    for n in (1, 2):  # two versions unlike the bootstrap pack (the baseline) and each other
        pack = tmp_path / f"pack-{n}"
        shutil.copytree(pack_copy, pack)
        with (pack / "policy.csv").open("a", encoding="utf-8") as lines:
            lines.write(f"g, nobody-{n}, subbrain, lithium-battery\n")
        versions.append(_approved(at_here, pack))
    first, second = versions
    bootstrap = PolicySource.from_dir(BASELINE_PACK).hash
    for point in (here, there, uncached):
        for version in versions:
            point.compiled(version)  # compiled now, so an activation below takes milliseconds
        # each has just read (and may reuse) "none active": the bootstrap pack decides
        assert point.decide(SUBJECT, "consent_check", "consent:*", CONTEXT).version == bootstrap

    at_here.activate(OFFICER_B, first)
    done = time.monotonic()
    assert here.decide(SUBJECT, "consent_check", "consent:*", CONTEXT).version == first  # at once
    assert uncached.active_version() == first
    assert _seen_within(there, first, done) <= TTL + 0.1

    at_there.activate(OFFICER_B, second)  # a rollback elsewhere counts here within TTL
    done = time.monotonic()
    assert there.active_version() == second
    assert uncached.active_version() == second
    assert _seen_within(here, second, done) <= TTL + 0.1


@pytest.mark.parametrize("ttl", [-0.1, 1.5])
def test_the_reuse_is_bounded_by_one_second(ttl: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1 second"):
        PolicyConfig(active_version_ttl=ttl)
