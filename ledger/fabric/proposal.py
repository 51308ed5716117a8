"""The signed messages a Fabric Gateway client sends: pure builders, no I/O.

They follow Fabric's own (``protoutil/proputils.go``, ``txutils.go``) and what
a peer checks in ``core/endorser/msgvalidation.go``: a proposal's channel header
is an ``ENDORSER_TRANSACTION`` of epoch 0 whose transaction id is the hex
SHA-256 of the signature header's nonce and creator; its extension names the
chaincode; its payload is a ``ChaincodeProposalPayload`` around a
``ChaincodeInvocationSpec`` whose first argument is the function name.

The gateway assembles the transaction envelope from the endorsements; before
signing it the client checks that it is the transaction it proposed (same
headers, same payload, endorsements of its proposal hash), so a gateway cannot
obtain the client's signature on another transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from ledger.fabric.errors import FabricError
from ledger.fabric.identity import FabricIdentity

__all__ = [
    "NONCE_SIZE",
    "PreparedTransaction",
    "SignedProposal",
    "new_transaction_id",
    "signed_chaincode_events_request",
    "signed_commit_status_request",
    "signed_proposal",
    "transaction_id",
]

NONCE_SIZE = 24
"""Bytes of random nonce per transaction (Fabric's ``crypto.NonceSize``)."""


def transaction_id(nonce: bytes, creator: bytes) -> str:
    """Fabric's transaction id: hex SHA-256 of ``nonce || creator`` (``protoutil.ComputeTxID``)."""
    return hashlib.sha256(nonce + creator).hexdigest()


def new_transaction_id(creator: bytes) -> tuple[str, bytes]:
    """A fresh ``(tx_id, nonce)`` for the serialized identity ``creator``."""
    nonce = secrets.token_bytes(NONCE_SIZE)
    return transaction_id(nonce, creator), nonce


@dataclass(frozen=True)
class SignedProposal:
    """A signed chaincode invocation proposal (``peer.SignedProposal``) and what it names.

    Attributes:
        tx_id: its transaction id; retries send this same message.
        channel: the channel it is for.
        chaincode: the chaincode it invokes.
        message: the ``peer.SignedProposal`` protobuf.
        header: the serialized ``common.Header`` it carries.
        payload: the serialized ``ChaincodeProposalPayload`` it carries (no transient data).
    """

    tx_id: str
    channel: str
    chaincode: str
    message: Any = field(repr=False)
    header: bytes = field(repr=False)
    payload: bytes = field(repr=False)

    def proposal_hash(self) -> bytes:
        """What endorsers sign over: SHA-256 of the channel header, the signature header and
        the payload without transient data (``core/endorser/msgvalidation.go``)."""
        header = common_pb2.Header.FromString(self.header)
        return hashlib.sha256(
            header.channel_header + header.signature_header + self.payload
        ).digest()

    def evaluate_request(self) -> Any:
        """The ``gateway.EvaluateRequest`` for this proposal."""
        return gateway_pb2.EvaluateRequest(
            transaction_id=self.tx_id, channel_id=self.channel, proposed_transaction=self.message
        )

    def endorse_request(self) -> Any:
        """The ``gateway.EndorseRequest`` for this proposal (the gateway picks the endorsers)."""
        return gateway_pb2.EndorseRequest(
            transaction_id=self.tx_id, channel_id=self.channel, proposed_transaction=self.message
        )


def signed_proposal(
    identity: FabricIdentity,
    channel: str,
    chaincode: str,
    args: Sequence[bytes],
    *,
    now: datetime,
    nonce: bytes | None = None,
) -> SignedProposal:
    """A proposal to invoke ``chaincode`` on ``channel`` with ``args`` (the function name
    first), signed by ``identity``.

    Raises:
        ValueError: no arguments, an empty channel or chaincode name, or a naive ``now``.
    """
    if not args:
        raise ValueError("a chaincode invocation needs at least the function name")
    if not channel or not chaincode:
        raise ValueError("a proposal needs a channel and a chaincode name")
    if now.tzinfo is None:
        raise ValueError("a proposal's time must be timezone-aware")
    creator = identity.serialized()
    if nonce is None:
        tx_id, nonce = new_transaction_id(creator)
    else:
        tx_id = transaction_id(nonce, creator)
    chaincode_id = chaincode_pb2.ChaincodeID(name=chaincode)
    invocation = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            chaincode_id=chaincode_id, input=chaincode_pb2.ChaincodeInput(args=list(args))
        )
    )
    payload = proposal_pb2.ChaincodeProposalPayload(
        input=invocation.SerializeToString()
    ).SerializeToString()
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.HeaderType.ENDORSER_TRANSACTION,
        channel_id=channel,
        tx_id=tx_id,
        epoch=0,
        extension=proposal_pb2.ChaincodeHeaderExtension(
            chaincode_id=chaincode_id
        ).SerializeToString(),
    )
    channel_header.timestamp.FromDatetime(now.astimezone(UTC))
    signature_header = common_pb2.SignatureHeader(creator=creator, nonce=nonce)
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=signature_header.SerializeToString(),
    ).SerializeToString()
    proposal = proposal_pb2.Proposal(header=header, payload=payload).SerializeToString()
    message = proposal_pb2.SignedProposal(
        proposal_bytes=proposal, signature=identity.sign(proposal)
    )
    return SignedProposal(tx_id, channel, chaincode, message, header, payload)


