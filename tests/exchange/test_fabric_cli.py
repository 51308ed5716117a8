"""``ibx ledger ship``, ``verify --fabric``, ``follow`` and ``ibx serve`` shipping on its own,
against the in-process Fabric Gateway double running the real chaincode.

The commands run through ibx's entry point in this process (``tests.in_process``);
``ibx serve`` is one real process for the module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import Database
from ledger.fabric import FabricConfig, FabricMode, LedgerChannel
from ledger.fabric.gateway import open_channel
from tests.conftest import initialised
from tests.in_process import ibx
from tests.ledger.fabric import conftest as fabric_fixtures
from tests.ledger.fabric.conftest import FabricTarget
from tests.ledger.fabric.gateway_double import GatewayDouble, double_fabric_config
from tests.server import ExchangeUrl, running_exchange

# The Gateway double's fixtures (tests/ledger/fabric/conftest.py), used here too.
fabric_pki = fabric_fixtures.fabric_pki
chaincode_service = fabric_fixtures.chaincode_service
gateway_double = fabric_fixtures.gateway_double


def _environment(config: FabricConfig, origin: str, **extra: str) -> dict[str, str]:
    return {
        "IBX_LEDGER_ORIGIN": origin,
        "IBX_LEDGER_FABRIC_MODE": str(config.mode),
        "IBX_LEDGER_FABRIC_GATEWAY": config.gateway,
        "IBX_LEDGER_FABRIC_TLS_ROOT": str(config.tls_root),
        "IBX_LEDGER_FABRIC_MSP_ID": config.msp_id,
        "IBX_LEDGER_FABRIC_CERT": str(config.cert),
        "IBX_LEDGER_FABRIC_KEY": str(config.key),
        "IBX_LEDGER_FABRIC_CHANNEL": config.channel,
        "IBX_LEDGER_FABRIC_CHAINCODE": config.chaincode,
        **extra,
    }


class Deployment:
    """A data dir whose ledger ships to the double, and the environment that says so."""

    def __init__(self, root: Path, double: GatewayDouble, mode: FabricMode) -> None:
        self.origin = FabricTarget.new_log_id("test.ibx/cli")
        self.data_dir = initialised(root / "data", ledger_origin=self.origin)
        self.config = double_fabric_config(root / "fabric-client", double, mode)
        self.env = _environment(self.config, self.origin, IBX_LEDGER_FABRIC_RETRIES="1")

    def ibx(self, *argv: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
        done = ibx("--data-dir", str(self.data_dir), *argv, stdin=stdin, env={**self.env, **env})
        return done.returncode, done.stdout, done.stderr

    def append(self, count: int) -> None:
        lines = "".join(json.dumps({"reading": i}) + "\n" for i in range(count))
        code, _, err = self.ibx("ledger", "append", "--type", "demo.reading", stdin=lines)
        assert code == 0, err

    def sql_size(self) -> int:
        code, out, err = self.ibx("ledger", "verify", "--json")
        assert code == 0, err
        size: int = json.loads(out)["size"]
        return size


def _channel_size(channel: LedgerChannel) -> int:
    """The channel's size (0 while the log is not created yet)."""
    return 0 if channel.genesis() is None else channel.head().size


@pytest.fixture
def deployment(tmp_path: Path, gateway_double: GatewayDouble) -> Iterator[Deployment]:
    made = Deployment(tmp_path, gateway_double, FabricMode.FULL)
    yield made
    if not gateway_double.running:
        gateway_double.start()


def test_ship_prints_what_it_shipped_and_ships_nothing_twice(deployment: Deployment) -> None:
    deployment.append(30)
    size = deployment.sql_size()
    code, out, err = deployment.ibx("ledger", "ship", "--once")
    assert code == 0, err
    assert (
        out == f"shipped {size} entries in 1 transactions; channel size {size} of SQL size {size}\n"
    )
    code, out, _ = deployment.ibx("ledger", "ship", "--once", "--json")
    assert code == 0
    assert json.loads(out) == {
        "mode": "full",
        "shipped": 0,
        "transactions": 0,
        "channel_size": size,
        "sql_size": size,
        "lag": 0,
        "error": None,
    }
    code, out, _ = deployment.ibx("status")
    assert any(
        line.startswith("ok") and "fabric" in line and f"channel size {size} of SQL size" in line
        for line in out.splitlines()
    ), out


