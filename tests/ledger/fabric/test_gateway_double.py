"""The Gateway double itself, through raw protobuf requests (no ibx client): it checks
what a Fabric peer checks, orders and validates as Fabric does, and survives an outage.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.peer import transaction_pb2
from grpc_status import rpc_status

from core.events import Event
from core.keys import Ed25519Signer
from ledger import Ledger, LedgerConfig, MemoryLedgerBackend
from ledger.fabric.wire import (
    APPEND,
    CREATE_LOG,
    HEAD,
    AppendBatch,
    ChannelHead,
    LogGenesis,
)
from tests.ledger.fabric.fabric_pki import FabricPki, Identity
from tests.ledger.fabric.gateway_double import GatewayDouble
from tests.ledger.fabric.raw_gateway import (
    RawProposal,
    endorse_request,
    evaluate_request,
    signed_commit_status_request,
    signed_proposal,
    submit_request,
)


@pytest.fixture
def stub(gateway_double: GatewayDouble, fabric_pki: FabricPki) -> Iterator[Any]:
    channel = grpc.secure_channel(
        gateway_double.address,
        grpc.ssl_channel_credentials(root_certificates=fabric_pki.tls_ca_pem),
    )
    try:
        yield gateway_pb2_grpc.GatewayStub(channel)
    finally:
        channel.close()


def _details(error: grpc.RpcError) -> list[Any]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found = []
    for packed in status.details:
        detail = gateway_pb2.ErrorDetail()
        assert packed.Unpack(detail)
        found.append(detail)
    return found


class Client:
    """Raw Gateway calls as one identity."""

    def __init__(self, stub: Any, double: GatewayDouble, identity: Identity) -> None:
        self.stub = stub
        self.double = double
        self.identity = identity

    def proposal(self, *args: bytes | str, **kwargs: Any) -> RawProposal:
        return signed_proposal(
            self.identity,
            self.double.channel,
            self.double.chaincode,
            [a.encode() if isinstance(a, str) else a for a in args],
            **kwargs,
        )

    def evaluate(self, *args: bytes | str) -> bytes:
        response = self.stub.Evaluate(evaluate_request(self.proposal(*args)), timeout=10)
        return bytes(response.result.payload)

    def endorse(self, *args: bytes | str) -> tuple[RawProposal, Any]:
        proposal = self.proposal(*args)
        response = self.stub.Endorse(endorse_request(proposal), timeout=10)
        return proposal, response.prepared_transaction

    def submit(self, proposal: RawProposal, prepared: Any) -> None:
        self.stub.Submit(submit_request(self.identity, proposal, prepared), timeout=10)

    def status(self, tx_id: str) -> tuple[int, int]:
        response = self.stub.CommitStatus(
            signed_commit_status_request(self.identity, self.double.channel, tx_id), timeout=10
        )
        return response.result, response.block_number

    def transact(self, *args: bytes | str) -> tuple[str, int, int]:
        proposal, prepared = self.endorse(*args)
        self.submit(proposal, prepared)
        code, block = self.status(proposal.tx_id)
        return proposal.tx_id, code, block


@pytest.fixture
def client(stub: Any, gateway_double: GatewayDouble, fabric_pki: FabricPki) -> Client:
    return Client(stub, gateway_double, fabric_pki.client)


@pytest.fixture
def log() -> str:
    """A log with its ledger (a fresh origin per test)."""
    return f"double.test/{uuid.uuid4().hex[:12]}"


@dataclass
class Log:
    """A ledger whose entries the tests put on the channel by hand."""

    ledger: Ledger
    backend: MemoryLedgerBackend

    @classmethod
    def of(cls, log: str, entries: int) -> Log:
        backend = MemoryLedgerBackend()
        ledger = Ledger(backend, Ed25519Signer.generate("ledger"), LedgerConfig(log))
        if entries:
            ledger.append([Event("demo.reading", "sensor", {"n": i}) for i in range(entries)])
        return cls(ledger, backend)

    @property
    def id(self) -> str:
        return self.ledger.config.origin

    def genesis(self) -> bytes:
        return LogGenesis(self.id, self.ledger.vkey()).to_json()

    def batch(self, start: int, end: int) -> bytes:
        leaves = tuple(leaf for _, leaf in self.backend.scan_entries(start, end))
        return AppendBatch(start, leaves, self.ledger.root_at(end)).to_json()


def _create(client: Client, log: Log) -> None:
    _, code, _ = client.transact(CREATE_LOG, log.id, log.genesis())
    assert code == transaction_pb2.VALID


def test_a_transaction_is_endorsed_ordered_committed_and_queried(client: Client, log: str) -> None:
    site = Log.of(log, 3)
    _create(client, site)
    tx_id, code, block = client.transact(APPEND, log, site.batch(0, 3))
    assert code == transaction_pb2.VALID
    assert block == client.double.height - 1
    head = ChannelHead.from_json(client.evaluate(HEAD, log))
    assert (head.size, head.root) == (3, site.ledger.root_at(3))
    assert client.double.seen("Submit")[-1] == tx_id
