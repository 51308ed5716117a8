"""The same Rego on a real OPA server (runs only when IBX_OPA_URL names one; never faked)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import BASELINE_PACK, CompiledPolicy, OpaEvaluator, PolicyConfig, PolicySource
from tests.policies.duties import OFFICER_A, OFFICER_B, signed_point

OPA_URL = os.environ.get("IBX_OPA_URL")


@pytest.mark.skipif(not OPA_URL, reason="IBX_OPA_URL names no OPA server")
def test_opa_server_decides_like_embedded_regopy(tmp_path: Path, pack: CompiledPolicy) -> None:
    assert OPA_URL is not None
    runtime = Runtime.initialise(Settings(data_dir=tmp_path / "data", opa_url=OPA_URL))
    try:
        point, steps = signed_point(runtime, PolicyConfig(opa_url=OPA_URL))
        version = steps.propose(OFFICER_A, BASELINE_PACK)
        assert steps.test(OFFICER_B, version.hash).passed
        steps.approve(OFFICER_B, version.hash)
        steps.activate(OFFICER_B, version.hash)  # publishes to the server
        source = PolicySource.from_dir(BASELINE_PACK)
        for sample in source.requests:
            remote = point.decide_request(sample.request)
            assert remote.effect is sample.expect, (sample.name, remote.reasons)
            assert remote.allow == pack.decide(sample.request).allow
            assert any(r.startswith(("opa:", "input:")) for r in remote.reasons)
    finally:
        runtime.close()


def test_unreachable_opa_server_denies(pack: CompiledPolicy, pack_source: PolicySource) -> None:
    evaluator = OpaEvaluator("http://127.0.0.1:9", timeout=0.5)
    decision = evaluator.decide(pack, pack_source.requests[0].request)
    assert not decision.allow and any(r.startswith("opa: error:") for r in decision.reasons)
