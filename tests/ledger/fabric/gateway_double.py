"""An in-process Fabric Gateway that speaks the real wire protocol and runs the real chaincode.

CI cannot run a Fabric network, so the ledger's Gateway client is tested
against this double. It is a gRPC server (TLS, the real ``gateway.Gateway``
service and protobuf messages) that behaves, where a client can see it, like
a Fabric peer's embedded Gateway with its endorsers, an orderer and a
committing peer:

- **Evaluate / Endorse** check the signed proposal as a peer does
  (``core/endorser/msgvalidation.go``: header, nonce, transaction id, creator
  an issued member of a channel MSP, low-S signature), then run the chaincode:
  a real ``ibx ledger chaincode`` service reached over the chaincode shim
  protocol (``tests/ledger/fabric/shim_peer.py``) against the channel's world
  state. Endorse signs the proposal response with each endorsing peer's key
  and returns the prepared transaction exactly as ``prepareTransaction`` in
  ``internal/pkg/gateway/submit.go`` assembles it. Failures carry the status
  codes, messages and ``gateway.ErrorDetail``s of ``internal/pkg/gateway``.
- **Submit** checks the envelope's creator signature (the orderer's Writers
  policy) and orders it; blocks are cut per :attr:`GatewayDouble.batch_size`
  (one transaction per block by default) and committed by
  :class:`~tests.ledger.fabric.fabric_committer.Committer` (endorsement policy,
  MVCC, duplicates).
- **CommitStatus** waits for the commit; **ChaincodeEvents** streams the
  chaincode's events of valid transactions from a start block.
- Another channel or chaincode name is answered as a real peer answers it
  (checked against one): Evaluate of an unknown channel is UNAVAILABLE "failed to
  get config for channel [...]", of an unknown chaincode FAILED_PRECONDITION "no
  peers available to evaluate chaincode ..."; Endorse of either is
  FAILED_PRECONDITION "no combination of peers can be derived which satisfy the
  endorsement policy: No metadata was found for chaincode ..."; Submit of an
  unknown channel FAILED_PRECONDITION "failed to get config ..."; CommitStatus and
  ChaincodeEvents PERMISSION_DENIED "Failed to get policy manager for channel
  [...]". An error without details carries no ``grpc-status-details-bin``.

Knobs for tests: :attr:`endorsers_required` (the endorsement policy: distinct
organisations) and :attr:`endorsers_available` (peers that answer; the rest
fail as unreachable peers do); :meth:`fail_next` (a gRPC failure before, or
after, the call did its work); :meth:`hold_commits` / :meth:`release_commits`;
:meth:`compete_next` (the double commits a transaction of its own just before
the next submitted one is ordered, to provoke an MVCC conflict);
:meth:`hold_chaincode` / :meth:`release_chaincode` (a hung chaincode: a resent
proposal is refused "txid ... exists" while its first attempt still runs);
:meth:`stop` / :meth:`start` (an outage, on the same port);
:meth:`seen` (every transaction id each method was called with).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.peer import (
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from google.rpc import status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from ledger.fabric.config import FabricConfig, FabricMode
from tests.ledger.fabric.fabric_committer import (
    AccessDeniedError,
    ChannelMsps,
    Committer,
    TxCode,
)
from tests.ledger.fabric.fabric_endorser import Endorsers, GatewayError, Peer, no_channel_config
from tests.ledger.fabric.fabric_pki import FabricPki, Identity
from tests.ledger.fabric.raw_gateway import signed_proposal
from tests.ledger.fabric.shim_peer import ShimPeer, World

__all__ = [
    "CHAINCODE",
    "CHANNEL",
    "GatewayDouble",
    "OwnTransaction",
    "double_fabric_config",
]

CHANNEL = "ibx-channel"
"""The double's channel."""
CHAINCODE = "ibx-ledger"
"""The chaincode's name on it."""

_MAX_MESSAGE = 64 << 20
_SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.so_reuseport", 0),
]
METHODS = ("Evaluate", "Endorse", "Submit", "CommitStatus", "ChaincodeEvents")
"""The Gateway's methods (for :meth:`GatewayDouble.fail_next` and :meth:`GatewayDouble.seen`)."""

