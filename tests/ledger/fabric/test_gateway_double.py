"""The Gateway double itself, through raw protobuf requests (no ibx client): it checks
what a Fabric peer checks, orders and validates as Fabric does, and survives an outage.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2
from grpc_status import rpc_status

from core.events import Event
from core.keys import Ed25519Signer
from ledger import Ledger, LedgerConfig, MemoryLedgerBackend
from ledger.fabric.config import FabricConfig
from ledger.fabric.identity import FabricIdentity
from ledger.fabric.proposal import PreparedTransaction
from ledger.fabric.proposal import signed_chaincode_events_request as ledger_events_request
from ledger.fabric.proposal import signed_commit_status_request as ledger_commit_status_request
from ledger.fabric.proposal import signed_proposal as ledger_signed_proposal
from ledger.fabric.wire import (
    APPEND,
    CREATE_LOG,
    EVENT_APPENDED,
    HEAD,
    AppendBatch,
    ChannelHead,
    LogGenesis,
)
from tests.ledger.fabric.conftest import FabricTarget
from tests.ledger.fabric.fabric_pki import FabricPki, Identity, Organisation
from tests.ledger.fabric.gateway_double import GatewayDouble
from tests.ledger.fabric.raw_gateway import (
    RawProposal,
    endorse_request,
    evaluate_request,
    signed_commit_status_request,
    signed_events_request,
    signed_proposal,
    submit_request,
)


@pytest.fixture
def stub(gateway_double: GatewayDouble, fabric_pki: FabricPki) -> Iterator[Any]:
    channel = grpc.secure_channel(
        gateway_double.address,
        grpc.ssl_channel_credentials(root_certificates=fabric_pki.tls_ca_pem),
        options=[("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50)],
    )
    try:
        yield gateway_pb2_grpc.GatewayStub(channel)
    finally:
        channel.close()


def _details(error: grpc.RpcError) -> list[Any]:
    status = rpc_status.from_call(error)
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

    def submit(self, proposal: RawProposal, prepared: Any, *, wait: bool = False) -> None:
        self.stub.Submit(
            submit_request(self.identity, proposal, prepared), timeout=10, wait_for_ready=wait
        )

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


def test_a_bad_proposal_signature_is_refused_as_a_peer_refuses_it(
    client: Client, fabric_pki: FabricPki, log: str
) -> None:
    proposal = client.proposal(HEAD, log)
    forged = proposal_pb2.SignedProposal(
        proposal_bytes=proposal.signed.proposal_bytes,
        signature=fabric_pki.peers[0].sign(proposal.signed.proposal_bytes),
    )
    tampered = RawProposal(proposal.tx_id, proposal.channel, forged)
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.Evaluate(evaluate_request(tampered), timeout=10)
    error = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    channel = client.double.channel
    denied = f"error validating proposal: access denied: channel [{channel}] creator org [Org1MSP]"
    assert error.details() == f"evaluate call to endorser returned error: {denied}"
    [detail] = _details(error)
    assert (detail.msp_id, detail.message) == ("Org1MSP", denied)
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.Endorse(endorse_request(tampered), timeout=10)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert [d.message for d in _details(caught.value)] == [denied]


def test_a_high_s_signature_is_refused(client: Client, log: str) -> None:
    proposal = client.proposal(HEAD, log)
    high = proposal_pb2.SignedProposal(
        proposal_bytes=proposal.signed.proposal_bytes,
        signature=client.identity.sign_high_s(proposal.signed.proposal_bytes),
    )
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.Evaluate(
            evaluate_request(RawProposal(proposal.tx_id, proposal.channel, high)), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "access denied" in caught.value.details()


def test_an_unknown_msp_and_a_wrong_tx_id_are_refused(client: Client, stub: Any, log: str) -> None:
    stranger = Organisation.generate("Org9MSP", "org9.example.com").issue("mallory")
    outsider = Client(stub, client.double, stranger)
    with pytest.raises(grpc.RpcError) as caught:
        outsider.evaluate(HEAD, log)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "creator org unknown, creator is malformed" in caught.value.details()
    # A certificate with a channel MSP's id but not issued by that MSP's CA.
    impostor = Identity("Org1MSP", stranger.certificate_pem, stranger.private_key)
    with pytest.raises(grpc.RpcError) as caught:
        Client(stub, client.double, impostor).evaluate(HEAD, log)
    assert "access denied: channel" in caught.value.details()
    wrong = client.proposal(HEAD, log, tx_id="0" * 64)
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.Evaluate(evaluate_request(wrong), timeout=10)
    assert "incorrectly computed txid" in caught.value.details()


def test_a_chaincode_refusal_comes_back_in_fabric_wrapping(client: Client, log: str) -> None:
    site = Log.of(log, 4)
    _create(client, site)
    with pytest.raises(grpc.RpcError) as caught:
        client.endorse(APPEND, log, site.batch(2, 4))  # a gap: the channel is empty
    error = caught.value
    assert error.code() == grpc.StatusCode.ABORTED
    assert error.details() == "failed to endorse transaction, see attached details for more info"
    [detail] = _details(error)
    assert detail.message.startswith("chaincode response 500, ibx-ledger/gap: ")
    assert detail.address == client.double.peers[0].address
    with pytest.raises(grpc.RpcError) as caught:
        client.evaluate("Genesis", "no.such/log")
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    assert "chaincode response 500, ibx-ledger/no-log: " in caught.value.details()


def test_two_endorsed_transactions_conflict_at_commit(client: Client, log: str) -> None:
    site = Log.of(log, 2)
    _create(client, site)
    first = client.endorse(APPEND, log, site.batch(0, 1))
    second = client.endorse(APPEND, log, site.batch(0, 2))  # both read the same head
    client.submit(*first)
    client.submit(*second)
    assert client.status(first[0].tx_id)[0] == transaction_pb2.VALID
    code, block = client.status(second[0].tx_id)
    assert code == transaction_pb2.MVCC_READ_CONFLICT
    assert ChannelHead.from_json(client.evaluate(HEAD, log)).size == 1  # nothing of it applied
    assert client.double.status(second[0].tx_id) == (code, block)


def test_a_held_block_and_a_competing_transaction_conflict_deterministically(
    client: Client, log: str
) -> None:
    site = Log.of(log, 3)
    _create(client, site)
    client.double.batch_size = 2
    client.double.hold_commits()
    first = client.endorse(APPEND, log, site.batch(0, 1))
    second = client.endorse(APPEND, log, site.batch(0, 1))
    client.submit(*first)
    client.submit(*second)
    assert client.double.status(first[0].tx_id) is None  # ordered, not committed
    client.double.release_commits()
    valid, block = client.status(first[0].tx_id)
    assert valid == transaction_pb2.VALID
    # One block: the second read the head the first wrote before it in that block.
    assert client.status(second[0].tx_id) == (transaction_pb2.MVCC_READ_CONFLICT, block)
    # The double commits its own append of 1..2 just before ordering ours of 1..3.
    client.double.compete_next([APPEND.encode(), log.encode(), site.batch(1, 2)])
    proposal, prepared = client.endorse(APPEND, log, site.batch(1, 3))
    client.submit(proposal, prepared)
    assert client.status(proposal.tx_id)[0] == transaction_pb2.MVCC_READ_CONFLICT
    assert ChannelHead.from_json(client.evaluate(HEAD, log)).size == 2


def test_a_resubmitted_transaction_is_a_duplicate_and_the_first_status_stays(
    client: Client, log: str
) -> None:
    site = Log.of(log, 1)
    _create(client, site)
    proposal, prepared = client.endorse(APPEND, log, site.batch(0, 1))
    # The first Submit is ordered but its answer is lost; the client sends it again.
    client.double.fail_next("Submit", grpc.StatusCode.UNAVAILABLE, after=True)
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(proposal, prepared)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    client.submit(proposal, prepared)
    code, block = client.status(proposal.tx_id)
    assert code == transaction_pb2.VALID
    assert client.double.seen("Submit")[-2:] == [proposal.tx_id, proposal.tx_id]
    duplicates = [
        tx.code
        for b in client.double.committer.blocks[block:]
        for tx in b.transactions
        if tx.tx_id == proposal.tx_id
    ]
    assert duplicates == [transaction_pb2.VALID, transaction_pb2.DUPLICATE_TXID]
    assert ChannelHead.from_json(client.evaluate(HEAD, log)).size == 1
    with pytest.raises(grpc.RpcError) as caught:  # a committed tx id is not endorsed again
        client.stub.Endorse(endorse_request(proposal), timeout=10)
    assert "duplicate transaction found" in _details(caught.value)[0].message


@pytest.mark.parametrize("endorser", ["peer", "client"], ids=["kept", "self-endorsed"])
def test_a_tampered_envelope_fails_the_endorsement_policy(
    client: Client, log: str, endorser: str
) -> None:
    site = Log.of(log, 2)
    _create(client, site)
    proposal, prepared = client.endorse(APPEND, log, site.batch(0, 1))
    payload = common_pb2.Payload.FromString(prepared.payload)
    tx = transaction_pb2.Transaction.FromString(payload.data)
    action = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
    response = proposal_response_pb2.ProposalResponsePayload.FromString(
        action.action.proposal_response_payload
    )
    cc_action = proposal_pb2.ChaincodeAction.FromString(response.extension)
    cc_action.results = cc_action.results.replace(b"ibx~", b"ibY~")  # other keys written
    response.extension = cc_action.SerializeToString()
    action.action.proposal_response_payload = response.SerializeToString()
    if endorser == "client":  # the client signs the forged response itself, as a member
        signer = client.identity.serialized()
        signature = client.identity.sign(action.action.proposal_response_payload + signer)
        action.action.endorsements[0].endorser = signer
        action.action.endorsements[0].signature = signature
    tx.actions[0].payload = action.SerializeToString()
    payload.data = tx.SerializeToString()
    forged = common_pb2.Envelope(payload=payload.SerializeToString())
    client.submit(proposal, forged)
    assert client.status(proposal.tx_id)[0] == transaction_pb2.ENDORSEMENT_POLICY_FAILURE
    assert ChannelHead.from_json(client.evaluate(HEAD, log)).size == 0


def test_too_few_endorsers_fail_with_one_detail_per_peer(client: Client, log: str) -> None:
    double = client.double
    double.endorsers_required, double.endorsers_available = 3, 1
    with pytest.raises(grpc.RpcError) as caught:
        client.endorse(CREATE_LOG, log, Log.of(log, 0).genesis())
    error = caught.value
    assert error.code() == grpc.StatusCode.ABORTED
    assert error.details() == (
        "failed to collect enough transaction endorsements, see attached details for more info"
    )
    details = _details(error)
    assert [(d.address, d.msp_id) for d in details] == [
        (double.peers[1].address, "Org2MSP"),
        (double.peers[2].address, "Org3MSP"),
    ]
    assert all("connection refused" in d.message for d in details)
    double.endorsers_available = 3  # every organisation endorses: valid under the policy
    _create(client, Log.of(log, 0))


def test_commit_status_and_events_need_a_member_signature(
    client: Client, fabric_pki: FabricPki
) -> None:
    request = signed_commit_status_request(client.identity, client.double.channel, "0" * 64)
    forged = gateway_pb2.SignedCommitStatusRequest(
        request=request.request, signature=fabric_pki.peers[1].sign(request.request)
    )
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.CommitStatus(forged, timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details().startswith(  # as a real peer words it
        "Failed evaluating policy on signed data during check policy on channel "
        f"[{client.double.channel}] with policy [/Channel/Application/Readers]"
    )
    events = signed_events_request(
        client.identity, client.double.channel, client.double.chaincode, 0
    )
    stream = client.stub.ChaincodeEvents(
        gateway_pb2.SignedChaincodeEventsRequest(request=events.request, signature=b"\x30\x00"),
        timeout=10,
    )
    with pytest.raises(grpc.RpcError) as caught:
        next(stream)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_events_stream_from_a_start_block(client: Client, log: str) -> None:
    site = Log.of(log, 3)
    start = client.double.height
    _create(client, site)
    appended = [client.transact(APPEND, log, site.batch(i, i + 1)) for i in range(3)]
    stream = client.stub.ChaincodeEvents(
        signed_events_request(
            client.identity, client.double.channel, client.double.chaincode, start
        ),
        timeout=10,
    )
    got: list[tuple[int, str, str]] = []
    for response in stream:
        got.extend((response.block_number, e.event_name, e.tx_id) for e in response.events)
        if len(got) == 4:
            break
    stream.cancel()
    assert got[0][:2] == (start, "ibx.ledger.created")
    assert got[1:] == [(block, EVENT_APPENDED, tx_id) for tx_id, _, block in appended]


def test_stop_and_start_on_the_same_port_loses_nothing(
    client: Client, log: str, fabric_pki: FabricPki
) -> None:
    double = client.double
    site = Log.of(log, 2)
    _create(client, site)
    address = double.address
    proposal, prepared = client.endorse(APPEND, log, site.batch(0, 2))
    double.stop()
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(proposal, prepared)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    double.start()
    assert double.address == address
    client.submit(proposal, prepared, wait=True)  # the same transaction, after the outage
    assert client.status(proposal.tx_id)[0] == transaction_pb2.VALID
    assert ChannelHead.from_json(client.evaluate(HEAD, log)).size == 2


# -- names a peer does not know, and a resent proposal still executing -----------------------


def _gateway_stub(config: FabricConfig) -> tuple[Any, Any]:
    options = []
    if config.server_name:
        options.append(("grpc.ssl_target_name_override", config.server_name))
    connection = grpc.secure_channel(
        config.gateway,
        grpc.ssl_channel_credentials(root_certificates=config.tls_root.read_bytes()),
        options=options,
    )
    return connection, gateway_pb2_grpc.GatewayStub(connection)


def _refusal(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, bool]:
    """What a refused call answered: code, message, and whether it sent the
    ``grpc-status-details-bin`` trailer."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    trailer = any(key == "grpc-status-details-bin" for key, _ in error.trailing_metadata() or ())
    return error.code(), error.details(), trailer


