"""The signed Gateway messages: the fields a Fabric peer checks, read back through the
protobufs, and the prepared-transaction check that keeps the client from signing
another transaction than the one it proposed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)

from ledger.fabric.errors import FabricError
from ledger.fabric.identity import FabricIdentity
from ledger.fabric.proposal import (
    NONCE_SIZE,
    PreparedTransaction,
    SignedProposal,
    new_transaction_id,
    signed_chaincode_events_request,
    signed_commit_status_request,
    signed_proposal,
    transaction_id,
)
from tests.ledger.fabric.fabric_pki import FabricPki, verify_signature

NOW = datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki() -> FabricPki:
    return FabricPki.generate(organisations=2)


@pytest.fixture(scope="module")
def identity(pki: FabricPki) -> FabricIdentity:
    return FabricIdentity("Org1MSP", pki.client.certificate_pem, pki.client.private_key)


def _proposal(identity: FabricIdentity, *args: bytes, nonce: bytes | None = None) -> SignedProposal:
    return signed_proposal(
        identity, "ibx-ledger", "ibxledger", [b"Head", b"origin", *args], now=NOW, nonce=nonce
    )


def test_transaction_id_is_sha256_of_nonce_and_creator(identity: FabricIdentity) -> None:
    creator = identity.serialized()
    tx_id, nonce = new_transaction_id(creator)
    assert len(nonce) == NONCE_SIZE == 24
    assert tx_id == hashlib.sha256(nonce + creator).hexdigest() == transaction_id(nonce, creator)
    assert new_transaction_id(creator) != (tx_id, nonce)
    # Fabric's protoutil test vector shape: 64 lowercase hex digits
    assert len(tx_id) == 64
    assert tx_id == tx_id.lower()


def test_the_proposal_carries_what_a_peer_checks(pki: FabricPki, identity: FabricIdentity) -> None:
    proposal = _proposal(identity, b"7")
    message = proposal.message
    assert verify_signature(pki.client.certificate, message.proposal_bytes, message.signature)

    parsed = proposal_pb2.Proposal.FromString(message.proposal_bytes)
    header = common_pb2.Header.FromString(parsed.header)
    channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
    signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
    assert channel_header.type == common_pb2.HeaderType.ENDORSER_TRANSACTION
    assert channel_header.channel_id == "ibx-ledger" == proposal.channel
    assert channel_header.epoch == 0
    assert channel_header.timestamp.ToDatetime(tzinfo=UTC) == NOW
    extension = proposal_pb2.ChaincodeHeaderExtension.FromString(channel_header.extension)
    assert extension.chaincode_id.name == "ibxledger"
    assert signature_header.creator == identity.serialized()
    assert len(signature_header.nonce) == NONCE_SIZE
    assert channel_header.tx_id == proposal.tx_id
    assert proposal.tx_id == transaction_id(signature_header.nonce, signature_header.creator)

    payload = proposal_pb2.ChaincodeProposalPayload.FromString(parsed.payload)
    assert not payload.TransientMap
    spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input).chaincode_spec
    assert spec.chaincode_id.name == "ibxledger"
    assert list(spec.input.args) == [b"Head", b"origin", b"7"]

    # what endorsers sign over (core/endorser/msgvalidation.go)
    expected = hashlib.sha256(
        header.channel_header + header.signature_header + parsed.payload
    ).digest()
    assert proposal.proposal_hash() == expected

    evaluate = proposal.evaluate_request()
    assert evaluate.transaction_id == proposal.tx_id
    assert evaluate.channel_id == "ibx-ledger"
    assert evaluate.proposed_transaction == message
    endorse = gateway_pb2.EndorseRequest.FromString(proposal.endorse_request().SerializeToString())
    assert endorse.proposed_transaction.proposal_bytes == message.proposal_bytes
    assert not endorse.endorsing_organizations


def test_a_given_nonce_gives_its_transaction_id(identity: FabricIdentity) -> None:
    nonce = bytes(range(24))
    first = _proposal(identity, nonce=nonce)
    second = _proposal(identity, nonce=nonce)
    assert first.tx_id == second.tx_id == transaction_id(nonce, identity.serialized())
    assert _proposal(identity).tx_id != first.tx_id


def test_malformed_invocations_are_refused(identity: FabricIdentity) -> None:
    with pytest.raises(ValueError, match="function name"):
        signed_proposal(identity, "ch", "cc", [], now=NOW)
    with pytest.raises(ValueError, match="channel and a chaincode"):
        signed_proposal(identity, "", "cc", [b"Head"], now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        signed_proposal(identity, "ch", "cc", [b"Head"], now=datetime(2025, 1, 1))


# -- the prepared transaction ----------------------------------------------------------


def _prepare(
    proposal: SignedProposal,
    *,
    result: bytes = b'{"size":1}',
    endorsers: int = 1,
    proposal_hash: bytes | None = None,
    input_payload: bytes | None = None,
) -> Any:
    """The envelope as the gateway assembles it (gateway/submit.go prepareTransaction)."""
    parsed = proposal_pb2.Proposal.FromString(proposal.message.proposal_bytes)
    header = common_pb2.Header.FromString(parsed.header)
    action = proposal_pb2.ChaincodeAction(
        results=b"rwset",
        events=b"",
        response=proposal_response_pb2.Response(status=200, payload=result),
        chaincode_id=chaincode_pb2.ChaincodeID(name=proposal.chaincode),
    )
    response_payload = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=proposal_hash or proposal.proposal_hash(),
        extension=action.SerializeToString(),
    )
    endorsed = transaction_pb2.ChaincodeEndorsedAction(
        proposal_response_payload=response_payload.SerializeToString(),
        endorsements=[
            proposal_response_pb2.Endorsement(endorser=b"peer%d" % i, signature=b"sig")
            for i in range(endorsers)
        ],
    )
    action_payload = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=input_payload or parsed.payload, action=endorsed
    )
    tx = transaction_pb2.Transaction(
        actions=[
            transaction_pb2.TransactionAction(
                header=header.signature_header, payload=action_payload.SerializeToString()
            )
        ]
    )
    payload = common_pb2.Payload(header=header, data=tx.SerializeToString())
    return common_pb2.Envelope(payload=payload.SerializeToString())


def test_the_proposed_transaction_is_accepted_and_signed(
    pki: FabricPki, identity: FabricIdentity
) -> None:
    proposal = _proposal(identity)
    prepared = PreparedTransaction.check(_prepare(proposal, result=b"the head"), proposal)
    assert prepared.result == b"the head"
    assert prepared.tx_id == proposal.tx_id
    request = prepared.submit_request(identity)
    assert request.transaction_id == proposal.tx_id
    assert request.channel_id == "ibx-ledger"
    envelope = request.prepared_transaction
    assert verify_signature(pki.client.certificate, envelope.payload, envelope.signature)


@pytest.mark.parametrize(
    "attack",
    ["another-transaction", "another-proposal-hash", "another-chaincode-input", "unendorsed"],
)
def test_another_transaction_is_not_signed(identity: FabricIdentity, attack: str) -> None:
    """A gateway that answers with another transaction does not get it signed."""
    mine, other = _proposal(identity, b"mine"), _proposal(identity, b"other")
    envelope = {
        "another-transaction": lambda: _prepare(other),
        "another-proposal-hash": lambda: _prepare(mine, proposal_hash=other.proposal_hash()),
        "another-chaincode-input": lambda: _prepare(mine, input_payload=other.payload),
        "unendorsed": lambda: _prepare(mine, endorsers=0),
    }[attack]()
    with pytest.raises(FabricError, match=r"not the proposed|unendorsed"):
        PreparedTransaction.check(envelope, mine)


def test_a_malformed_prepared_transaction_is_refused(identity: FabricIdentity) -> None:
    with pytest.raises(FabricError, match="malformed"):
        PreparedTransaction.check(common_pb2.Envelope(payload=b"\xff\xff\xff"), _proposal(identity))


def test_commit_status_request_is_signed_by_the_client(
    pki: FabricPki, identity: FabricIdentity
) -> None:
    signed = signed_commit_status_request(identity, "ibx-ledger", "ab" * 32)
    assert verify_signature(pki.client.certificate, signed.request, signed.signature)
    request = gateway_pb2.CommitStatusRequest.FromString(signed.request)
    assert request.transaction_id == "ab" * 32
    assert request.channel_id == "ibx-ledger"
    assert request.identity == identity.serialized()


@pytest.mark.parametrize(
    ("start", "after", "kind"),
    [(None, "", "next_commit"), (0, "", "specified"), (42, "cd" * 32, "specified")],
    ids=["next-commit", "from-genesis", "after-a-transaction"],
)
def test_chaincode_events_request(
    pki: FabricPki, identity: FabricIdentity, start: int | None, after: str, kind: str
) -> None:
    signed = signed_chaincode_events_request(
        identity, "ibx-ledger", "ibxledger", start, after_tx_id=after
    )
    assert verify_signature(pki.client.certificate, signed.request, signed.signature)
    request = gateway_pb2.ChaincodeEventsRequest.FromString(signed.request)
    assert request.channel_id == "ibx-ledger"
    assert request.chaincode_id == "ibxledger"
    assert request.identity == identity.serialized()
    assert request.after_transaction_id == after
    assert request.start_position.WhichOneof("Type") == kind
    if start is not None:
        assert request.start_position.specified.number == start
    with pytest.raises(ValueError, match="not negative"):
        signed_chaincode_events_request(identity, "ibx-ledger", "ibxledger", -1)
