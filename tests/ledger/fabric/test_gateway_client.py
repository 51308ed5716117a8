"""The Fabric Gateway client against the in-process Gateway double (real gRPC, real
protobufs, the real chaincode): round trips, retries with the same transaction id,
MVCC conflicts, too few endorsers, chaincode refusals, TLS, events, an outage."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from core.events import Event
from core.keys import Ed25519Signer
from ledger import Ledger, LedgerConfig, MemoryLedgerBackend
from ledger.fabric import wire
from ledger.fabric.config import FabricConfig
from ledger.fabric.errors import (
    ChaincodeRefusedError,
    CommitConflictError,
    EndorsementError,
    FabricConfigError,
    FabricError,
    FabricUnavailableError,
)
from ledger.fabric.gateway import GatewayChannel, GatewayClient, open_channel
from ledger.fabric.identity import FabricIdentity
from tests.ledger.fabric.conftest import FabricTarget
from tests.ledger.fabric.fabric_committer import VALID
from tests.ledger.fabric.fabric_pki import FabricPki
from tests.ledger.fabric.gateway_double import GatewayDouble

ConfigMaker = Callable[..., FabricConfig]


class Site:
    """A real ledger (memory backend) whose entries and checkpoints go to the channel."""

    def __init__(self, log: str) -> None:
        seed = hashlib.sha256(f"gateway-client:{log}".encode()).digest()
        self.log = log
        self.ledger = Ledger(
            MemoryLedgerBackend(), Ed25519Signer("ledger-key", seed), LedgerConfig(origin=log)
        )

    def grow(self, n: int) -> wire.AppendBatch:
        """Append ``n`` entries; the batch that ships them (with the signed checkpoint)."""
        start = self.ledger.size()
        self.ledger.append([Event("test.entry", "tester", {"i": start + i}) for i in range(n)])
        leaves = tuple(e.leaf_input for e in self.ledger.entries(start, n))
        end = self.ledger.size()
        return wire.AppendBatch(
            start, leaves, self.ledger.root_at(end), self.ledger.checkpoint().to_text()
        )


@pytest.fixture
def site() -> Site:
    return Site(FabricTarget.new_log_id("client"))


def _client(config: FabricConfig, **changes: float) -> GatewayClient:
    identity = FabricIdentity.from_files(config.cert, config.key, config.msp_id)
    return GatewayClient(
        config.gateway,
        config.tls_root.read_bytes(),
        identity,
        server_name=config.server_name,
        timeout=float(changes.get("timeout", config.timeout)),
        retries=int(changes.get("retries", config.retries)),
        backoff=float(changes.get("backoff", 0.01)),
    )


@pytest.fixture
def channel(fabric_config: ConfigMaker, site: Site) -> Iterator[GatewayChannel]:
    config = fabric_config()
    with _client(config) as client:
        yield GatewayChannel(client, config.channel, config.chaincode, site.log)


@pytest.fixture
def target_channel(fabric_target: FabricTarget, site: Site) -> Iterator[GatewayChannel]:
    """The site's log through the client on the double, then (marked ``fabric``) a real
    network."""
    config = fabric_target()
    with _client(config) as client:
        yield GatewayChannel(client, config.channel, config.chaincode, site.log)


def test_evaluate_and_submit_round_trip(fabric_target: FabricTarget, site: Site) -> None:
    channel = open_channel(fabric_target(), site.log)
    try:
        assert channel.genesis() is None
        with pytest.raises(ChaincodeRefusedError) as refused:
            channel.head()
        assert refused.value.refusal.code == "no-log"
        genesis = channel.create(site.ledger.vkey())
        assert genesis == wire.LogGenesis(site.log, site.ledger.vkey())
        assert channel.genesis() == genesis
        assert channel.create(site.ledger.vkey()) == genesis  # idempotent
        assert channel.head().size == 0

        first, second = site.grow(3), site.grow(2)
        head = channel.append(first)
        assert (head.size, head.root) == (3, site.ledger.root_at(3))
        head = channel.append(second)
        assert (head.size, head.root, head.checkpoint) == (
            5,
            site.ledger.root_at(5),
            second.checkpoint,
        )
        assert channel.head() == head
        assert channel.entries(0, 10) == wire.EntryPage(0, first.leaves + second.leaves)
        assert channel.entries(4, 10).leaves == second.leaves[1:]
    finally:
        channel.close()


def test_submit_returns_the_block_and_the_endorsed_payload(
    fabric_config: ConfigMaker, gateway_double: GatewayDouble, site: Site
) -> None:
    config = fabric_config()
    with _client(config) as client:
        genesis = wire.LogGenesis(site.log, site.ledger.vkey())
        submitted = client.submit(
            config.channel,
            config.chaincode,
            [wire.CREATE_LOG.encode(), site.log.encode(), genesis.to_json()],
        )
    assert wire.LogGenesis.from_json(submitted.payload) == genesis
    assert gateway_double.status(submitted.tx_id) == (VALID, submitted.block)
    assert gateway_double.seen("Submit")[-1] == submitted.tx_id


@pytest.mark.parametrize(
    ("method", "code", "after"),
    [
        ("Endorse", grpc.StatusCode.UNAVAILABLE, False),
        ("Submit", grpc.StatusCode.UNAVAILABLE, True),  # ordered, but the answer was lost
        ("Submit", grpc.StatusCode.RESOURCE_EXHAUSTED, False),
        ("CommitStatus", grpc.StatusCode.DEADLINE_EXCEEDED, False),
    ],
    ids=["endorse-unavailable", "submit-answer-lost", "submit-exhausted", "status-deadline"],
)
def test_a_transient_failure_is_retried_with_the_same_transaction_id(
    channel: GatewayChannel,
    gateway_double: GatewayDouble,
    site: Site,
    method: str,
    code: grpc.StatusCode,
    after: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel.create(site.ledger.vkey())
    batch = site.grow(4)
    before = len(gateway_double.seen(method))
    gateway_double.fail_next(method, code, times=2, after=after)
    with caplog.at_level(logging.DEBUG, logger="ledger.fabric"):
        head = channel.append(batch)
    resends = [r.getMessage() for r in caplog.records if "resending" in r.getMessage()]
    assert len(resends) == 2
    assert not any("PRIVATE KEY" in m or "CERTIFICATE" in m for m in caplog.messages)
    assert head.size == 4
    tx_ids = gateway_double.seen(method)[before:]
    assert len(tx_ids) == 3
    assert len(set(tx_ids)) == 1
    status = gateway_double.status(tx_ids[0])
    assert status is not None and status[0] == VALID
    # stored once: the channel holds exactly the batch
    assert channel.head().size == 4
    assert channel.entries(0, 100).leaves == batch.leaves


def test_a_gateway_that_keeps_failing_is_unavailable(
    fabric_config: ConfigMaker, gateway_double: GatewayDouble, site: Site
) -> None:
    config = fabric_config()
    gateway_double.fail_next("Evaluate", grpc.StatusCode.UNAVAILABLE, times=3)
    with _client(config, retries=2) as client:
        channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
        with pytest.raises(FabricUnavailableError, match=r"did not answer: UNAVAILABLE") as info:
            channel.genesis()
    assert config.gateway in str(info.value)


def test_an_mvcc_conflict_is_a_commit_conflict(
    channel: GatewayChannel, gateway_double: GatewayDouble, site: Site
) -> None:
    channel.create(site.ledger.vkey())
    batch = site.grow(2)
    # another shipper's identical batch commits first: ours read the old head
    gateway_double.compete_next([wire.APPEND.encode(), site.log.encode(), batch.to_json()])
    with pytest.raises(CommitConflictError) as info:
        channel.append(batch)
    assert info.value.code == "MVCC_READ_CONFLICT"
    assert gateway_double.status(info.value.tx_id) is not None
    # re-read the head and go on: the channel holds the batch once
    assert channel.head().size == 2
    assert channel.append(site.grow(1)).size == 3


def test_two_shippers_racing_store_the_batch_once(fabric_target: FabricTarget, site: Site) -> None:
    """Two clients submit the same batch at once: one commits; the other is refused at
    endorsement (``gap``) or, endorsed on the old head, committed invalid (MVCC)."""
    config = fabric_target()
    clients = [_client(config), _client(config)]
    channels = [GatewayChannel(c, config.channel, config.chaincode, site.log) for c in clients]
    channels[0].create(site.ledger.vkey())
    batch = site.grow(3)
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def ship(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = channels[i].append(batch).size
        except (CommitConflictError, ChaincodeRefusedError) as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=ship, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes, key=lambda o: isinstance(o, int))[1] == 3
    loser = next(o for o in outcomes if not isinstance(o, int))
    assert isinstance(loser, CommitConflictError) or (
        isinstance(loser, ChaincodeRefusedError) and loser.refusal.code == "gap"
    ), loser
    assert channels[0].entries(0, 10).leaves == batch.leaves
    for channel in channels:
        channel.close()


def test_too_few_endorsers_names_each_peer(
    channel: GatewayChannel, gateway_double: GatewayDouble, site: Site
) -> None:
    gateway_double.endorsers_required = 3
    gateway_double.endorsers_available = 1
    with pytest.raises(EndorsementError) as info:
        channel.create(site.ledger.vkey())
    details = info.value.details
    assert details, "the per-peer ErrorDetails are read from the status trailer"
    addresses = {d.address for d in details}
    assert addresses <= {peer.address for peer in gateway_double.peers}
    assert {d.msp_id for d in details} <= {"Org2MSP", "Org3MSP"}
    for detail in details:
        assert detail.address in str(info.value)
        assert detail.message
    gateway_double.reset()
    assert channel.genesis() is None  # nothing was committed


@pytest.mark.parametrize(
    ("attack", "code"),
    [("gap", "gap"), ("root", "root-mismatch"), ("checkpoint", "bad-checkpoint")],
)
def test_a_chaincode_refusal_carries_its_code(
    target_channel: GatewayChannel, site: Site, attack: str, code: str
) -> None:
    channel = target_channel
    channel.create(site.ledger.vkey())
    batch = site.grow(3)
    forged = {
        "gap": dataclasses.replace(batch, start=1, leaves=batch.leaves[1:]),
        "root": dataclasses.replace(batch, root=bytes(32), checkpoint=""),
        "checkpoint": dataclasses.replace(
            batch, checkpoint=Site("someone-else").grow(3).checkpoint
        ),
    }[attack]
    with pytest.raises(ChaincodeRefusedError) as info:
        channel.append(forged)
    assert info.value.refusal.code == code
    assert info.value.refusal.message() in str(info.value)
    assert channel.head().size == 0


def test_a_wrong_tls_root_is_refused(
    fabric_target: FabricTarget, tmp_path: Path, site: Site
) -> None:
    stranger = tmp_path / "stranger-tls-root.pem"
    stranger.write_bytes(FabricPki.generate(organisations=1).tls_ca_pem)
    config = dataclasses.replace(fabric_target(), tls_root=stranger)
    started = time.monotonic()
    with _client(config) as client:
        channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
        with pytest.raises(FabricConfigError, match="TLS verification"):
            channel.genesis()
    assert time.monotonic() - started < 5  # refused, not retried as an outage


def test_a_wrong_channel_name_is_a_config_error_at_once(
    fabric_target: FabricTarget, site: Site
) -> None:
    """A real peer answers a channel it has not joined with UNAVAILABLE ("failed to get
    config for channel [...]"): a configuration error, named, not retried as an outage."""
    name = FabricTarget.new_log_id("nosuch")
    config = fabric_target(channel=name)
    double = fabric_target.double
    evaluated = len(double.seen("Evaluate")) if double else 0
    started = time.monotonic()
    with _client(config, retries=5, backoff=0.5) as client:  # retried, it would take > 15 s
        channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
        with pytest.raises(FabricConfigError) as info:
            channel.genesis()
        assert f"has not joined channel {name!r} (is the channel name right?)" in str(info.value)
        assert f"UNAVAILABLE: failed to get config for channel [{name}]" in str(info.value)
        with pytest.raises(FabricConfigError, match=f"no peer of channel {name!r} runs"):
            channel.create(site.ledger.vkey())
        with pytest.raises(FabricConfigError, match=f"has not joined channel {name!r}"):
            next(iter(channel.events(0)))
    assert time.monotonic() - started < 3
    if double is not None:
        assert len(double.seen("Evaluate")) == evaluated + 1  # asked once


def test_an_unknown_chaincode_is_a_config_error(fabric_target: FabricTarget, site: Site) -> None:
    name = FabricTarget.new_log_id("nosuchcc")
    config = fabric_target(chaincode=name)
    with _client(config) as client:
        channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
        runs = f"no peer of channel {config.channel!r} runs chaincode {name!r}"
        with pytest.raises(FabricConfigError, match=runs) as evaluating:
            channel.genesis()
        assert f"no peers available to evaluate chaincode {name}" in str(evaluating.value)
        with pytest.raises(FabricConfigError, match=runs) as endorsing:
            channel.create(site.ledger.vkey())
        assert f"No metadata was found for chaincode {name}" in str(endorsing.value)


def test_a_resend_while_the_first_attempt_still_runs_gives_up_unavailable(
    fabric_config: ConfigMaker, gateway_double: GatewayDouble, site: Site
) -> None:
    """The call's deadline passes while the chaincode still runs the proposal; the resend
    (same transaction id) is refused "txid ... exists". The client gives up at once
    (unavailable) instead of waiting: the tx id was never signed for ordering, and the next
    try proposes anew, stored once."""
    config = fabric_config()
    with _client(config) as client:
        channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
        channel.create(site.ledger.vkey())
    batch = site.grow(3)
    endorsed, submitted = len(gateway_double.seen("Endorse")), len(gateway_double.seen("Submit"))
    gateway_double.hold_chaincode()
    with _client(config, timeout=0.3, retries=3) as client:
        channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
        started = time.monotonic()
        with pytest.raises(FabricUnavailableError, match="still running in the chaincode"):
            channel.append(batch)
        with pytest.raises(FabricUnavailableError, match=r"\(Evaluate\) outlived its deadline"):
            channel.head()
        assert time.monotonic() - started < 3
    tx_ids = gateway_double.seen("Endorse")[endorsed:]
    assert len(tx_ids) == 2 and len(set(tx_ids)) == 1  # sent, resent once, given up
    assert gateway_double.seen("Submit")[submitted:] == []
    gateway_double.release_chaincode()
    with _client(config) as client:  # the shipper's next pass
        channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
        assert channel.append(batch).size == 3
        assert channel.entries(0, 100).leaves == batch.leaves
    assert gateway_double.status(tx_ids[0]) is None  # the abandoned one never ordered


def test_a_wrong_server_name_is_refused(fabric_config: ConfigMaker, site: Site) -> None:
    config = fabric_config(server_name="peer0.org9.example.com")
    with (
        _client(config) as client,
        pytest.raises(FabricConfigError, match="TLS verification"),
    ):
        GatewayChannel(client, config.channel, config.chaincode, site.log).genesis()


def test_events_arrive_in_order_from_a_start_block(fabric_target: FabricTarget, site: Site) -> None:
    config = fabric_target()
    client = _client(config)
    channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
    genesis = wire.LogGenesis(site.log, site.ledger.vkey())
    start = client.submit(
        config.channel, config.chaincode, [b"CreateLog", site.log.encode(), genesis.to_json()]
    ).block
    other = Site(FabricTarget.new_log_id("other"))
    GatewayChannel(client, config.channel, config.chaincode, other.log).create(other.ledger.vkey())
    channel.append(site.grow(2))
    channel.append(site.grow(3))

    events = list(itertools.islice(channel.events(start), 3))
    assert [(e.name, e.start, e.size) for e in events] == [
        (wire.EVENT_CREATED, 0, 0),
        (wire.EVENT_APPENDED, 0, 2),
        (wire.EVENT_APPENDED, 2, 5),
    ]
    assert {e.log for e in events} == {site.log}  # the other log's event is filtered out
    blocks = [e.block for e in events]
    assert blocks == sorted(set(blocks)) and blocks[0] >= start
    assert events[-1].root == site.ledger.root_at(5)
    assert all(len(e.tx_id) == 64 for e in events)

    assert blocks[0] == start
    if fabric_target.double is not None:  # a stream that breaks is reopened where it stopped
        fabric_target.double.fail_next("ChaincodeEvents", grpc.StatusCode.UNAVAILABLE, times=2)
    later = list(itertools.islice(channel.events(blocks[1]), 2))
    assert [(e.size, e.block) for e in later] == [(2, blocks[1]), (5, blocks[2])]
    channel.close()


def test_the_events_iterator_ends_when_the_client_closes(
    fabric_config: ConfigMaker, gateway_double: GatewayDouble, site: Site
) -> None:
    config = fabric_config()
    client = _client(config)
    channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
    seen: list[wire.LedgerEvent] = []
    opened = len(gateway_double.seen("ChaincodeEvents"))
    reader = threading.Thread(target=lambda: seen.extend(channel.events()))
    reader.start()
    deadline = time.monotonic() + 5
    while len(gateway_double.seen("ChaincodeEvents")) == opened:  # the stream is open
        assert time.monotonic() < deadline
        time.sleep(0.005)
    channel.close()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert seen == []
    with pytest.raises(FabricError, match="is closed"):
        channel.head()


def test_an_outage_then_the_same_client_resumes(
    fabric_config: ConfigMaker, gateway_double: GatewayDouble, site: Site
) -> None:
    config = fabric_config()
    with _client(config, retries=2, backoff=0.02) as client:
        channel = GatewayChannel(client, config.channel, config.chaincode, site.log)
        channel.create(site.ledger.vkey())
        gateway_double.stop()
        batch = site.grow(2)
        with pytest.raises(FabricUnavailableError, match="did not answer"):
            channel.append(batch)
        gateway_double.start()
        # the channel reconnects within its reconnect backoff (at most 1 s here)
        client.retries = 10
        assert channel.head().size == 0
        assert channel.append(batch).size == 2
