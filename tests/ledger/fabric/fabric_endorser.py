"""The Gateway double's endorsing peers: a proposal checked as a peer checks it, run on
the real chaincode, answered and endorsed as Fabric's endorser and Gateway do.

``Endorsers.evaluate`` and ``Endorsers.endorse`` follow ``internal/pkg/gateway``
(``evaluate.go``, ``endorse.go``, ``apiutils.go``: ``responseStatus``, error
messages and ``ErrorDetail``s) and ``core/endorser`` (``msgvalidation.go``,
``endorser.go``); :func:`prepare_transaction` is ``prepareTransaction`` in
``submit.go``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from tests.ledger.fabric.fabric_committer import (
    AccessDeniedError,
    ChannelMsps,
    Committer,
    proposal_hash,
)
from tests.ledger.fabric.fabric_pki import Identity
from tests.ledger.fabric.raw_gateway import compute_tx_id
from tests.ledger.fabric.shim_peer import ShimPeer, ShimProtocolError, Simulation, World

__all__ = [
    "Answer",
    "Endorsers",
    "GatewayError",
    "Peer",
    "Proposal",
    "no_channel_config",
    "prepare_transaction",
]

CHAINCODE_VERSION = "1"
"""The chaincode definition's version (``ChaincodeAction.chaincode_id.version``)."""

_SHIM_ERROR = 500
_CHAINCODE_FAILURE = "transaction returned with failure: "


class GatewayError(Exception):
    """A Gateway error: status code, message and ``ErrorDetail``s (``newRpcError``)."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)


@dataclass(frozen=True)
class Proposal:
    """A proposal unpacked as a peer's ``UnpackProposal`` does."""

    tx_id: str
    channel: str
    chaincode: str
    args: tuple[bytes, ...]
    header: Any  # common.Header
    cpp: Any  # peer.ChaincodeProposalPayload
    hash: bytes
    creator: bytes
    signed: Any  # peer.SignedProposal


@dataclass(frozen=True)
class Answer:
    """One peer's ``ProcessProposal`` outcome, classified as ``responseStatus`` does."""

    code: grpc.StatusCode
    message: str
    response: Any = None  # peer.ProposalResponse when OK


@dataclass(frozen=True)
class Peer:
    """An endorsing peer: its address (for ``ErrorDetail``) and signing identity."""

    address: str
    identity: Identity


