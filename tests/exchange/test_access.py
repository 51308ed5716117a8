"""The access table fails closed, and the decision cache never outlives what it depends on."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import httpx

from core.clock import utcnow
from exchange.app import create_app
from exchange.client import ExchangeClient, InProcessTransport
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from policies import BASELINE_PACK, Subject
from tests.identities import bootstrap
from tests.policies.duties import OFFICER_A, OFFICER_B, Steps


def test_a_route_missing_from_the_table_is_refused(runtime: Runtime) -> None:
    """A route someone adds without a row in exchange.access.ROUTES answers 403, even
    to an authenticated caller; routes with a row still answer."""
    app = create_app(runtime=runtime)

    @app.get("/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {"leaked": "yes"}

    issued = runtime.identities.create("sb", Role.SUBBRAIN, industry="lithium-battery")
    http = httpx.Client(
        base_url="http://ibx.local",
        headers={"Authorization": f"Bearer {issued.token}"},
        transport=InProcessTransport(app),
    )
    with ExchangeClient(http, where="local") as client:
        try:
            client.get("/v1/forgotten")
        except RemoteRefusalError as exc:
            assert exc.status == 403
            assert "no access rule for GET /v1/forgotten" in str(exc)
        else:
            raise AssertionError("a route without an access rule answered")
        assert client.get("/v1/me")["name"] == "sb"


def test_the_decision_cache_follows_the_active_version(runtime: Runtime, tmp_path: Path) -> None:
    """Decisions are cached by version and whole input (``now`` in seconds): activating a
    version that changes a decision changes it at once, within the same second."""
    point = runtime.policy
    subject = Subject("li-brain", "subbrain", "lithium-battery")
    context = {"domain": "lithium-battery"}
    at = utcnow().replace(microsecond=0)
    before = point.decide(subject, "consent_check", "consent:*", context, at=at)
    assert before.allow  # the shipped baseline decides before any activation
    assert point.decide(subject, "consent_check", "consent:*", context, at=at) == before

    pack = tmp_path / "pack"  # the baseline without the sub-brains' consent_check lines
    shutil.copytree(BASELINE_PACK, pack)
    csv = pack / "policy.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    csv.write_text(
        "\n".join(ln for ln in lines if not ("subbrain," in ln and "consent_check" in ln)) + "\n",
        encoding="utf-8",
    )
    bootstrap(runtime, OFFICER_A.name, OFFICER_B.name)  # officers with ledgered keys
    steps = Steps(point, runtime.settings.ledger_origin)
    version = steps.propose(OFFICER_A, pack)
    steps.through(version.hash, OFFICER_B, OFFICER_B)

    after = point.decide(subject, "consent_check", "consent:*", context, at=at)
    assert not after.allow and after.version == version.hash
    assert any("no line lets subbrain" in reason for reason in after.reasons)
    later = point.decide(subject, "consent_check", "consent:*", context, at=at + timedelta(1))
    assert not later.allow