def test_verify_fabric_agrees_then_names_a_tampered_row(deployment: Deployment) -> None:
    deployment.append(12)
    size = deployment.sql_size()
    assert deployment.ibx("ledger", "ship", "--once")[0] == 0
    deployment.append(3)
    code, out, err = deployment.ibx("ledger", "verify", "--fabric")
    assert code == 0, err
    assert out.splitlines()[-1] == f"fabric full: channel size {size} agrees (lag 3)"
    code, out, _ = deployment.ibx("ledger", "verify", "--fabric", "--json")
    assert json.loads(out)["fabric"]["channel_size"] == size

    db = Database(f"sqlite:///{deployment.data_dir / 'ibx.db'}")
    try:
        with db.write() as session:
            leaf = session.execute(
                text("SELECT leaf_input FROM ledger_entries WHERE idx = 5")
            ).scalar_one()
            forged = leaf.replace(b'"reading":', b'"reading":1')
            session.execute(
                text("UPDATE ledger_entries SET leaf_input = :forged WHERE idx = 5"),
                {"forged": forged},
            )
    finally:
        db.dispose()
    code, out, err = deployment.ibx("ledger", "verify", "--fabric")
    assert code == 5 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "index 5" in err and "the Fabric channel: entry 5 differs" in err


def test_follow_prints_the_logs_events(
    deployment: Deployment, gateway_double: GatewayDouble
) -> None:
    start = gateway_double.height
    deployment.append(4)
    size = deployment.sql_size()
    assert deployment.ibx("ledger", "ship", "--once")[0] == 0
    code, out, err = deployment.ibx("ledger", "follow", "--from-block", str(start), "--count", "2")
    assert code == 0, err
    created, appended = out.splitlines()
    assert created.startswith("block ") and " created 0..0 root " in created
    assert f" appended 0..{size} root " in appended
    code, out, _ = deployment.ibx(
        "ledger", "follow", "--from-block", str(start), "--count", "2", "--json"
    )
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["ibx.ledger.created", "ibx.ledger.appended"]
    assert events[1]["size"] == size and events[1]["log"] == deployment.origin


def test_ship_while_fabric_is_down_exits_1_with_one_line(
    deployment: Deployment, gateway_double: GatewayDouble
) -> None:
    deployment.append(2)
    gateway_double.stop()
    code, out, err = deployment.ibx("ledger", "ship", "--once", IBX_LEDGER_FABRIC_RETRIES="0")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "did not answer" in err, err
    gateway_double.start()
    code, out, err = deployment.ibx("ledger", "ship", "--once")
    assert code == 0 and out.startswith("shipped "), err


def test_settings_errors_are_one_line_usage_errors(tmp_path: Path) -> None:
    data_dir = initialised(tmp_path / "data")
    for argv in (("ledger", "ship", "--once"), ("ledger", "verify", "--fabric")):
        done = ibx("--data-dir", str(data_dir), *argv, env={"IBX_LEDGER_FABRIC_MODE": "full"})
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "IBX_LEDGER_FABRIC_GATEWAY" in done.stderr and "IBX_LEDGER_FABRIC_KEY" in done.stderr
        off = ibx("--data-dir", str(data_dir), *argv)
        assert off.returncode == 2 and "IBX_LEDGER_FABRIC_MODE=full or anchor" in off.stderr
    remote = ibx("ledger", "verify", "--fabric", "--exchange", "https://127.0.0.1:1")
    assert remote.returncode == 2 and "--fabric" in remote.stderr