class Endorsers:
    """The channel's endorsing peers, one per organisation; the first is the Gateway's own.

    A peer refuses a proposal whose transaction id is still executing in the chaincode
    (a client's resend after its deadline) as a real peer does: ABORTED, "txid: ...
    exists". An execution outlives the gRPC call that started it.

    Attributes:
        required: distinct organisations a transaction's endorsements need (the policy).
        available: how many peers, in order, answer; the rest fail as unreachable peers do.
        shim: the chaincode connection (set once dialled).
        free: cleared, the chaincode hangs: executions wait until it is set.
    """

    def __init__(
        self,
        peers: Sequence[Peer],
        msps: ChannelMsps,
        committer: Committer,
        world: World,
        *,
        channel: str,
        chaincode: str,
    ) -> None:
        self.peers = tuple(peers)
        self.msps = msps
        self.committer = committer
        self.world = world
        self.channel = channel
        self.chaincode = chaincode
        self.required = 1
        self.available = len(self.peers)
        self.shim: ShimPeer | None = None
        self.free = asyncio.Event()
        """Clear: the chaincode hangs (executions wait until it is set again)."""
        self.free.set()
        self._running: set[tuple[str, str]] = set()

    @staticmethod
    def unpack(signed: Any) -> Proposal:
        """Unpack a signed proposal (``getChannelAndChaincodeFromSignedProposal``).

        Raises:
            GatewayError: INVALID_ARGUMENT, with the Gateway's message.
        """
        if not signed.proposal_bytes:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "a signed proposal is required")
        try:
            proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
            header = common_pb2.Header.FromString(proposal.header)
            channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
            signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
            cpp = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
            spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(cpp.input)
        except DecodeError as exc:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, f"failed to unpack transaction proposal: {exc}"
            ) from exc
        if not channel_header.channel_id:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "failed to unpack transaction proposal: no channel id provided",
            )
        name = spec.chaincode_spec.chaincode_id.name
        if not name:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "failed to unpack transaction proposal: no chaincode name is provided, "
                f"channel id [{channel_header.channel_id}]",
            )
        cpp_no_transient = proposal_pb2.ChaincodeProposalPayload(input=cpp.input)
        return Proposal(
            tx_id=channel_header.tx_id,
            channel=channel_header.channel_id,
            chaincode=name,
            args=tuple(spec.chaincode_spec.input.args),
            header=header,
            cpp=cpp,
            hash=proposal_hash(
                header.channel_header,
                header.signature_header,
                cpp_no_transient.SerializeToString(),
            ),
            creator=signature_header.creator,
            signed=signed,
        )

    def _plan_evaluation(self, proposal: Proposal) -> None:
        """Evaluate's ``connectChannelPeers`` (an unknown channel: UNAVAILABLE, as a real
        peer answers) and ``evaluator`` (an unknown chaincode: FAILED_PRECONDITION).

        Raises:
            GatewayError: as the real Gateway words it (no details).
        """
        if proposal.channel != self.channel:
            raise GatewayError(grpc.StatusCode.UNAVAILABLE, no_channel_config(proposal.channel))
        if proposal.chaincode != self.chaincode:
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no peers available to evaluate chaincode {proposal.chaincode} "
                f"in channel {proposal.channel}",
            )

    def _plan_endorsement(self, proposal: Proposal) -> None:
        """Endorse's plan from discovery (``endorsementPlan``): an unknown channel or
        chaincode has no chaincode metadata (FAILED_PRECONDITION, as a real peer answers).

        Raises:
            GatewayError: as the real Gateway words it (no details).
        """
        if proposal.channel != self.channel or proposal.chaincode != self.chaincode:
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "no combination of peers can be derived which satisfy the endorsement "
                f"policy: No metadata was found for chaincode {proposal.chaincode} "
                f"in channel {proposal.channel}",
            )

    def _validate(self, proposal: Proposal) -> str | None:
        """A peer's ``preProcess``: the error message, or None when the proposal is fine."""
        channel_header = common_pb2.ChannelHeader.FromString(proposal.header.channel_header)
        signature_header = common_pb2.SignatureHeader.FromString(proposal.header.signature_header)
        try:
            extension = proposal_pb2.ChaincodeHeaderExtension.FromString(channel_header.extension)
        except DecodeError as exc:
            return str(exc)
        if not extension.chaincode_id.name:
            return "ChaincodeHeaderExtension.ChaincodeId.Name is empty"
        prefix = "error validating proposal: "
        if channel_header.type not in {common_pb2.ENDORSER_TRANSACTION, common_pb2.CONFIG}:
            return prefix + f"invalid header type {channel_header.type}"
        if channel_header.epoch != 0:
            return prefix + "epoch is non-zero"
        if not signature_header.nonce:
            return prefix + "nonce is empty"
        if not signature_header.creator:
            return prefix + "creator is empty"
        expected = compute_tx_id(signature_header.nonce, signature_header.creator)
        if proposal.tx_id != expected:
            return prefix + f"incorrectly computed txid '{proposal.tx_id}' -- expected '{expected}'"
        if not proposal.signed.signature:
            return prefix + "empty signature bytes"
        try:
            self.msps.verify(
                signature_header.creator,
                proposal.channel,
                proposal.signed.proposal_bytes,
                proposal.signed.signature,
            )
        except AccessDeniedError as exc:
            return prefix + str(exc)
        if self.committer.status(proposal.tx_id) is not None:
            return (
                f"duplicate transaction found [{proposal.tx_id}]. "
                f"Creator [{signature_header.creator.hex()}]"
            )
        return None

    async def _process(self, index: int, proposal: Proposal) -> Answer:
        """Peer ``index``'s ``ProcessProposal``, through ``responseStatus``."""
        peer = self.peers[index]
        if index >= self.available:
            return Answer(
                grpc.StatusCode.UNAVAILABLE,
                "rpc error: code = Unavailable desc = connection error: desc = "
                f'"transport: Error while dialing: dial tcp {peer.address}: '
                'connect: connection refused"',
            )
        problem = self._validate(proposal)
        if problem is not None:
            return Answer(grpc.StatusCode.FAILED_PRECONDITION, problem)
        key = (proposal.channel, proposal.tx_id)
        if key in self._running:  # TransactionContexts.Create: still executing
            return Answer(
                grpc.StatusCode.ABORTED,
                f"error in simulation: failed to execute transaction {proposal.tx_id}: "
                f"error sending: txid: {proposal.tx_id}({proposal.channel}) exists",
            )
        # The peer's execution does not end with the client's call: it runs until the
        # chaincode answers (or the peer's execute timeout), whatever the caller does.
        self._running.add(key)
        execution = asyncio.ensure_future(self._execute(proposal))
        execution.add_done_callback(lambda done: self._running.discard(key))
        execution.add_done_callback(_retrieve)
        try:
            simulation = await asyncio.shield(execution)
        except (ShimProtocolError, ValueError) as exc:
            # The chaincode is gone or hung: a 500 the peer made itself (retried elsewhere).
            return Answer(grpc.StatusCode.ABORTED, f"error in simulation: {exc}")
        if (
            simulation.status == _SHIM_ERROR
            and not simulation.payload
            and simulation.message.startswith(_CHAINCODE_FAILURE)
        ):
            # An ERROR message, not a COMPLETED response: the peer's own 500, no payload.
            return Answer(grpc.StatusCode.ABORTED, f"error in simulation: {simulation.message}")
        return self._respond(peer, proposal, simulation)

    async def _execute(self, proposal: Proposal) -> Simulation:
        """The chaincode's run of ``proposal`` (after :attr:`free` allows it).

        Raises:
            ShimProtocolError: the chaincode connection ended or timed out.
        """
        await self.free.wait()
        assert self.shim is not None
        # Reads see the committed state as of the start (the World keeps versions).
        return await self.shim.execute(
            self.world,
            channel=proposal.channel,
            tx_id=proposal.tx_id,
            args=proposal.args,
            signed_proposal=proposal.signed,
        )

    def _respond(self, peer: Peer, proposal: Proposal, simulation: Simulation) -> Answer:
        """``ProcessProposalSuccessfullyOrError`` and the gateway's ``responseStatus``."""
        response = proposal_response_pb2.Response(
            status=simulation.status, message=simulation.message, payload=simulation.payload
        )
        if 400 <= simulation.status < 500:
            return Answer(
                grpc.StatusCode.UNKNOWN,
                f"chaincode response {simulation.status}, {simulation.message}",
            )
        event = b""
        if simulation.event is not None:
            chaincode_event = chaincode_event_pb2.ChaincodeEvent()
            chaincode_event.CopyFrom(simulation.event)
            chaincode_event.chaincode_id = self.chaincode
            chaincode_event.tx_id = proposal.tx_id
            event = chaincode_event.SerializeToString()
        action = proposal_pb2.ChaincodeAction(
            results=simulation.results(self.chaincode),
            events=event,
            response=response,
            chaincode_id=chaincode_pb2.ChaincodeID(name=self.chaincode, version=CHAINCODE_VERSION),
        )
        payload = proposal_response_pb2.ProposalResponsePayload(
            proposal_hash=proposal.hash, extension=action.SerializeToString()
        ).SerializeToString()
        if simulation.status >= 500 or simulation.status < 200:
            return Answer(
                grpc.StatusCode.UNKNOWN,
                f"chaincode response {simulation.status}, {simulation.message}",
            )
        endorser = peer.identity.serialized()
        endorsement = proposal_response_pb2.Endorsement(
            endorser=endorser, signature=peer.identity.sign(payload + endorser)
        )
        return Answer(
            grpc.StatusCode.OK,
            "",
            proposal_response_pb2.ProposalResponse(
                version=1, response=response, payload=payload, endorsement=endorsement
            ),
        )

    def _detail(self, index: int, message: str) -> Any:
        peer = self.peers[index]
        return gateway_pb2.ErrorDetail(
            address=peer.address, msp_id=peer.identity.msp_id, message=message
        )

    async def evaluate(self, proposal: Proposal) -> Any:
        """Run a query on the Gateway's own organisation's peer (``Evaluate``): the
        ``gateway.EvaluateResponse``.

        Raises:
            GatewayError: the peer refused the proposal or the chaincode answered an error.
        """
        self._plan_evaluation(proposal)
        details = []
        last = grpc.StatusCode.UNAVAILABLE
        for index in range(len(self.peers)):
            if index > 0 and self.peers[index].identity.msp_id != self.peers[0].identity.msp_id:
                break  # the evaluator stays in the Gateway's organisation
            answer = await self._process(index, proposal)
            if answer.code == grpc.StatusCode.OK:
                result = answer.response.response
                action = proposal_pb2.ChaincodeAction.FromString(
                    proposal_response_pb2.ProposalResponsePayload.FromString(
                        answer.response.payload
                    ).extension
                )
                result.payload = action.response.payload
                return gateway_pb2.EvaluateResponse(result=result)
            details.append(self._detail(index, answer.message))
            if answer.code not in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}:
                raise GatewayError(
                    answer.code,
                    "evaluate call to endorser returned error: " + answer.message,
                    details,
                )
            last = answer.code
        raise GatewayError(
            last, "failed to evaluate transaction, see attached details for more info", details
        )

    async def endorse(self, proposal: Proposal) -> Any:
        """Collect endorsements and assemble the prepared transaction (``Endorse``): the
        unsigned ``common.Envelope``.

        Raises:
            GatewayError: the first endorser failed, or too few endorsed alike.
        """
        self._plan_endorsement(proposal)
        first = await self._process(0, proposal)
        if first.code != grpc.StatusCode.OK:
            raise GatewayError(
                grpc.StatusCode.ABORTED,
                "failed to endorse transaction, see attached details for more info",
                [self._detail(0, first.message)],
            )
        responses = [first.response]
        details = []
        for index in range(1, len(self.peers)):
            if len(responses) >= self.required:
                break
            answer = await self._process(index, proposal)
            if answer.code != grpc.StatusCode.OK:
                details.append(self._detail(index, answer.message))
            elif answer.response.payload != first.response.payload:
                details.append(
                    self._detail(
                        index,
                        "ProposalResponsePayloads do not match (base64): "
                        f"'{base64.b64encode(answer.response.payload).decode()}' vs "
                        f"'{base64.b64encode(first.response.payload).decode()}'",
                    )
                )
            else:
                responses.append(answer.response)
        if len(responses) < self.required:
            raise GatewayError(
                grpc.StatusCode.ABORTED,
                "failed to collect enough transaction endorsements, "
                "see attached details for more info",
                details,
            )
        action = transaction_pb2.ChaincodeEndorsedAction(
            proposal_response_payload=first.response.payload,
            endorsements=[r.endorsement for r in responses],
        )
        return prepare_transaction(proposal, action)


def no_channel_config(channel: str) -> str:
    """The Gateway's message for a channel its peer has not joined (``registry.go``)."""
    return (
        f"failed to get config for channel [{channel}]: "
        f"could not get last config for channel {channel}"
    )


def _retrieve(execution: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned execution's outcome (no "exception never retrieved" noise)."""
    if not execution.cancelled():
        execution.exception()


def prepare_transaction(proposal: Proposal, action: Any) -> Any:
    """``prepareTransaction`` (submit.go): the unsigned envelope the client signs."""
    cpp_no_transient = proposal_pb2.ChaincodeProposalPayload(input=proposal.cpp.input)
    action_payload = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=cpp_no_transient.SerializeToString(), action=action
    )
    transaction = transaction_pb2.Transaction(
        actions=[
            transaction_pb2.TransactionAction(
                header=proposal.header.signature_header,
                payload=action_payload.SerializeToString(),
            )
        ]
    )
    payload = common_pb2.Payload(header=proposal.header, data=transaction.SerializeToString())
    return common_pb2.Envelope(payload=payload.SerializeToString())
