"""The real ledger chaincode behind the real chaincode shim (``ledger.fabric.chaincode``).

In process, :class:`ShimPeer` drives fabric-chaincode-python's ``Handler`` (the
ledger's corrected subclass) over queues: the library's own harness, no
network. Over gRPC it dials a real ``ibx ledger chaincode`` process as Fabric's
peer dials a chaincode-as-a-service, in the clear and over mutual TLS.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2

from core.events import Event
from core.keys import Ed25519Signer
from ledger import Ledger, LedgerConfig, MemoryLedgerBackend
from ledger.fabric import wire
from ledger.fabric.chaincode import new_chaincode
from tests.in_process import ibx
from tests.ledger.fabric.shim_peer import ShimPeer, ShimProtocolError, Simulation, Version, World

LOG = "ibx.test/shim"
CHAINCODE_ID = "ibx-ledger_1:" + "ab" * 32
NAMESPACE = "ibx-ledger"


def _ledger(size: int) -> Ledger:
    signer = Ed25519Signer("shim", bytes(range(32)))
    ledger = Ledger(MemoryLedgerBackend(), signer, LedgerConfig(origin=LOG))
    ledger.append([Event("test.entry", "tester", {"i": i}) for i in range(size)])
    return ledger


LEDGER = _ledger(160)
LEAVES = tuple(e.leaf_input for e in LEDGER.entries(0, 1000))


class Chain:
    """A peer connection and a world that commits each successful transaction in its block."""

    def __init__(self, peer: ShimPeer, log: str = LOG) -> None:
        self.peer = peer
        self.world = World()
        self.log = log
        self.block = 0
        self.tx = 0

    async def run(self, function: str, *args: str | bytes, commit: bool = True) -> Simulation:
        self.tx += 1
        raw = [function.encode(), self.log.encode()]
        raw += [a.encode() if isinstance(a, str) else a for a in args]
        sim = await self.peer.execute(
            self.world, channel="ibx-ledger", tx_id=f"tx-{self.tx}", args=raw
        )
        if commit and sim.status == 200 and sim.writes:
            self.block += 1
            self.world.apply(sim.writes, Version(self.block, 0))
        return sim

    async def create(self) -> Simulation:
        return await self.run(wire.CREATE_LOG, wire.LogGenesis(self.log, LEDGER.vkey()).to_json())

    async def append(self, start: int, end: int, checkpoint: str = "") -> Simulation:
        batch = wire.AppendBatch(start, LEAVES[start:end], LEDGER.root_at(end), checkpoint)
        return await self.run(wire.APPEND, batch.to_json())


def _kv_rwset(sim: Simulation) -> Any:
    rwset = rwset_pb2.TxReadWriteSet.FromString(sim.results(NAMESPACE))
    assert rwset.data_model == rwset_pb2.TxReadWriteSet.KV
    assert [ns.namespace for ns in rwset.ns_rwset] == [NAMESPACE]
    return kv_rwset_pb2.KVRWSet.FromString(rwset.ns_rwset[0].rwset)


async def _append_and_refuse(chain: Chain) -> None:
    """The checks both transports share: keys written, event in COMPLETED, refusal as error."""
    created = await chain.create()
    assert created.status == 200
    assert created.event is not None and created.event.event_name == wire.EVENT_CREATED
    appended = await chain.append(0, 9)
    assert appended.status == 200, appended.message
    assert sorted(appended.writes) == sorted(
        [wire.entry_key(LOG, i) for i in range(9)] + [wire.head_key(LOG)]
    )
    assert appended.writes[wire.entry_key(LOG, 4)] == LEAVES[4]
    head = wire.ChannelHead.from_json(appended.payload)
    assert (head.size, head.root) == (9, LEDGER.root_at(9))
    event = appended.event
    assert event is not None
    assert (event.event_name, event.chaincode_id, event.tx_id) == (
        wire.EVENT_APPENDED,
        NAMESPACE,
        f"tx-{chain.tx}",
    )
    parsed = wire.LedgerEvent.from_payload(event.event_name, event.payload)
    assert (parsed.log, parsed.start, parsed.size, parsed.root) == (LOG, 0, 9, LEDGER.root_at(9))
    assert appended.reads == {wire.genesis_key(LOG): Version(1, 0), wire.head_key(LOG): None}
    kv = _kv_rwset(appended)
    assert [(r.key, r.HasField("version")) for r in kv.reads] == [
        (wire.genesis_key(LOG), True),
        (wire.head_key(LOG), False),
    ]
    assert [w.key for w in kv.writes] == sorted(appended.writes)

    replayed = await chain.append(0, 9)
    assert replayed.status == 500 and replayed.payload == b""
    refusal = wire.find_refusal(replayed.message)
    assert refusal is not None and refusal.code == "gap", replayed.message
    assert replayed.writes == {} and replayed.event is None


# -- in process: the library's handler, no network -------------------------------------------


def test_in_process_append_writes_the_keys_and_the_event_reaches_completed() -> None:
    async def scenario() -> None:
        peer = await ShimPeer.in_process(new_chaincode(), CHAINCODE_ID)
        try:
            assert peer.registered_id == CHAINCODE_ID
            await _append_and_refuse(Chain(peer))
        finally:
            await peer.close()

    asyncio.run(scenario())


def test_range_queries_page_through_the_peer_as_fabric_records_them() -> None:
    async def scenario() -> None:
        peer = await ShimPeer.in_process(new_chaincode(), CHAINCODE_ID)
        chain = Chain(peer)
        try:
            await chain.create()
            assert (await chain.append(0, 150)).status == 200
            everything = await chain.run(wire.ENTRIES, "0", "1000")
            assert wire.EntryPage.from_json(everything.payload).leaves == LEAVES[:150]
            (scan,) = everything.range_reads  # 150 rows: two pages, QUERY_STATE_NEXT between
            assert scan.exhausted and len(scan.results) == 150
            assert (scan.start, scan.end) == (wire.entry_key(LOG, 0), wire.entry_key(LOG, 1000))
            info = _kv_rwset(everything).range_queries_info[0]
            assert (
                info.HasField("reads_merkle_hashes") and info.reads_merkle_hashes.max_degree == 50
            )
            few = await chain.run(wire.ENTRIES, "140", "5")
            assert wire.EntryPage.from_json(few.payload).leaves == LEAVES[140:145]
            info = _kv_rwset(few).range_queries_info[0]
            assert [r.key for r in info.raw_reads.kv_reads] == [
                wire.entry_key(LOG, i) for i in range(140, 145)
            ]
        finally:
            await peer.close()

    asyncio.run(scenario())


def test_transactions_run_concurrently_on_one_connection() -> None:
    async def scenario() -> None:
        peer = await ShimPeer.in_process(new_chaincode(), CHAINCODE_ID)
        chain = Chain(peer)
        try:
            await chain.create()
            await chain.append(0, 100)
            runs = [chain.run(wire.ENTRIES, str(i * 10), "10", commit=False) for i in range(10)]
            pages = await asyncio.gather(*runs, chain.run(wire.HEAD))
            for i, sim in enumerate(pages[:10]):
                assert wire.EntryPage.from_json(sim.payload).leaves == LEAVES[i * 10 : i * 10 + 10]
            assert wire.ChannelHead.from_json(pages[10].payload).size == 100
        finally:
            await peer.close()

    asyncio.run(scenario())


class _FailingWorld(World):
    """A state database that fails reading the head: the peer answers ERROR."""

    def get_at(self, key: str, height: Version | None) -> tuple[bytes, Version] | None:
        if key.endswith("~head"):
            raise RuntimeError("state database unavailable")
        return super().get_at(key, height)


def test_a_peer_error_reply_fails_the_transaction_rather_than_being_read_as_state() -> None:
    """The library hands an ERROR reply back as the value; read as state, its text would be
    "no head yet" or garbage. The chaincode's world state raises it instead."""

    async def scenario() -> None:
        peer = await ShimPeer.in_process(new_chaincode(), CHAINCODE_ID)
        chain = Chain(peer)
        try:
            await chain.create()
            failing = _FailingWorld()
            for key, value, _version in chain.world.range("", ""):
                failing.apply({key: value}, Version(1, 0))
            chain.world = failing
            sim = await chain.append(0, 3)
            assert sim.status == 500 and "state database unavailable" in sim.message
            assert wire.find_refusal(sim.message) is None
            assert sim.writes == {} and sim.event is None
        finally:
            await peer.close()

    asyncio.run(scenario())