_READERS_DENIED = (
    "Failed evaluating policy on signed data during check policy on channel [{channel}] with "
    "policy [/Channel/Application/Readers]: [implicit policy evaluation failed - 0 sub-policies "
    "were satisfied, but this policy requires 1 of the 'Readers' sub-policies to be satisfied]"
)
_NO_POLICIES = "Failed to get policy manager for channel [{channel}]"
"""The ACL check's answer for a channel the peer has not joined (``core/policy/policy.go``)."""
_WRITERS_DENIED = (
    "implicit policy evaluation failed - 0 sub-policies were satisfied, but this policy "
    "requires 1 of the 'Writers' sub-policies to be satisfied: permission denied"
)


T = TypeVar("T")


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: GatewayError) -> None:
    """Fail the call as Fabric's ``newRpcError`` / ``status.Error`` do: the details in
    ``grpc-status-details-bin``, and no such trailer when there are none (grpc-go sends
    it only for a status with details)."""
    if not error.details:
        await context.abort(error.code, error.message)
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    for detail in error.details:
        status.details.add().Pack(detail)
    rich = rpc_status.to_status(status)
    await context.abort(rich.code, rich.details, rich.trailing_metadata)


@dataclass
class _Fault:
    code: grpc.StatusCode
    times: int
    after: bool


@dataclass(frozen=True)
class OwnTransaction:
    """A transaction the double endorsed, ordered and committed by itself."""

    tx_id: str
    code: TxCode
    block: int
    payload: bytes


