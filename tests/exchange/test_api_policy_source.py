"""``GET /v1/policies/{ref}/source`` and ``/report``: a version's content and its last test
run, read through the API (the console's version page shows them), authorized by the
active policy like every other route."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.client import ExchangeClient
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import BASELINE_PACK, PolicySource, sign_policy_step
from tests.conftest import initialised
from tests.identities import admin_signer, register_all

IDENTITIES = {
    "officer-a": (Role.SECURITY_OFFICER, None),
    "officer-b": (Role.SECURITY_OFFICER, None),
    "sb-lb": (Role.SUBBRAIN, "lithium-battery"),
}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[Runtime, dict[str, str]]]:
    runtime = Runtime(Settings(data_dir=initialised(tmp_path / "data")))
    tokens = {name: issued.token for name, issued in register_all(runtime, IDENTITIES).items()}
    try:
        yield runtime, tokens
    finally:
        runtime.close()


def _duty(runtime: Runtime, who: str, step: str, version: str) -> dict[str, object]:
    signed = sign_policy_step(
        admin_signer(who),
        origin=runtime.settings.ledger_origin,
        officer=who,
        step=step,
        version=version,
    )
    return {"duty": signed.to_dict()}


def test_a_versions_source_and_test_report_are_read_back(
    deployment: tuple[Runtime, dict[str, str]],
) -> None:
    runtime, tokens = deployment
    pack = PolicySource.from_dir(BASELINE_PACK)
    with ExchangeClient.local(runtime, token=tokens["officer-a"]) as client:
        version = client.post(
            "/v1/policies", {**pack.to_dict(), **_duty(runtime, "officer-a", "propose", pack.hash)}
        )["hash"]
        untested = client.get(f"/v1/policies/{version[:12]}/report")
        assert untested == {
            "hash": version,
            "tested_by": None,
            "tested_at": None,
            "report": None,
        }
        source = client.get(f"/v1/policies/{version[:12]}/source")
        assert source["hash"] == version
        assert PolicySource.from_dict({k: v for k, v in source.items() if k != "hash"}).hash == (
            version
        )
        assert source["lines"] == [line.to_list() for line in pack.lines]
        client.post(f"/v1/policies/{version}/test", _duty(runtime, "officer-a", "test", version))
        tested = client.get(f"/v1/policies/{version}/report")
        assert tested["tested_by"] == "officer-a" and tested["tested_at"]
        assert tested["report"]["passed"] is True and tested["report"]["results"]
        shown = client.get(f"/v1/policies/{version}")
        assert shown["tested_at"] == tested["tested_at"] and shown["approved_at"] is None
        with pytest.raises(RemoteRefusalError) as missing:
            client.get("/v1/policies/00000000/source")
        assert missing.value.status == 404
    with ExchangeClient.local(runtime, token=tokens["sb-lb"]) as client:
        for path in ("source", "report"):
            with pytest.raises(RemoteRefusalError) as refused:
                client.get(f"/v1/policies/{version}/{path}")
            assert refused.value.status == 403