# -- over gRPC: a real ibx ledger chaincode process ------------------------------------------


@dataclass
class Service:
    process: subprocess.Popen[str]
    address: str
    ready: str

    def stop(self) -> tuple[int, str]:
        """SIGTERM (unless it has exited), then the exit code and what it wrote after its
        ready line."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, rest = self.process.communicate(timeout=10)
        return self.process.returncode, rest


_GRPC_CORE_LOG = re.compile(r"[IWE]\d{4} ")
"""gRPC's C core's own log lines (here: the refused handshake of a peer without a client
certificate), not the service's."""


def _start(*options: str) -> Service:
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "ledger", "chaincode", "--address", "127.0.0.1:0",
         "--id", CHAINCODE_ID, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stderr is not None
    readable, _, _ = select.select([process.stderr], [], [], 30)
    line = process.stderr.readline() if readable else ""
    found = re.fullmatch(r"ibx ledger chaincode listening on (\S+) \(id (\S+)\)\n", line)
    if found is None:
        process.kill()
        _, rest = process.communicate()
        pytest.fail(f"no ready line: {line!r} {rest!r}")
    assert found.group(2) == CHAINCODE_ID
    return Service(process, found.group(1), line)


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    running = _start()
    yield running
    code, rest = running.stop()
    assert (code, rest) == (0, f"ibx ledger chaincode on {running.address} stopped (SIGTERM)\n")