class GatewayDouble:
    """The Gateway double (see the module docstring). All state lives on one asyncio
    loop in a background thread; the public methods are synchronous and thread-safe.

    Args:
        pki: the consortium's PKI: the channel's MSPs, the endorsing peers, the TLS server.
        chaincode_address: where the ``ibx ledger chaincode`` service listens.
        chaincode_id: the package id the service was started with (checked on REGISTER).
        channel: the channel name.
        chaincode: the chaincode name.
        batch_size: transactions per block.
        batch_timeout: seconds before a partial block is cut.
    """

    def __init__(
        self,
        pki: FabricPki,
        chaincode_address: str,
        *,
        chaincode_id: str | None = None,
        channel: str = CHANNEL,
        chaincode: str = CHAINCODE,
        batch_size: int = 1,
        batch_timeout: float = 0.02,
    ) -> None:
        self.pki = pki
        self.chaincode_address = chaincode_address
        self.chaincode_id = chaincode_id
        self.channel = channel
        self.chaincode = chaincode
        self.batch_size = batch_size
        """Transactions per block (the orderer's ``BatchSize.MaxMessageCount``)."""
        self._default_batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.rival = pki.organisations[0].issue("rival@org1.example.com")
        """The identity of the double's own transactions (:meth:`submit_own`)."""
        self.world = World()
        self.msps = ChannelMsps(pki.organisations)
        self.committer = Committer(
            self.world,
            self.msps,
            channel=channel,
            chaincode=chaincode,
            policy=lambda: self.endorsers.required,
        )
        self.endorsers = Endorsers(
            [
                Peer(f"peer0.org{i}.example.com:{7051 + 2000 * (i - 1)}", identity)
                for i, identity in enumerate(pki.peers, 1)
            ],
            self.msps,
            self.committer,
            self.world,
            channel=channel,
            chaincode=chaincode,
        )
        self.port = 0
        self._faults: dict[str, list[_Fault]] = {m: [] for m in METHODS}
        self._seen: dict[str, list[str]] = {m: [] for m in METHODS}
        self._compete: list[tuple[bytes, ...]] = []
        self._pending: list[bytes] = []
        self._held = False
        self._timer: asyncio.TimerHandle | None = None
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self._committed: asyncio.Condition | None = None
        self._commit_order: asyncio.Lock | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def peers(self) -> tuple[Peer, ...]:
        """The endorsing peers, one per organisation (the first is the Gateway's own)."""
        return self.endorsers.peers

    @property
    def endorsers_required(self) -> int:
        """Distinct organisations whose endorsements a transaction needs (the policy)."""
        return self.endorsers.required

    @endorsers_required.setter
    def endorsers_required(self, count: int) -> None:
        self.endorsers.required = count

    @property
    def endorsers_available(self) -> int:
        """How many peers, in organisation order, answer (the rest are unreachable)."""
        return self.endorsers.available

    @endorsers_available.setter
    def endorsers_available(self, count: int) -> None:
        self.endorsers.available = count

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` (valid once started; the same after a restart)."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the gRPC server is up."""
        return self._server is not None

    def start(self) -> GatewayDouble:
        """Serve (again): the first start dials the chaincode and binds a free port; a
        restart binds the same port, with the channel's state as it was."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="fabric-gateway-double", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
            self._run(self._setup())
        self._run(self._serve())
        return self

    def stop(self) -> None:
        """Take the Gateway down (in-flight calls fail); the channel keeps its state and
        transactions already ordered are still committed."""
        if self._loop is not None and self._server is not None:
            self._run(self._unserve())

    def close(self) -> None:
        """Stop, close the chaincode connection and end the loop thread."""
        if self._loop is None:
            return
        self.stop()
        self._run(self._teardown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> GatewayDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- knobs and records -------------------------------------------------------------

    def fail_next(
        self, method: str, code: grpc.StatusCode, times: int = 1, *, after: bool = False
    ) -> None:
        """Fail the next ``times`` calls of ``method`` with ``code``: before doing anything,
        or, ``after=True``, after doing the work (the answer is lost: a Submit was ordered,
        an Endorse simulated).

        Raises:
            ValueError: an unknown method.
        """
        if method not in self._faults:
            raise ValueError(f"unknown Gateway method {method!r} (one of {METHODS})")
        with self._guard:
            self._faults[method].append(_Fault(code, times, after))

    def reset(self) -> None:
        """Forget the faults and competing transactions, restore the knobs, release commits
        and the chaincode."""
        with self._guard:
            for faults in self._faults.values():
                faults.clear()
            self._compete.clear()
        self.endorsers_required = 1
        self.endorsers_available = len(self.endorsers.peers)
        self.batch_size = self._default_batch_size
        self.release_commits()
        self.release_chaincode()

    def hold_chaincode(self) -> None:
        """Make the chaincode hang: proposals wait before they reach it (and keep their
        transaction ids executing, as on a real peer) until :meth:`release_chaincode`."""
        self._run(self._set_free(False))

    def release_chaincode(self) -> None:
        """Let the held proposals run (their callers may be long gone)."""
        if self._loop is not None:
            self._run(self._set_free(True))

    async def _set_free(self, free: bool) -> None:
        if free:
            self.endorsers.free.set()
        else:
            self.endorsers.free.clear()

    def seen(self, method: str) -> list[str]:
        """The transaction ids ``method`` was called with, in order (retries included)."""
        with self._guard:
            return list(self._seen[method])

    def hold_commits(self) -> None:
        """Keep ordered transactions out of blocks until :meth:`release_commits`."""
        self._held = True

    def release_commits(self) -> None:
        """Cut and commit every held transaction (in blocks of :attr:`batch_size`)."""
        self._held = False
        if self._loop is not None:
            self._run(self._drain())

    def compete_next(self, args: Sequence[bytes]) -> None:
        """Before the next submitted transaction is ordered, endorse and commit one of the
        double's own with chaincode arguments ``args`` (an MVCC conflict, deterministically)."""
        with self._guard:
            self._compete.append(tuple(args))

    def submit_own(self, args: Sequence[bytes]) -> OwnTransaction:
        """Endorse, order and commit a transaction as :attr:`rival`; wait for its block.

        Raises:
            RuntimeError: the endorsement failed (the message says why).
        """
        return self._run(self._submit_own(tuple(args)))

    @property
    def height(self) -> int:
        """The channel's block height (the next block's number)."""
        return self.committer.height

    def status(self, tx_id: str) -> tuple[TxCode, int] | None:
        """A transaction's committed (first) code and block."""
        return self.committer.status(tx_id)

    # -- loop plumbing -----------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        assert self._loop is not None, "the Gateway double is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _setup(self) -> None:
        self._committed = asyncio.Condition()
        self._commit_order = asyncio.Lock()
        self.endorsers.shim = await ShimPeer.dial(
            self.chaincode_address, chaincode_id=self.chaincode_id, namespace=self.chaincode
        )

    async def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.endorsers.shim is not None:
            await self.endorsers.shim.close()
            self.endorsers.shim = None
        # Whatever is still running on the loop (cuts, abandoned handlers) ends here.
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    async def _serve(self) -> None:
        if self._server is not None:
            return
        server = grpc.aio.server(options=_SERVER_OPTIONS)
        gateway_pb2_grpc.add_GatewayServicer_to_server(_Servicer(self), server)
        credentials = grpc.ssl_server_credentials(
            [(self.pki.tls_server_key_pem, self.pki.tls_server_cert_pem)]
        )
        port = server.add_secure_port(f"127.0.0.1:{self.port}", credentials)
        if not port:
            raise OSError(f"the Gateway double could not bind 127.0.0.1:{self.port}")
        await server.start()
        self.port = port
        self._server = server

    async def _unserve(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(None)

    # -- faults ------------------------------------------------------------------------

    def _record(self, method: str, tx_id: str) -> None:
        with self._guard:
            self._seen[method].append(tx_id)

    def _take_fault(self, method: str, after: bool) -> _Fault | None:
        with self._guard:
            for fault in self._faults[method]:
                if fault.after == after:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults[method].remove(fault)
                    return fault
        return None

    def _injected(self, method: str, *, after: bool) -> None:
        fault = self._take_fault(method, after)
        if fault is not None:
            when = "after doing its work" if after else "before doing anything"
            raise GatewayError(
                fault.code, f"the Gateway double failed this {method} {when} (injected)"
            )

    # -- proposals ---------------------------------------------------------------------

    # -- ordering and commit -----------------------------------------------------------

    def _check_envelope(self, envelope: Any) -> str:
        """The orderer's Broadcast checks; the transaction id."""
        try:
            payload = common_pb2.Payload.FromString(envelope.payload)
            channel_header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
            signature_header = common_pb2.SignatureHeader.FromString(
                payload.header.signature_header
            )
        except DecodeError as exc:
            raise GatewayError(
                grpc.StatusCode.ABORTED,
                "received unsuccessful response from orderer: status=BAD_REQUEST, "
                f"info=bad payload: {exc}",
            ) from exc
        try:
            self.msps.verify(
                signature_header.creator, self.channel, envelope.payload, envelope.signature
            )
        except AccessDeniedError as exc:
            raise GatewayError(
                grpc.StatusCode.ABORTED,
                "received unsuccessful response from orderer: status=FORBIDDEN, "
                f"info={_WRITERS_DENIED}",
            ) from exc
        return str(channel_header.tx_id)

    async def _order(self, raw: bytes) -> None:
        with self._guard:
            rivals = list(self._compete)
            self._compete.clear()
        for args in rivals:
            await self._submit_own(args)
        self._pending.append(raw)
        await self._schedule()

    async def _schedule(self) -> None:
        if self._held:
            return
        if len(self._pending) >= self.batch_size:
            asyncio.get_running_loop().create_task(self._cut())
        elif self._pending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self.batch_timeout, lambda: asyncio.ensure_future(self._cut())
            )

    async def _cut(self) -> None:
        assert self._commit_order is not None
        async with self._commit_order:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._held or not self._pending:
                return
            envelopes = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            self.committer.commit(envelopes)
            await self._notify()
        if self._pending:
            await self._schedule()

    async def _drain(self) -> None:
        while self._pending and not self._held:
            await self._cut()

    async def _notify(self) -> None:
        assert self._committed is not None
        async with self._committed:
            self._committed.notify_all()

    async def _wait_for(self, ready: Callable[[], bool]) -> None:
        assert self._committed is not None
        async with self._committed:
            await self._committed.wait_for(ready)

    async def _submit_own(self, args: tuple[bytes, ...]) -> OwnTransaction:
        raw = signed_proposal(self.rival, self.channel, self.chaincode, args)
        proposal = Endorsers.unpack(raw.signed)
        try:
            prepared = await self.endorsers.endorse(proposal)
        except GatewayError as exc:
            raise RuntimeError(f"{exc.message}: {[d.message for d in exc.details]}") from None
        envelope = common_pb2.Envelope(
            payload=prepared.payload, signature=self.rival.sign(prepared.payload)
        )
        assert self._commit_order is not None
        async with self._commit_order:
            block = self.committer.commit([envelope.SerializeToString()])
        await self._notify()
        answer = proposal_response_pb2.ProposalResponsePayload.FromString(
            transaction_pb2.ChaincodeActionPayload.FromString(
                transaction_pb2.Transaction.FromString(
                    common_pb2.Payload.FromString(prepared.payload).data
                )
                .actions[0]
                .payload
            ).action.proposal_response_payload
        )
        result = proposal_pb2.ChaincodeAction.FromString(answer.extension).response.payload
        code = block.transactions[0].code
        return OwnTransaction(raw.tx_id, code, block.number, bytes(result))

    # -- signed requests (CommitStatus, ChaincodeEvents) ---------------------------------

    def _check_signed(
        self, identity: bytes, channel: str, request: bytes, signature: bytes
    ) -> None:
        """The Gateway's ``CheckACL`` (the channel's Readers) on a signed request.

        Raises:
            GatewayError: PERMISSION_DENIED: an unknown channel (no policy manager) or a
                signature the channel's MSPs do not accept.
        """
        if channel != self.channel:
            raise GatewayError(
                grpc.StatusCode.PERMISSION_DENIED, _NO_POLICIES.format(channel=channel)
            )
        try:
            self.msps.verify(identity, channel, request, signature)
        except AccessDeniedError as exc:
            raise GatewayError(
                grpc.StatusCode.PERMISSION_DENIED, _READERS_DENIED.format(channel=channel)
            ) from exc

    async def _commit_status(self, signed: Any) -> Any:
        if not signed.request:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, "a commit status request is required"
            )
        try:
            request = gateway_pb2.CommitStatusRequest.FromString(signed.request)
        except DecodeError as exc:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, f"invalid status request: {exc}"
            ) from exc
        if not request.identity:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "no identity provided")
        if not request.channel_id:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "no channel ID provided")
        if not request.transaction_id:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, "transaction ID should not be empty"
            )
        self._check_signed(request.identity, request.channel_id, signed.request, signed.signature)
        tx_id = request.transaction_id
        await self._wait_for(lambda: self.committer.status(tx_id) is not None)
        status = self.committer.status(tx_id)
        assert status is not None
        return gateway_pb2.CommitStatusResponse(result=status[0], block_number=status[1])

    async def _events(self, signed: Any) -> AsyncIterator[Any]:
        if not signed.request:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, "a chaincode events request is required"
            )
        try:
            request = gateway_pb2.ChaincodeEventsRequest.FromString(signed.request)
        except DecodeError as exc:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, f"invalid chaincode events request: {exc}"
            ) from exc
        self._check_signed(request.identity, request.channel_id, signed.request, signed.signature)
        after = request.after_transaction_id
        start = self.committer.block_of(after) if after else None
        if start is None:
            position = request.start_position.WhichOneof("Type")
            if position == "specified":
                start = request.start_position.specified.number
            elif position in {None, "next_commit"}:
                start = self.committer.height
            else:
                raise GatewayError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"invalid start position type: *orderer.SeekPosition_{position.title()}",
                )
        passed = not after
        block_number = start
        while True:
            wanted = block_number

            def arrived(at: int = wanted) -> bool:
                return self.committer.height > at

            await self._wait_for(arrived)
            for block in self.committer.blocks[block_number:]:
                events = []
                for tx in block.transactions:
                    if not passed:
                        passed = tx.tx_id == after
                        continue
                    if (
                        tx.code == transaction_pb2.VALID
                        and tx.event is not None
                        and tx.event.chaincode_id == request.chaincode_id
                    ):
                        events.append(tx.event)
                block_number = block.number + 1
                if events:
                    yield gateway_pb2.ChaincodeEventsResponse(
                        events=events, block_number=block.number
                    )


class _Servicer(gateway_pb2_grpc.GatewayServicer):  # type: ignore[misc]
    """The ``gateway.Gateway`` service over a :class:`GatewayDouble`."""

    def __init__(self, double: GatewayDouble) -> None:
        self._double = double

    async def _call(
        self,
        method: str,
        tx_id: str,
        context: grpc.aio.ServicerContext[Any, Any],
        work: Callable[[], Awaitable[T]],
    ) -> T | None:
        double = self._double
        double._record(method, tx_id)
        try:
            double._injected(method, after=False)
            result = await work()
            double._injected(method, after=True)
        except GatewayError as error:
            await _abort(context, error)
            return None
        return result

    async def Evaluate(self, request: Any, context: Any) -> Any:
        double = self._double

        async def work() -> Any:
            return await double.endorsers.evaluate(Endorsers.unpack(request.proposed_transaction))

        return await self._call(
            "Evaluate", _proposal_tx_id(request.proposed_transaction), context, work
        )

    async def Endorse(self, request: Any, context: Any) -> Any:
        double = self._double

        async def work() -> Any:
            prepared = await double.endorsers.endorse(
                Endorsers.unpack(request.proposed_transaction)
            )
            return gateway_pb2.EndorseResponse(prepared_transaction=prepared)

        return await self._call(
            "Endorse", _proposal_tx_id(request.proposed_transaction), context, work
        )

    async def Submit(self, request: Any, context: Any) -> Any:
        double = self._double
        envelope = request.prepared_transaction

        async def work() -> Any:
            if not request.HasField("prepared_transaction"):
                raise GatewayError(
                    grpc.StatusCode.INVALID_ARGUMENT, "a prepared transaction is required"
                )
            if not envelope.signature:
                raise GatewayError(
                    grpc.StatusCode.INVALID_ARGUMENT, "prepared transaction must be signed"
                )
            if request.channel_id != double.channel:  # registry.orderers -> config
                raise GatewayError(
                    grpc.StatusCode.FAILED_PRECONDITION, no_channel_config(request.channel_id)
                )
            double._check_envelope(envelope)
            await double._order(envelope.SerializeToString())
            return gateway_pb2.SubmitResponse()

        return await self._call("Submit", _envelope_tx_id(envelope), context, work)

    async def CommitStatus(self, request: Any, context: Any) -> Any:
        double = self._double

        async def work() -> Any:
            return await double._commit_status(request)

        return await self._call("CommitStatus", _status_tx_id(request), context, work)

    async def ChaincodeEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        double = self._double
        double._record("ChaincodeEvents", "")
        try:
            double._injected("ChaincodeEvents", after=False)
            async for response in double._events(request):
                yield response
        except GatewayError as error:
            await _abort(context, error)


def _proposal_tx_id(signed: Any) -> str:
    try:
        proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
        header = common_pb2.Header.FromString(proposal.header)
        return str(common_pb2.ChannelHeader.FromString(header.channel_header).tx_id)
    except DecodeError:
        return ""


def _envelope_tx_id(envelope: Any) -> str:
    try:
        payload = common_pb2.Payload.FromString(envelope.payload)
        return str(common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id)
    except DecodeError:
        return ""


def _status_tx_id(signed: Any) -> str:
    try:
        return str(gateway_pb2.CommitStatusRequest.FromString(signed.request).transaction_id)
    except DecodeError:
        return ""


def double_fabric_config(
    directory: Path,
    double: GatewayDouble,
    mode: FabricMode = FabricMode.FULL,
    *,
    identity: Identity | None = None,
    password: bytes | None = None,
    tls_root_pem: bytes | None = None,
    **changes: Any,
) -> FabricConfig:
    """A :class:`FabricConfig` for the double: writes the client's certificate, key (mode
    0600, encrypted under ``password`` if given) and the TLS root into ``directory``.
    ``changes`` override any other field (``batch_size``, ``timeout``, ``retries``, ...)."""
    files = double.pki.write_client(
        directory, identity, password=password, tls_root_pem=tls_root_pem
    )
    who = identity or double.pki.client
    config = FabricConfig(
        mode=mode,
        gateway=double.address,
        tls_root=files.tls_root,
        msp_id=who.msp_id,
        cert=files.certificate,
        key=files.key,
        channel=double.channel,
        chaincode=double.chaincode,
        key_password=password,
        timeout=10.0,
        retries=4,
    )
    return dataclasses.replace(config, **changes)