def test_unknown_channel_and_chaincode_are_answered_as_a_real_peer_answers(
    fabric_target: FabricTarget,
) -> None:
    """The exact codes and messages of a real peer (``internal/pkg/gateway``, checked on a
    real network with ``-m fabric``), and no details trailer: an unknown channel is
    UNAVAILABLE on Evaluate, which a client must not take for an outage."""
    config = fabric_target()
    identity = FabricIdentity.from_files(config.cert, config.key, config.msp_id)
    channel, chaincode = config.channel, config.chaincode
    no_channel, no_chaincode = f"nosuch-{uuid.uuid4().hex[:8]}", f"nosuchcc-{uuid.uuid4().hex[:8]}"
    connection, stub = _gateway_stub(config)

    def proposal(on_channel: str, named: str, *args: bytes) -> Any:
        return ledger_signed_proposal(
            identity, on_channel, named, [HEAD.encode(), b"x/y", *args], now=datetime.now(UTC)
        )

    no_config = (
        f"failed to get config for channel [{no_channel}]: "
        f"could not get last config for channel {no_channel}"
    )
    no_plan = "no combination of peers can be derived which satisfy the endorsement policy: "
    try:
        expected = {
            "evaluate-channel": (grpc.StatusCode.UNAVAILABLE, no_config),
            "endorse-channel": (
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{no_plan}No metadata was found for chaincode {chaincode} in channel {no_channel}",
            ),
            "evaluate-chaincode": (
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no peers available to evaluate chaincode {no_chaincode} in channel {channel}",
            ),
            "endorse-chaincode": (
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{no_plan}No metadata was found for chaincode {no_chaincode} in channel {channel}",
            ),
            "submit-channel": (grpc.StatusCode.FAILED_PRECONDITION, no_config),
            "status-channel": (
                grpc.StatusCode.PERMISSION_DENIED,
                f"Failed to get policy manager for channel [{no_channel}]",
            ),
            "events-channel": (
                grpc.StatusCode.PERMISSION_DENIED,
                f"Failed to get policy manager for channel [{no_channel}]",
            ),
        }
        # A signed envelope to submit to an unknown channel: endorsed on the real one,
        # never ordered (a fresh log's creation).
        site = Log.of(fabric_target.new_log_id("double"), 0)
        create = ledger_signed_proposal(
            identity, channel, chaincode, [CREATE_LOG.encode(), site.id.encode(), site.genesis()],
            now=datetime.now(UTC),
        )  # fmt: skip
        endorsed = stub.Endorse(create.endorse_request(), timeout=10)
        submit = PreparedTransaction.check(endorsed.prepared_transaction, create).submit_request(
            identity
        )
        submit.channel_id = no_channel
        status = ledger_commit_status_request(identity, no_channel, create.tx_id)
        events = ledger_events_request(identity, no_channel, chaincode, 0)
        calls = {
            "evaluate-channel": lambda: stub.Evaluate(
                proposal(no_channel, chaincode).evaluate_request(), timeout=10
            ),
            "endorse-channel": lambda: stub.Endorse(
                proposal(no_channel, chaincode).endorse_request(), timeout=10
            ),
            "evaluate-chaincode": lambda: stub.Evaluate(
                proposal(channel, no_chaincode).evaluate_request(), timeout=10
            ),
            "endorse-chaincode": lambda: stub.Endorse(
                proposal(channel, no_chaincode).endorse_request(), timeout=10
            ),
            "submit-channel": lambda: stub.Submit(submit, timeout=10),
            "status-channel": lambda: stub.CommitStatus(status, timeout=10),
            "events-channel": lambda: next(iter(stub.ChaincodeEvents(events, timeout=10))),
        }
        answered = {case: _refusal(call) for case, call in calls.items()}
    finally:
        connection.close()
    assert answered == {case: (*answer, False) for case, answer in expected.items()}
    if fabric_target.double is not None:
        assert fabric_target.double.status(create.tx_id) is None  # never ordered


