"""Fabric Gateway requests built directly from the protobufs, as ``protoutil`` builds them.

The Gateway double's own tests use these instead of the ibx client (so the
double is checked independently of it), and the double uses them for the
transactions it submits itself (:meth:`GatewayDouble.submit_own`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2
from google.protobuf import timestamp_pb2  # type: ignore[import-untyped]

from tests.ledger.fabric.fabric_pki import Identity

__all__ = [
    "RawProposal",
    "compute_tx_id",
    "endorse_request",
    "evaluate_request",
    "signed_commit_status_request",
    "signed_events_request",
    "signed_proposal",
    "submit_request",
]


def compute_tx_id(nonce: bytes, creator: bytes) -> str:
    """``protoutil.ComputeTxID``: hex SHA-256 of the nonce then the serialized creator."""
    return hashlib.sha256(nonce + creator).hexdigest()


@dataclass(frozen=True)
class RawProposal:
    """A signed proposal and what it was built from."""

    tx_id: str
    channel: str
    signed: Any  # peer.SignedProposal


def signed_proposal(
    identity: Identity,
    channel: str,
    chaincode: str,
    args: Sequence[bytes],
    *,
    transient: Mapping[str, bytes] | None = None,
    nonce: bytes | None = None,
    tx_id: str | None = None,
    sign: bool = True,
) -> RawProposal:
    """A chaincode invocation proposal signed by ``identity`` (``protoutil.CreateProposalFromCIS``).

    ``tx_id`` overrides the derived one (to test the peer's check); ``sign=False`` leaves
    the signature empty.
    """
    creator = identity.serialized()
    nonce = os.urandom(24) if nonce is None else nonce
    txid = compute_tx_id(nonce, creator) if tx_id is None else tx_id
    now = time.time_ns()
    extension = proposal_pb2.ChaincodeHeaderExtension(
        chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode)
    )
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.ENDORSER_TRANSACTION,
        timestamp=timestamp_pb2.Timestamp(seconds=now // 10**9, nanos=now % 10**9),
        channel_id=channel,
        tx_id=txid,
        epoch=0,
        extension=extension.SerializeToString(),
    )
    signature_header = common_pb2.SignatureHeader(creator=creator, nonce=nonce)
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=signature_header.SerializeToString(),
    )
    spec = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode),
            input=chaincode_pb2.ChaincodeInput(args=list(args)),
        )
    )
    payload = proposal_pb2.ChaincodeProposalPayload(
        input=spec.SerializeToString(), TransientMap=dict(transient or {})
    )
    proposal = proposal_pb2.Proposal(
        header=header.SerializeToString(), payload=payload.SerializeToString()
    )
    proposal_bytes = proposal.SerializeToString()
    signed = proposal_pb2.SignedProposal(
        proposal_bytes=proposal_bytes,
        signature=identity.sign(proposal_bytes) if sign else b"",
    )
    return RawProposal(txid, channel, signed)


def evaluate_request(proposal: RawProposal) -> Any:
    """``gateway.EvaluateRequest`` for a proposal."""
    return gateway_pb2.EvaluateRequest(
        transaction_id=proposal.tx_id,
        channel_id=proposal.channel,
        proposed_transaction=proposal.signed,
    )


def endorse_request(proposal: RawProposal) -> Any:
    """``gateway.EndorseRequest`` for a proposal."""
    return gateway_pb2.EndorseRequest(
        transaction_id=proposal.tx_id,
        channel_id=proposal.channel,
        proposed_transaction=proposal.signed,
    )


def submit_request(identity: Identity, proposal: RawProposal, prepared: Any) -> Any:
    """``gateway.SubmitRequest``: the prepared envelope signed by ``identity``."""
    envelope = common_pb2.Envelope(
        payload=prepared.payload, signature=identity.sign(prepared.payload)
    )
    return gateway_pb2.SubmitRequest(
        transaction_id=proposal.tx_id,
        channel_id=proposal.channel,
        prepared_transaction=envelope,
    )


def signed_commit_status_request(identity: Identity, channel: str, tx_id: str) -> Any:
    """``gateway.SignedCommitStatusRequest`` signed by ``identity``."""
    request = gateway_pb2.CommitStatusRequest(
        transaction_id=tx_id, channel_id=channel, identity=identity.serialized()
    ).SerializeToString()
    return gateway_pb2.SignedCommitStatusRequest(request=request, signature=identity.sign(request))


def signed_events_request(
    identity: Identity,
    channel: str,
    chaincode: str,
    start_block: int | None = None,
    *,
    after_transaction_id: str = "",
) -> Any:
    """``gateway.SignedChaincodeEventsRequest`` from ``start_block`` (default: the next commit)."""
    position = (
        ab_pb2.SeekPosition(next_commit=ab_pb2.SeekNextCommit())
        if start_block is None
        else ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=start_block))
    )
    request = gateway_pb2.ChaincodeEventsRequest(
        channel_id=channel,
        chaincode_id=chaincode,
        identity=identity.serialized(),
        start_position=position,
        after_transaction_id=after_transaction_id,
    ).SerializeToString()
    return gateway_pb2.SignedChaincodeEventsRequest(
        request=request, signature=identity.sign(request)
    )
