"""Fixtures for the ledger on Fabric: the test PKI, the real chaincode service, the
in-process Gateway double, client configurations for it, and the real-network switch.

- ``fabric_pki`` (session): three organisations' CAs and peers, a client, a TLS CA.
- ``chaincode_service`` (session): a real ``ibx ledger chaincode`` process.
- ``gateway_double`` (module): a :class:`GatewayDouble` (with its own channel state)
  running that chaincode; knobs and faults are reset after each test that used it.
- ``fabric_config`` (function): ``make(directory=None, mode=FULL, **changes) ->
  FabricConfig`` for the double (the client's files are written into ``directory``,
  default a fresh one under ``tmp_path``).
- ``real_fabric_config`` (session): the same maker for the network ``IBX_FABRIC_*``
  names (``directory`` unused); skips (never fakes) when they are unset.
- ``fabric_target`` (function, parametrized ``double`` / ``network``): a
  :class:`FabricTarget` for suites that run against both.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ledger.fabric.config import FabricConfig, FabricMode
from tests.server import free_port

if TYPE_CHECKING:  # imported when used: the double loads gRPC and the shim harness
    from tests.ledger.fabric.fabric_pki import FabricPki
    from tests.ledger.fabric.gateway_double import GatewayDouble

CHAINCODE_ID = "ibx-ledger:test"
"""The package id the test chaincode service runs as."""

REAL_NETWORK_VARIABLES = (
    "IBX_FABRIC_GATEWAY",
    "IBX_FABRIC_TLS_ROOT",
    "IBX_FABRIC_MSP_ID",
    "IBX_FABRIC_CERT",
    "IBX_FABRIC_KEY",
    "IBX_FABRIC_CHANNEL",
    "IBX_FABRIC_CHAINCODE",
)
"""What a test needs to reach a real Fabric network (``IBX_FABRIC_SERVER_NAME`` is optional)."""

NO_NETWORK = "no Fabric network: set IBX_FABRIC_* (docs/fabric.md)"

ConfigMaker = Callable[..., FabricConfig]
"""``make(directory=None, mode=FabricMode.FULL, **changes) -> FabricConfig``."""


@dataclass(frozen=True)
class ChaincodeService:
    """The running ``ibx ledger chaincode`` process."""

    address: str
    chaincode_id: str
    log: Path
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class FabricTarget:
    """Where a suite runs: the Gateway double or a real network.

    Attributes:
        name: ``double`` or ``network``.
        make: the configuration maker (``make(directory=None, mode=FULL, **changes)``).
        double: the Gateway double (None on a real network: no fault injection there).
    """

    name: str
    make: ConfigMaker
    double: GatewayDouble | None = None

    def config(
        self, directory: Path | None = None, mode: FabricMode = FabricMode.FULL, **changes: Any
    ) -> FabricConfig:
        """A client configuration for this target (the double's client files go into
        ``directory``; a real network's are where ``IBX_FABRIC_*`` says)."""
        return self.make(directory, mode, **changes)

    def __call__(
        self, directory: Path | None = None, mode: FabricMode = FabricMode.FULL, **changes: Any
    ) -> FabricConfig:
        return self.config(directory, mode, **changes)

    @staticmethod
    def new_log_id(prefix: str = "test") -> str:
        """A log id no other test uses (a long-lived real channel keeps every log)."""
        return f"{prefix}-{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def fabric_pki() -> FabricPki:
    """The consortium's throwaway PKI."""
    from tests.ledger.fabric.fabric_pki import FabricPki

    return FabricPki.generate()


@pytest.fixture(scope="session")
def chaincode_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaincodeService]:
    """A real ``ibx ledger chaincode`` service on a free port, until the session ends."""
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("chaincode") / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exchange.cli",
                "ledger",
                "chaincode",
                "--address",
                address,
                "--id",
                CHAINCODE_ID,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ibx ledger chaincode did not start:\n{log.read_text()}")
            time.sleep(0.02)
        yield ChaincodeService(address, CHAINCODE_ID, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def gateway_double(
    fabric_pki: FabricPki, chaincode_service: ChaincodeService
) -> Iterator[GatewayDouble]:
    """A Gateway double with a fresh channel, for one test module."""
    from tests.ledger.fabric.gateway_double import GatewayDouble

    double = GatewayDouble(
        fabric_pki, chaincode_service.address, chaincode_id=chaincode_service.chaincode_id
    )
    double.start()
    try:
        yield double
    finally:
        double.close()


@pytest.fixture(autouse=True)
def _restore_gateway_double(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the double: faults and knobs reset, the server up again."""
    yield
    if "gateway_double" not in request.fixturenames:
        return
    double: GatewayDouble = request.getfixturevalue("gateway_double")
    double.reset()
    if not double.running:
        double.start()


@pytest.fixture
def fabric_config(tmp_path: Path, gateway_double: GatewayDouble) -> ConfigMaker:
    """``make(directory=None, mode=FULL, **changes)``: a client configuration for the
    module's double."""
    return _double_maker(tmp_path, gateway_double)


def _double_maker(tmp_path: Path, double: GatewayDouble) -> ConfigMaker:
    from tests.ledger.fabric.gateway_double import double_fabric_config

    def make(
        directory: Path | None = None, mode: FabricMode = FabricMode.FULL, **changes: Any
    ) -> FabricConfig:
        return double_fabric_config(
            directory or tmp_path / "fabric-client", double, mode, **changes
        )

    return make


def real_network_config(mode: FabricMode = FabricMode.FULL, **changes: Any) -> FabricConfig | None:
    """The configuration ``IBX_FABRIC_*`` describes, or None when any is unset."""
    env = {name: os.environ.get(name, "") for name in REAL_NETWORK_VARIABLES}
    if not all(env.values()):
        return None
    config = FabricConfig(
        mode=mode,
        gateway=env["IBX_FABRIC_GATEWAY"],
        tls_root=Path(env["IBX_FABRIC_TLS_ROOT"]),
        msp_id=env["IBX_FABRIC_MSP_ID"],
        cert=Path(env["IBX_FABRIC_CERT"]),
        key=Path(env["IBX_FABRIC_KEY"]),
        channel=env["IBX_FABRIC_CHANNEL"],
        chaincode=env["IBX_FABRIC_CHAINCODE"],
        server_name=os.environ.get("IBX_FABRIC_SERVER_NAME") or None,
    )
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="session")
def real_fabric_config() -> ConfigMaker:
    """``make(directory=None, mode=FULL, **changes)`` for the real network; skips
    without ``IBX_FABRIC_*``."""
    if real_network_config() is None:
        pytest.skip(NO_NETWORK)

    def make(
        directory: Path | None = None, mode: FabricMode = FabricMode.FULL, **changes: Any
    ) -> FabricConfig:
        del directory  # the network's client files are where IBX_FABRIC_* says
        config = real_network_config(mode, **changes)
        assert config is not None
        return config

    return make


@pytest.fixture(params=["double", pytest.param("network", marks=pytest.mark.fabric)])
def fabric_target(request: pytest.FixtureRequest, tmp_path: Path) -> FabricTarget:
    """The Gateway double, then (marked ``fabric``) the real network when configured."""
    if request.param == "network":
        return FabricTarget("network", request.getfixturevalue("real_fabric_config"))
    double: GatewayDouble = request.getfixturevalue("gateway_double")
    return FabricTarget("double", _double_maker(tmp_path, double), double)