def test_a_resent_proposal_still_executing_is_refused_as_existing(client: Client, log: str) -> None:
    """A real peer keeps running a proposal whose caller gave up (its deadline passed) and
    refuses the same transaction id meanwhile ("txid: ... exists"); once it has finished,
    the same proposal runs again (it was never ordered)."""
    double = client.double
    _create(client, Log.of(log, 0))
    query = client.proposal(HEAD, log)
    site = Log.of(f"{log}-2", 0)
    creation = client.proposal(CREATE_LOG, site.id, site.genesis())
    double.hold_chaincode()
    for call, request in (
        (client.stub.Evaluate, evaluate_request(query)),
        (client.stub.Endorse, endorse_request(creation)),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=0.2)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    answers = []
    for call, request, proposal in (
        (client.stub.Evaluate, evaluate_request(query), query),
        (client.stub.Endorse, endorse_request(creation), creation),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=10)
        (detail,) = _details(caught.value)
        assert detail.message == (
            f"error in simulation: failed to execute transaction {proposal.tx_id}: "
            f"error sending: txid: {proposal.tx_id}({double.channel}) exists"
        )
        answers.append((caught.value.code(), caught.value.details()))
    see = "see attached details for more info"
    assert answers == [
        (grpc.StatusCode.ABORTED, f"failed to evaluate transaction, {see}"),
        (grpc.StatusCode.ABORTED, f"failed to endorse transaction, {see}"),
    ]
    double.release_chaincode()
    deadline = time.monotonic() + 10
    while True:  # the held executions finish; then the same proposals run again
        try:
            head = client.stub.Evaluate(evaluate_request(query), timeout=10)
            break
        except grpc.RpcError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert ChannelHead.from_json(head.result.payload).size == 0
    client.stub.Endorse(endorse_request(creation), timeout=10)
    assert double.status(creation.tx_id) is None