@dataclass
class Served:
    """``ibx serve`` shipping a deployment's ledger, and a client of its channel."""

    deployment: Deployment
    base: ExchangeUrl
    channel: LedgerChannel

    def wait_shipped(self, seconds: float = 20) -> None:
        """Until the channel holds every SQL entry."""
        size = self.deployment.sql_size()
        deadline = time.monotonic() + seconds
        while _channel_size(self.channel) < size:
            assert time.monotonic() < deadline, self.base.log()
            time.sleep(0.05)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, gateway_double: GatewayDouble
) -> Iterator[Served]:
    """One real ``ibx serve`` with IBX_LEDGER_FABRIC_MODE=full, for the module."""
    deployment = Deployment(tmp_path_factory.mktemp("served"), gateway_double, FabricMode.FULL)
    channel = open_channel(deployment.config, deployment.origin)
    try:
        with running_exchange(deployment.data_dir, env=deployment.env) as base:
            yield Served(deployment, base, channel)
    finally:
        channel.close()


def test_serve_ships_on_its_own(served: Served) -> None:
    served.deployment.append(25)
    served.wait_shipped()
    code, out, err = served.deployment.ibx("ledger", "verify", "--fabric")
    assert code == 0, err
    assert out.splitlines()[-1].startswith("fabric full: channel size")
    assert "Traceback" not in served.base.log()


def test_serve_ships_what_waited_through_an_outage(
    served: Served, gateway_double: GatewayDouble
) -> None:
    gateway_double.stop()  # the entries wait in SQL
    try:
        served.deployment.append(10)
        deadline = time.monotonic() + 10
        while "Fabric shipping stopped" not in served.base.log():
            assert time.monotonic() < deadline, served.base.log()
            time.sleep(0.05)
    finally:
        gateway_double.start()
    served.wait_shipped()
    log = served.base.log()
    assert log.count("Fabric shipping stopped") == 1, log  # one line per outage
    assert "Fabric shipping resumed" in log and "Traceback" not in log
    code, out, err = served.deployment.ibx("ledger", "verify", "--fabric")
    assert code == 0 and "(lag 0)" in out, err


def test_a_channel_that_disagrees_stops_shipping_and_raises_one_critical_alert(
    tmp_path: Path, deployment: Deployment
) -> None:
    """A second deployment re-initialised under the same origin (a new ledger key: the
    operator replaced the log) meets the first one's log on the channel: shipping stops
    and a critical ``fabric.disagreement`` alert goes on the ledger, once."""
    from exchange.fabric_shipping import FabricShipping
    from exchange.runtime import Runtime
    from exchange.settings import Settings

    deployment.append(3)
    assert deployment.ibx("ledger", "ship", "--once")[0] == 0
    imposter = initialised(tmp_path / "imposter", ledger_origin=deployment.origin)
    settings = Settings(
        data_dir=imposter,
        ledger_origin=deployment.origin,
        ledger_fabric_mode="full",
        ledger_fabric_gateway=deployment.config.gateway,
        ledger_fabric_tls_root=deployment.config.tls_root,
        ledger_fabric_msp_id=deployment.config.msp_id,
        ledger_fabric_cert=deployment.config.cert,
        ledger_fabric_key=deployment.config.key,
        ledger_fabric_channel=deployment.config.channel,
        ledger_fabric_chaincode=deployment.config.chaincode,
        ledger_fabric_retries=1,
    )
    runtime = Runtime(settings)
    try:
        shipping = FabricShipping(runtime, 1.0)
        shipping.run_pass()
        shipping.run_pass()  # the same disagreement again: no second alert
        alerts = runtime.ledger.find(["audit:alerts"], ["audit.alert"])
        assert len(alerts) == 1
        alert = json.loads(runtime.ledger.entry(alerts[0].index).leaf_input)["payload"]
        assert alert["rule"] == "fabric.disagreement"
        assert alert["severity"] == "critical"
        assert "checkpoint key" in alert["message"]
    finally:
        runtime.close()
