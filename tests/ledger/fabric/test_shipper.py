"""The shipper against the Gateway double: outages, conflicts, endorsement failures, settings.

The contract itself (order, batches, anchors, tampering) is
``test_fabric_contract.py``, on the double and a real network; these need the
double's faults, so they run on it alone, through the real client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from pydantic import SecretStr

from core.db import Database, migrate
from core.errors import ConfigurationError
from core.events import Event
from core.keys import Ed25519Signer
from exchange.secret_env import take_secret_environment
from exchange.settings import Settings
from ledger import MIGRATIONS, Ledger, LedgerConfig, SqlLedgerBackend
from ledger.fabric import (
    AppendBatch,
    FabricConfigError,
    FabricMode,
    LedgerChannel,
    wire,
)
from ledger.fabric.compare import compare
from ledger.fabric.gateway import open_channel
from ledger.fabric.outbox import FabricOutbox, OutboxKey
from ledger.fabric.shipper import FabricShipper, OutboxSlot
from tests.ledger.fabric.conftest import ConfigMaker, FabricTarget
from tests.ledger.fabric.gateway_double import GatewayDouble


@dataclass
class Site:
    """A ledger on SQLite, its channel through the real client, and its progress row."""

    ledger: Ledger
    backend: SqlLedgerBackend
    db: Database
    channels: list[LedgerChannel]
    make_channel: Callable[[], LedgerChannel]
    key: OutboxKey

    @property
    def log(self) -> str:
        return self.ledger.config.origin

    def append(self, count: int) -> None:
        start = self.ledger.size()
        self.ledger.append(
            [Event("demo.reading", "sensor", {"i": start + i}) for i in range(count)]
        )

    def shipper(self, batch_size: int = 50, mode: FabricMode = FabricMode.FULL) -> FabricShipper:
        channel = self.make_channel()
        self.channels.append(channel)
        slot = OutboxSlot(FabricOutbox(self.db), self.key)
        return FabricShipper(
            self.ledger, self.backend, channel, mode, batch_size=batch_size, outbox=slot
        )

    def channel_leaves(self) -> list[bytes]:
        channel = self.channels[0]
        size = channel.head().size
        leaves: list[bytes] = []
        while len(leaves) < size:
            leaves.extend(channel.entries(len(leaves), 1000).leaves)
        return leaves

    def sql_leaves(self) -> list[bytes]:
        return [leaf for _, leaf in self.backend.scan_entries(0, self.ledger.size())]

    def status(self) -> tuple[int, str | None, int]:
        found = FabricOutbox(self.db).status(self.key)
        assert found is not None
        return found.shipped_size, found.last_error, found.failures


@pytest.fixture
def site(tmp_path: Path, fabric_config: ConfigMaker) -> Iterator[Site]:
    """A fresh log; its client gives up quickly while the double is down."""
    log = FabricTarget.new_log_id("test.ibx/shipper")
    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(db, [MIGRATIONS])
    backend = SqlLedgerBackend(db)
    ledger = Ledger(backend, Ed25519Signer.generate("ledger"), LedgerConfig(log))
    config = fabric_config(retries=1, timeout=5.0)
    made = Site(
        ledger,
        backend,
        db,
        [],
        lambda: open_channel(config, log),
        OutboxKey(config.channel, config.chaincode, log, "full"),
    )
    made.channels.append(made.make_channel())
    yield made
    for channel in made.channels:
        channel.close()
    db.dispose()


def test_entries_appended_during_an_outage_ship_after_it(
    site: Site, gateway_double: GatewayDouble
) -> None:
    site.append(60)
    shipper = site.shipper()
    assert shipper.ship().channel_size == 60
    gateway_double.stop()
    site.append(70)
    down = shipper.ship()
    assert down.error is not None and "did not answer" in down.error
    assert (down.shipped, down.transactions) == (0, 0)
    size, error, failures = site.status()
    assert (size, failures) == (60, 1) and error == " ".join(down.error.split())
    assert shipper.ship().error is not None  # still down: a second failed pass
    assert site.status()[2] == 2

    gateway_double.start()  # the same port, the channel as it was
    back = shipper.ship()
    assert back.error is None
    assert (back.shipped, back.transactions, back.channel_size) == (70, 2, 130)
    assert site.channel_leaves() == site.sql_leaves()  # nothing lost, nothing twice
    assert site.status() == (130, None, 0)


def test_an_outage_in_the_middle_of_a_pass_loses_and_duplicates_nothing(
    site: Site, gateway_double: GatewayDouble
) -> None:
    site.append(200)
    gateway_double.fail_next("Submit", grpc.StatusCode.UNAVAILABLE, after=True)  # answer lost
    gateway_double.fail_next("CommitStatus", grpc.StatusCode.UNAVAILABLE)
    report = site.shipper().ship(max_batches=2)
    assert report.channel_size == 100 and report.error is None
    gateway_double.fail_next("Endorse", grpc.StatusCode.UNAVAILABLE, times=2)  # > retries
    stopped = site.shipper().ship()
    assert stopped.error is not None and stopped.channel_size == 100
    rest = site.shipper().ship()  # a new shipper, as after a restart
    assert (rest.shipped, rest.channel_size) == (100, 200)
    assert site.channel_leaves() == site.sql_leaves()


def test_a_commit_conflict_is_resolved_by_re_reading_the_head(
    site: Site, gateway_double: GatewayDouble
) -> None:
    """Another shipper commits the same batch between our endorsement and our commit."""
    site.append(120)
    assert site.shipper().ship(max_batches=0).channel_size == 0  # creates the log
    rival = AppendBatch(0, tuple(site.sql_leaves()[:50]), site.ledger.root_at(50))
    gateway_double.compete_next([wire.APPEND.encode(), site.log.encode(), rival.to_json()])
    report = site.shipper().ship()
    assert (report.shipped, report.transactions, report.channel_size) == (70, 2, 120)
    assert site.channel_leaves() == site.sql_leaves()


def test_two_shippers_at_once_store_every_entry_once(
    site: Site, gateway_double: GatewayDouble
) -> None:
    site.append(300)
    shippers = [site.shipper(batch_size=20), site.shipper(batch_size=20)]
    errors: list[BaseException] = []

    def run(shipper: FabricShipper) -> None:
        try:
            shipper.ship()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in shippers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert site.channel_leaves() == site.sql_leaves()
    verdict = compare(site.ledger, site.backend, site.channels[0], FabricMode.FULL)
    assert verdict.ok and verdict.channel_size == 300


def test_too_few_endorsers_is_reported_and_retried_later(
    site: Site, gateway_double: GatewayDouble
) -> None:
    site.append(30)
    shipper = site.shipper()
    assert shipper.ship().channel_size == 30
    site.append(10)
    gateway_double.endorsers_required = 3
    gateway_double.endorsers_available = 1
    refused = shipper.ship()
    assert refused.error is not None and "endorse" in refused.error
    assert site.status()[1:] == (" ".join(refused.error.split()), 1)
    gateway_double.endorsers_available = 3
    later = shipper.ship()
    assert (later.error, later.shipped, later.channel_size) == (None, 10, 40)
    assert site.status() == (40, None, 0)


def test_batches_are_cut_by_bytes_as_well_as_by_count(site: Site) -> None:
    big = "x" * 60_000
    site.ledger.append([Event("demo.blob", "sensor", {"i": i, "blob": big}) for i in range(150)])
    report = site.shipper(batch_size=1000).ship()
    assert report.transactions == 2 and report.channel_size == 150  # ~80 kB each in base64
    assert site.channel_leaves() == site.sql_leaves()


def test_anchor_mode_survives_an_outage(site: Site, gateway_double: GatewayDouble) -> None:
    site.append(10)
    anchor = site.shipper(mode=FabricMode.ANCHOR)
    assert anchor.ship().channel_size == 10
    site.append(5)
    gateway_double.stop()
    assert anchor.ship().error is not None
    gateway_double.start()
    again = anchor.ship()
    assert (again.error, again.shipped, again.channel_size) == (None, 5, 15)


def test_a_shipper_refuses_a_channel_of_another_log(site: Site) -> None:
    other = Ledger(site.backend, Ed25519Signer.generate("ledger"), LedgerConfig("other.ibx/log"))
    with pytest.raises(FabricConfigError, match="must be the ledger's origin"):
        FabricShipper(other, site.backend, site.channels[0], FabricMode.FULL)
    with pytest.raises(FabricConfigError, match="1-1000"):
        FabricShipper(site.ledger, site.backend, site.channels[0], FabricMode.FULL, batch_size=0)


# -- settings --------------------------------------------------------------------------

_COMPLETE: dict[str, Any] = {
    "ledger_fabric_gateway": "peer0.org1.example.com:7051",
    "ledger_fabric_tls_root": Path("/etc/ibx/fabric/tls-ca.pem"),
    "ledger_fabric_msp_id": "Org1MSP",
    "ledger_fabric_cert": Path("/etc/ibx/fabric/cert.pem"),
    "ledger_fabric_key": Path("/etc/ibx/fabric/key.pem"),
    "ledger_fabric_channel": "ibx-ledger",
}


def test_shipping_is_off_by_default(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).fabric_config() is None


def test_a_mode_without_its_settings_names_every_missing_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings(data_dir=tmp_path, ledger_fabric_mode="full").fabric_config()
    message = str(refused.value)
    for name in ("GATEWAY", "TLS_ROOT", "MSP_ID", "CERT", "KEY", "CHANNEL"):
        assert f"IBX_LEDGER_FABRIC_{name}" in message
    partial = {**_COMPLETE, "ledger_fabric_channel": None, "ledger_fabric_msp_id": ""}
    with pytest.raises(ConfigurationError) as refused:
        Settings(data_dir=tmp_path, ledger_fabric_mode="anchor", **partial).fabric_config()
    assert "IBX_LEDGER_FABRIC_CHANNEL" in str(refused.value)
    assert "IBX_LEDGER_FABRIC_MSP_ID" in str(refused.value)
    assert "IBX_LEDGER_FABRIC_GATEWAY" not in str(refused.value)


def test_complete_settings_make_the_config(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        ledger_fabric_mode="anchor",
        ledger_fabric_batch=200,
        ledger_fabric_key_password=SecretStr("s3cret-pass"),
        **_COMPLETE,
    )
    config = settings.fabric_config()
    assert config is not None
    assert (config.mode, config.batch_size, config.chaincode) == (
        FabricMode.ANCHOR,
        200,
        "ibx-ledger",
    )
    assert config.key_password == b"s3cret-pass"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"ledger_fabric_gateway": "no-port"}, "HOST:PORT"),
        ({"ledger_fabric_gateway": "peer:99999"}, "HOST:PORT"),
        ({"ledger_origin": "ibx.example/ledger~1"}, "cannot name the ledger's log"),
        ({"ledger_origin": "x" * 201}, "cannot name the ledger's log"),
    ],
    ids=["no-port", "bad-port", "tilde-origin", "long-origin"],
)
def test_bad_fabric_settings_are_refused(
    tmp_path: Path, changes: dict[str, object], match: str
) -> None:
    values: dict[str, Any] = {**_COMPLETE, **changes}
    with pytest.raises(ConfigurationError, match=match):
        Settings(data_dir=tmp_path, ledger_fabric_mode="full", **values).fabric_config()


@pytest.mark.parametrize("value", ["0", "1001"])
def test_a_batch_outside_1_to_1000_is_refused(tmp_path: Path, value: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, ledger_fabric_batch=value)


def test_the_key_password_is_taken_out_of_the_environment() -> None:
    environ = {"IBX_LEDGER_FABRIC_KEY_PASSWORD": "pw", "IBX_LEDGER_FABRIC_MODE": "full"}
    taken = take_secret_environment(environ)
    assert taken == {"ledger_fabric_key_password": "pw"}
    assert environ == {"IBX_LEDGER_FABRIC_MODE": "full"}