def test_the_service_registers_with_its_id_and_runs_the_chaincode(service: Service) -> None:
    async def scenario() -> None:
        peer = await ShimPeer.dial(service.address, chaincode_id=CHAINCODE_ID)
        try:
            assert peer.registered_id == CHAINCODE_ID
            chain = Chain(peer)
            await _append_and_refuse(chain)
            pages = await asyncio.gather(  # concurrent transactions on the one stream
                *[chain.run(wire.ENTRIES, str(i), "3", commit=False) for i in range(6)]
            )
            for i, sim in enumerate(pages):
                assert wire.EntryPage.from_json(sim.payload).leaves == LEAVES[i : i + 3]
        finally:
            await peer.close()

    asyncio.run(scenario())


def test_a_service_registering_another_id_is_refused(service: Service) -> None:
    async def scenario() -> None:
        with pytest.raises(ShimProtocolError, match="registered as"):
            await ShimPeer.dial(service.address, chaincode_id="ibx-ledger_2:" + "cd" * 32)

    asyncio.run(scenario())


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, Any] | None, **kw: Any
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0] if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if kw.get("server"):
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if kw.get("client"):
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(item: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, the chaincode service's server pair and the peer's client pair (PEM files)."""
    where = tmp_path_factory.mktemp("chaincode-pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test chaincode CA", ca_key, None)
    files = {"ca": _pem(ca)}
    for role in ("server", "client", "stranger"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{role}_key"] = _pem(key)
        files[role] = _pem(_certificate(role, key, (ca.subject, ca_key), **{role: True}))
    paths = {}
    for name, data in files.items():
        paths[name] = where / f"{name}.pem"
        paths[name].write_bytes(data)
    return paths


async def _transaction_waiting_for_state(
    address: str, root: bytes, client_cert: bytes, client_key: bytes
) -> Any:
    """A raw peer stream that started a Head transaction and holds back the chaincode's
    GET_STATE reply: a transaction in flight in the service."""
    import grpc
    from fabric_protos.peer import chaincode_pb2, chaincode_shim_pb2

    from tests.ledger.fabric.shim_peer import _Grpc

    message = chaincode_shim_pb2.ChaincodeMessage
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=client_key, certificate_chain=client_cert
    )
    transport = _Grpc(grpc.aio.secure_channel(address, credentials))
    register = await transport.receive()
    assert register is not None and register.type == message.REGISTER
    await transport.send(message(type=message.REGISTERED))
    await transport.send(message(type=message.READY))
    payload = chaincode_pb2.ChaincodeInput(args=[wire.HEAD.encode(), LOG.encode()])
    await transport.send(
        message(
            type=message.TRANSACTION,
            payload=payload.SerializeToString(),
            txid="in-flight",
            channel_id="ibx-ledger",
        )
    )
    asked = await transport.receive()
    assert asked is not None and asked.type == message.GET_STATE
    return transport


def test_over_mutual_tls_and_sigterm_with_peers_connected_stops_at_once_and_quietly(
    pki: dict[str, Path],
) -> None:
    """Fabric's peer keeps its stream open (and may have a transaction running) when the
    service is stopped: SIGTERM ends the streams at once, exit 0, one line, no traceback."""
    running = _start(
        "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]),
        "--client-ca", str(pki["ca"]),
    )  # fmt: skip
    root = pki["ca"].read_bytes()
    cert, key = pki["client"].read_bytes(), pki["client_key"].read_bytes()
    took: list[float] = []

    async def scenario() -> None:
        peer = await ShimPeer.dial(
            running.address,
            chaincode_id=CHAINCODE_ID,
            root_cert=root,
            client_cert=cert,
            client_key=key,
        )
        in_flight = await _transaction_waiting_for_state(running.address, root, cert, key)
        try:
            chain = Chain(peer)
            assert (await chain.run(wire.HEAD)).message.startswith("ibx-ledger/no-log: ")
            assert (await chain.create()).status == 200
            with pytest.raises(ShimProtocolError):  # a peer without a client certificate
                await ShimPeer.dial(running.address, root_cert=root)
            started = time.monotonic()
            running.process.send_signal(signal.SIGTERM)
            answer = await asyncio.wait_for(in_flight.receive(), 5)  # the running one fails
            assert answer is not None and answer.txid == "in-flight"
            assert b"the chaincode service is stopping" in answer.payload
            assert await asyncio.wait_for(in_flight.receive(), 5) is None  # the stream ended
            with pytest.raises(ShimProtocolError):  # and the dialled peer's too
                await chain.run(wire.HEAD)
            while running.process.poll() is None and time.monotonic() - started < 5:
                await asyncio.sleep(0.01)
            took.append(time.monotonic() - started)
        finally:
            await in_flight.close()
            await peer.close()

    try:
        asyncio.run(scenario())
    finally:
        code, rest = running.stop()
    assert took and took[0] < 1.0, took
    assert code == 0, rest
    ours = [line for line in rest.splitlines() if not _GRPC_CORE_LOG.match(line)]
    assert ours == [f"ibx ledger chaincode on {running.address} stopped (SIGTERM)"], rest


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--address", "nowhere", "--id", CHAINCODE_ID], "is not HOST:PORT"),
        (["--address", "127.0.0.1:70000", "--id", CHAINCODE_ID], "is not HOST:PORT"),
        (["--address", "127.0.0.1:0", "--id", "has space"], "package id"),
        (["--address", "127.0.0.1:0", "--id", CHAINCODE_ID, "--tls-cert", "{server}"],
         "go together"),
        (["--address", "127.0.0.1:0", "--id", CHAINCODE_ID, "--client-ca", "{ca}"],
         "needs --tls-cert"),
        (["--address", "127.0.0.1:0", "--id", CHAINCODE_ID, "--tls-cert", "{server}",
          "--tls-key", "{client_key}"], "does not match"),
        (["--address", "127.0.0.1:0", "--id", CHAINCODE_ID, "--tls-cert", "{server_key}",
          "--tls-key", "{server_key}"], "no PEM certificate"),
        (["--address", "127.0.0.1:0", "--id", CHAINCODE_ID, "--ledger-vkey", "{ca}"],
         "not a ledger verifier key"),
    ],
    ids=["address", "port", "id", "cert-alone", "ca-alone", "mismatched-key", "key-as-cert",
         "bad-vkey"],
)  # fmt: skip
def test_bad_options_are_one_line_and_exit_2(
    pki: dict[str, Path], options: list[str], message: str
) -> None:
    argv = [o.format(**{k: str(v) for k, v in pki.items()}) for o in options]
    done = ibx("ledger", "chaincode", *argv)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert done.stdout == ""


def test_a_taken_port_is_one_line_and_exit_1() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = ibx("ledger", "chaincode", "--address", f"127.0.0.1:{port}", "--id", CHAINCODE_ID)
    assert done.returncode == 1, done
    assert done.stderr.startswith(f"ibx: cannot listen on 127.0.0.1:{port}")
    assert done.stderr.count("\n") == 1


def test_a_pinned_key_file_is_accepted(tmp_path: Path) -> None:
    vkey = tmp_path / "ledger.vkey"
    vkey.write_text(LEDGER.vkey() + "\n")
    from ledger.fabric.chaincode import ChaincodeServiceConfig

    config = ChaincodeServiceConfig.from_files(
        address="127.0.0.1:0",
        chaincode_id=CHAINCODE_ID,
        pinned_vkeys=[vkey],
        tls_cert=None,
        tls_key=None,
        client_ca=None,
    )
    assert config.pinned_vkeys == (LEDGER.vkey(),)


def test_a_peer_gone_mid_transaction_does_not_leave_the_chaincode_waiting() -> None:
    """The peer asks for a transaction, the chaincode asks for state, and the stream ends
    before the reply: the handler fails the waiting request and ends (the library's waits
    forever)."""
    from fabric_protos.peer import chaincode_pb2, chaincode_shim_pb2

    from ledger.fabric.chaincode import new_handler
    from tests.ledger.fabric.shim_peer import _InProcess

    message = chaincode_shim_pb2.ChaincodeMessage

    async def scenario() -> None:
        transport = _InProcess(new_handler(CHAINCODE_ID, new_chaincode()))
        register = await transport.receive()
        assert register is not None and register.type == message.REGISTER
        await transport.send(message(type=message.REGISTERED))
        await transport.send(message(type=message.READY))
        args = [wire.HEAD.encode(), LOG.encode()]
        payload = chaincode_pb2.ChaincodeInput(args=args).SerializeToString()
        await transport.send(
            message(type=message.TRANSACTION, payload=payload, txid="t1", channel_id="c")
        )
        asked = await transport.receive()
        assert asked is not None and asked.type == message.GET_STATE
        await transport.close()  # the stream ends; close() waits for the handler to finish

    asyncio.run(scenario())


def test_the_chaincode_library_leaves_the_process_logging_alone() -> None:
    """Its import calls logging.basicConfig(level=DEBUG) and logs every message: the
    chaincode module undoes the first and quiets the second."""
    probe = (
        "import logging, sys\n"
        "import ledger.fabric.chaincode as cc\n"
        "assert 'fabric_chaincode_python' not in sys.modules\n"
        "cc.new_chaincode()\n"
        "assert 'fabric_chaincode_python' in sys.modules\n"
        "root = logging.getLogger()\n"
        "print(root.level, len(root.handlers), logging.getLogger('asyncio').level,\n"
        "      logging.getLogger('asyncio').handlers)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(logging.WARNING), "0", str(logging.WARNING), "[]"]