@dataclass(frozen=True)
class PreparedTransaction:
    """The transaction envelope the gateway assembled from the endorsements, checked
    against the proposal it answers.

    Attributes:
        tx_id: the proposal's transaction id.
        channel: its channel.
        envelope: the unsigned ``common.Envelope``.
        result: the chaincode's response payload, as endorsed.
    """

    tx_id: str
    channel: str
    envelope: Any = field(repr=False)
    result: bytes = field(repr=False)

    @classmethod
    def check(cls, envelope: Any, proposal: SignedProposal) -> PreparedTransaction:
        """Accept ``envelope`` only if it is ``proposal``'s transaction: the same header,
        the same chaincode payload, and one action endorsing ``proposal``'s hash.

        Raises:
            FabricError: the envelope is malformed or is another transaction.
        """
        try:
            payload = common_pb2.Payload.FromString(envelope.payload)
            transaction = transaction_pb2.Transaction.FromString(payload.data)
            if len(transaction.actions) != 1:
                raise FabricError(
                    f"the gateway's prepared transaction {proposal.tx_id} has "
                    f"{len(transaction.actions)} actions, not 1"
                )
            action = transaction.actions[0]
            action_payload = transaction_pb2.ChaincodeActionPayload.FromString(action.payload)
            response_payload = proposal_response_pb2.ProposalResponsePayload.FromString(
                action_payload.action.proposal_response_payload
            )
            chaincode_action = proposal_pb2.ChaincodeAction.FromString(response_payload.extension)
        except DecodeError as exc:
            raise FabricError(
                f"the gateway's prepared transaction {proposal.tx_id} is malformed: {exc}"
            ) from exc
        header = common_pb2.Header.FromString(proposal.header)
        if (
            payload.header.channel_header != header.channel_header
            or payload.header.signature_header != header.signature_header
            or action.header != header.signature_header
            or action_payload.chaincode_proposal_payload != proposal.payload
            or response_payload.proposal_hash != proposal.proposal_hash()
        ):
            raise FabricError(
                f"the gateway's prepared transaction is not the proposed transaction "
                f"{proposal.tx_id}; not signing it"
            )
        if not action_payload.action.endorsements:
            raise FabricError(f"the gateway's prepared transaction {proposal.tx_id} is unendorsed")
        return cls(proposal.tx_id, proposal.channel, envelope, chaincode_action.response.payload)

    def submit_request(self, identity: FabricIdentity) -> Any:
        """The ``gateway.SubmitRequest`` carrying the envelope signed by ``identity``.

        Build it once and resend the same message on retries (same transaction id).
        """
        signed = common_pb2.Envelope(
            payload=self.envelope.payload, signature=identity.sign(self.envelope.payload)
        )
        return gateway_pb2.SubmitRequest(
            transaction_id=self.tx_id, channel_id=self.channel, prepared_transaction=signed
        )


def signed_commit_status_request(identity: FabricIdentity, channel: str, tx_id: str) -> Any:
    """The ``gateway.SignedCommitStatusRequest`` asking whether ``tx_id`` committed."""
    request = gateway_pb2.CommitStatusRequest(
        transaction_id=tx_id, channel_id=channel, identity=identity.serialized()
    ).SerializeToString()
    return gateway_pb2.SignedCommitStatusRequest(request=request, signature=identity.sign(request))


def signed_chaincode_events_request(
    identity: FabricIdentity,
    channel: str,
    chaincode: str,
    start_block: int | None = None,
    *,
    after_tx_id: str = "",
) -> Any:
    """The ``gateway.SignedChaincodeEventsRequest`` for ``chaincode``'s events from
    ``start_block`` (the next commit when None), skipping those up to and including
    transaction ``after_tx_id`` when given.

    Raises:
        ValueError: a negative start block.
    """
    if start_block is None:
        position = ab_pb2.SeekPosition(next_commit=ab_pb2.SeekNextCommit())
    elif start_block < 0:
        raise ValueError("a start block is not negative")
    else:
        position = ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=start_block))
    request = gateway_pb2.ChaincodeEventsRequest(
        channel_id=channel,
        chaincode_id=chaincode,
        identity=identity.serialized(),
        start_position=position,
        after_transaction_id=after_tx_id,
    ).SerializeToString()
    return gateway_pb2.SignedChaincodeEventsRequest(
        request=request, signature=identity.sign(request)
    )
