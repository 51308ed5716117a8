"""A Fabric Gateway client (``gateway.Gateway``: Evaluate, Endorse, Submit, CommitStatus,
ChaincodeEvents) on ``hyperledger-fabric-protos`` and ``grpcio``, and the ledger's
channel over it.

One TLS gRPC channel to one organisation's gateway peer. Every request is signed
by the client identity (:mod:`ledger.fabric.identity`). A call that fails
transiently (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``) is
resent as the very same signed message, so a transaction keeps its transaction
id across retries and can commit at most once. Fabric's answers become the
errors of :mod:`ledger.fabric.errors`: a chaincode refusal
(:class:`ChaincodeRefusedError`, found inside Fabric's wrapping of the message
or in the per-peer ``gateway.ErrorDetail``\\ s), too few or disagreeing
endorsers (:class:`EndorsementError` naming each peer), an MVCC conflict at
commit (:class:`CommitConflictError`), another invalid commit
(:class:`TransactionInvalidError`), and a gateway that does not answer
(:class:`FabricUnavailableError`). A peer that has not joined the channel, or
a chaincode not defined on it, is a :class:`FabricConfigError` at once: the
peer answers an unknown channel with ``UNAVAILABLE`` ("failed to get config
for channel [...]"), which is configuration, not an outage, so it is not
retried. Nothing here logs keys or signatures.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import grpc
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.peer import transaction_pb2
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from google.rpc import status_pb2  # type: ignore[import-untyped]

from ledger.fabric import wire
from ledger.fabric.config import FabricConfig
from ledger.fabric.errors import (
    ChaincodeRefusedError,
    CommitConflictError,
    EndorsementError,
    EndorserFailure,
    FabricConfigError,
    FabricError,
    FabricUnavailableError,
    TransactionInvalidError,
)
from ledger.fabric.identity import FabricIdentity
from ledger.fabric.proposal import (
    PreparedTransaction,
    SignedProposal,
    signed_chaincode_events_request,
    signed_commit_status_request,
    signed_proposal,
)
from ledger.fabric.wire import (
    AnchorHead,
    AnchorPage,
    AnchorRequest,
    AppendBatch,
    ChannelHead,
    EntryPage,
    LedgerEvent,
    LogGenesis,
    WireError,
    find_refusal,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ChaincodeEvent",
    "GatewayChannel",
    "GatewayClient",
    "Submitted",
    "open_channel",
]

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES: Final = 64 << 20
"""The largest gRPC message either side may send (a full batch is up to 8 MiB of leaves)."""

TRANSIENT: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
"""Status codes after which the same signed message is sent again."""

CONFLICTS: Final = frozenset({"MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"})
"""Commit codes meaning another transaction changed what this one read."""

_DETAILS_KEY: Final = "grpc-status-details-bin"
_TLS_REFUSALS: Final = (
    "handshake failed",
    "hostname verification",
    "certificate_verify_failed",
    "certificate verify failed",
)
"""gRPC's words (lower case) for a peer certificate the TLS root or server name does not
verify: not transient, so not retried."""

_NO_CHANNEL: Final = re.compile(r"failed to get config for channel \[(?P<channel>[^\]]*)\]")
"""The gateway's answer for a channel its peer has not joined (``registry.go``:
``connectChannelPeers`` and ``config``; UNAVAILABLE on Evaluate, FAILED_PRECONDITION on
Submit)."""
_NO_CHAINCODE: Final = (
    # Evaluate (registry.go: evaluator)
    re.compile(
        r"no peers available to evaluate chaincode (?P<chaincode>\S+) in channel (?P<channel>\S+)"
    ),
    # Endorse, also for an unknown channel (discovery/endorsement/endorsement.go)
    re.compile(
        r"No metadata was found for chaincode (?P<chaincode>\S+) in channel (?P<channel>\S+)"
    ),
)
"""The gateway's answers (FAILED_PRECONDITION) for a chaincode no peer of the channel
runs: not defined (committed) on the channel, or the channel unknown."""
_NO_POLICIES: Final = re.compile(
    r"Failed to get policy manager for channel \[(?P<channel>[^\]]*)\]"
)
"""The peer's ACL check's answer (PERMISSION_DENIED, ``core/policy/policy.go``) to a signed
commit-status or events request for a channel it has not joined."""
_STILL_RUNNING: Final = "txid: {tx_id}({channel}) exists"
"""A peer's answer (``core/chaincode/transaction_contexts.go``) to a proposal whose
transaction id is still executing in the chaincode."""

T = TypeVar("T")


@dataclass(frozen=True)
class Submitted:
    """A transaction committed valid.

    Attributes:
        tx_id: its transaction id.
        block: the block that committed it.
        payload: the chaincode's response payload, as endorsed.
    """

    tx_id: str
    block: int
    payload: bytes


@dataclass(frozen=True)
class ChaincodeEvent:
    """A chaincode event as committed (Fabric's ``peer.ChaincodeEvent``)."""

    chaincode: str
    tx_id: str
    name: str
    payload: bytes


@dataclass(frozen=True)
class _Failure:
    """A gRPC error as the gateway sent it: code, message and per-peer details."""

    code: Any
    message: str
    details: tuple[EndorserFailure, ...]

    @classmethod
    def of(cls, error: grpc.RpcError) -> _Failure:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        message = error.details() if hasattr(error, "details") else str(error)
        return cls(code, message or "", _error_details(error))

    def refusal(self) -> wire.Refusal | None:
        for text in self.texts():
            refusal = find_refusal(text)
            if refusal is not None:
                return refusal
        return None

    def describe(self) -> str:
        return f"{self.code.name}: {self.message}"

    def texts(self) -> tuple[str, ...]:
        return (self.message, *(d.message for d in self.details))

    def still_running(self, channel: str, tx_id: str) -> bool:
        """Whether a peer answered that ``tx_id`` is still executing in the chaincode."""
        running = _STILL_RUNNING.format(tx_id=tx_id, channel=channel)
        return self.code == grpc.StatusCode.ABORTED and any(running in t for t in self.texts())


def _error_details(error: grpc.RpcError) -> tuple[EndorserFailure, ...]:
    """The ``gateway.ErrorDetail``\\ s of the ``google.rpc.Status`` in the trailers."""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return ()
        details = []
        for packed in status.details:
            if packed.Is(gateway_pb2.ErrorDetail.DESCRIPTOR):
                detail = gateway_pb2.ErrorDetail()
                packed.Unpack(detail)
                details.append(EndorserFailure(detail.address, detail.msp_id, detail.message))
        return tuple(details)
    return ()


def _describe_details(details: Sequence[EndorserFailure]) -> str:
    return "; ".join(f"{d.address} ({d.msp_id}): {d.message}" for d in details)


class GatewayClient:
    """A signed-request client of one organisation's Fabric Gateway peer.

    Args:
        endpoint: the gateway peer, ``host:port``.
        tls_root_pem: PEM of the CA that issued the peer's TLS certificate.
        identity: the client identity that signs every request.
        server_name: the name the peer's TLS certificate must carry, if not the host.
        timeout: seconds for one gRPC call.
        retries: how many times a transiently failed call is resent (same message).
        backoff: seconds before the first resend; doubles each time, at most 5 s.
    """

    def __init__(
        self,
        endpoint: str,
        tls_root_pem: bytes,
        identity: FabricIdentity,
        *,
        server_name: str | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.2,
    ) -> None:
        if retries < 0 or timeout <= 0 or backoff < 0:
            raise FabricConfigError("timeout must be positive; retries and backoff not negative")
        self.endpoint = endpoint
        self.identity = identity
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # reconnect soon after an outage (gRPC's default waits 1 s, then up to 120 s)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        credentials = grpc.ssl_channel_credentials(root_certificates=tls_root_pem)
        self._channel = grpc.secure_channel(endpoint, credentials, options=options)
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self._closed = threading.Event()

    # -- the calls ----------------------------------------------------------------------

    def evaluate(self, channel: str, chaincode: str, args: Sequence[bytes]) -> bytes:
        """Run a query on one peer; its response payload.

        A resent query whose first attempt is still running in the chaincode (the peer
        answers "txid: ... exists") is not waited for: :class:`FabricUnavailableError`.

        Raises:
            ChaincodeRefusedError: the chaincode refused.
            EndorsementError: no peer could run it (with each peer's answer).
            FabricUnavailableError: the gateway did not answer after the retries, or the
                first attempt of a resent query is still running in the chaincode.
            FabricConfigError: the gateway's TLS certificate does not verify against the
                TLS root (or the server name); the gateway's peer has not joined
                ``channel``, or no peer of it runs ``chaincode``.
            FabricError: the gateway refused the request otherwise.
        """
        proposal = self._propose(channel, chaincode, args)
        request = proposal.evaluate_request()
        try:
            response = self._call(
                "Evaluate",
                lambda: self._stub.Evaluate(request, timeout=self.timeout),
                proposal=proposal,
            )
        except _GatewayRefusalError as exc:
            raise self._endorse_error("evaluate", proposal, exc.failure) from exc.cause
        result = response.result
        if result.status >= 400:  # the gateway maps chaincode errors to gRPC errors; be safe
            refusal = find_refusal(result.message)
            if refusal is not None:
                raise ChaincodeRefusedError(refusal)
            raise FabricError(f"the chaincode answered {result.status}: {result.message}")
        payload: bytes = result.payload
        return payload

    def submit(self, channel: str, chaincode: str, args: Sequence[bytes]) -> Submitted:
        """Endorse, sign, submit a transaction and wait until it is committed valid.

        Every resend is the same signed message (the same transaction id). When a resent
        Endorse is answered "txid: ... exists", the first attempt is still executing in the
        chaincode (it outlived the call's deadline): the call gives up with
        :class:`FabricUnavailableError` rather than wait for it. That is safe: this client
        never received that attempt's endorsement, so it never signed an envelope for it,
        and the transaction id can never be ordered; the caller's next try proposes anew
        (the shipper's next pass re-reads the channel's head, and the chaincode refuses a
        batch that does not start there, so nothing is lost or stored twice).

        Raises:
            ChaincodeRefusedError: the chaincode refused at endorsement.
            EndorsementError: too few endorsers answered, or they disagreed.
            CommitConflictError: committed invalid with an MVCC or phantom read conflict.
            TransactionInvalidError: committed invalid otherwise.
            FabricUnavailableError: the gateway did not answer after the retries, or the
                first attempt of a resent Endorse is still running in the chaincode.
            FabricConfigError: the gateway's TLS certificate does not verify against the
                TLS root (or the server name); the gateway's peer has not joined
                ``channel``, or no peer of it runs ``chaincode``.
            FabricError: the gateway refused the request otherwise, or assembled another
                transaction than the one proposed.
        """
        proposal = self._propose(channel, chaincode, args)
        endorse = proposal.endorse_request()
        try:
            endorsed = self._call(
                "Endorse",
                lambda: self._stub.Endorse(endorse, timeout=self.timeout),
                proposal=proposal,
            )
        except _GatewayRefusalError as exc:
            raise self._endorse_error("endorse", proposal, exc.failure) from exc.cause
        prepared = PreparedTransaction.check(endorsed.prepared_transaction, proposal)
        submit = prepared.submit_request(self.identity)
        try:
            self._call("Submit", lambda: self._stub.Submit(submit, timeout=self.timeout))
        except _GatewayRefusalError as exc:
            raise FabricError(
                f"the Fabric gateway at {self.endpoint} did not order transaction "
                f"{proposal.tx_id}: {exc.failure.describe()}"
                + (f" ({_describe_details(exc.failure.details)})" if exc.failure.details else "")
            ) from exc.cause
        block = self.commit_status(channel, proposal.tx_id)
        return Submitted(proposal.tx_id, block, prepared.result)

    def commit_status(self, channel: str, tx_id: str) -> int:
        """Wait until ``tx_id`` is committed; the block number if it is valid.

        Raises:
            CommitConflictError: committed invalid with an MVCC or phantom read conflict.
            TransactionInvalidError: committed invalid otherwise.
            FabricUnavailableError: the gateway did not answer after the retries.
            FabricConfigError: the gateway's TLS certificate does not verify against the
                TLS root (or the server name).
            FabricError: the gateway refused the request.
        """
        request = signed_commit_status_request(self.identity, channel, tx_id)
        try:
            status = self._call(
                "CommitStatus", lambda: self._stub.CommitStatus(request, timeout=self.timeout)
            )
        except _GatewayRefusalError as exc:
            raise FabricError(
                f"the Fabric gateway at {self.endpoint} gave no commit status for "
                f"{tx_id}: {exc.failure.describe()}"
            ) from exc.cause
        try:
            code = transaction_pb2.TxValidationCode.Name(status.result)
        except ValueError:  # a code newer than these protobufs
            code = f"code {status.result}"
        block = int(status.block_number)
        if code == "VALID":
            return block
        if code in CONFLICTS:
            raise CommitConflictError(tx_id, code, block)
        raise TransactionInvalidError(tx_id, code, block)

    def chaincode_events(
        self, channel: str, chaincode: str, start_block: int | None = None
    ) -> Iterator[tuple[int, ChaincodeEvent]]:
        """``chaincode``'s events as committed, from ``start_block`` (default: the next
        block), in order. A broken stream is reopened after the last event delivered; the
        iterator ends when the client is closed.

        Raises:
            FabricUnavailableError: the gateway did not answer after the retries.
            FabricConfigError: the gateway's TLS certificate does not verify against the
                TLS root (or the server name), or its peer has not joined ``channel``.
            FabricError: the gateway refused the request.
        """
        block, after = start_block, ""
        failures = 0
        while not self._closed.is_set():
            request = signed_chaincode_events_request(
                self.identity, channel, chaincode, block, after_tx_id=after
            )
            try:
                stream = self._stub.ChaincodeEvents(request)
            except ValueError:  # gRPC: "Cannot invoke RPC on closed channel!"
                return
            try:
                for response in stream:
                    failures = 0
                    number = int(response.block_number)
                    for event in response.events:
                        block, after = number, event.tx_id
                        yield (
                            number,
                            ChaincodeEvent(
                                event.chaincode_id, event.tx_id, event.event_name, event.payload
                            ),
                        )
                return  # the server ended the stream
            except grpc.RpcError as exc:
                failure = _Failure.of(exc)
                if self._closed.is_set() or failure.code == grpc.StatusCode.CANCELLED:
                    return
                self._check_tls(failure, exc)
                self._check_placement(failure, exc)
                if failure.code not in TRANSIENT:
                    raise FabricError(
                        f"the Fabric gateway at {self.endpoint} refused the chaincode events "
                        f"stream: {failure.describe()}"
                    ) from exc
                failures += 1
                if failures > self.retries:
                    raise self._unavailable(failure) from exc
                logger.info(
                    "chaincode events stream from %s broke (%s); reopening",
                    self.endpoint,
                    failure.code.name,
                )
                self._pause(failures)
            finally:
                stream.cancel()

    def close(self) -> None:
        """Close the connection; open event streams end."""
        self._closed.set()
        self._channel.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside -------------------------------------------------------------------------

    def _propose(self, channel: str, chaincode: str, args: Sequence[bytes]) -> SignedProposal:
        return signed_proposal(self.identity, channel, chaincode, args, now=datetime.now(UTC))

    def _pause(self, attempt: int) -> None:
        self._closed.wait(min(self.backoff * (2 ** (attempt - 1)), 5.0))

    def _call(
        self, what: str, call: Callable[[], T], *, proposal: SignedProposal | None = None
    ) -> T:
        """``call()``, resent (the same message) after transient failures.

        Raises:
            FabricUnavailableError: still failing transiently after the retries; or, for a
                resent ``proposal``, a peer answered that its first attempt is still
                executing in the chaincode.
            FabricConfigError: the TLS handshake refused the peer's certificate; the peer
                has not joined the channel, or no peer of it runs the chaincode.
            FabricError: the client is closed.
            _GatewayRefusalError: any other gRPC error.
        """
        attempt = 0
        while True:
            try:
                return call()
            except ValueError as exc:  # gRPC: "Cannot invoke RPC on closed channel!"
                if self._closed.is_set():
                    raise FabricError(
                        f"the client of the Fabric gateway at {self.endpoint} is closed"
                    ) from exc
                raise
            except grpc.RpcError as exc:
                failure = _Failure.of(exc)
                self._check_tls(failure, exc)
                self._check_placement(failure, exc)
                if (
                    attempt
                    and proposal is not None
                    and failure.still_running(proposal.channel, proposal.tx_id)
                ):
                    raise FabricUnavailableError(
                        f"the Fabric gateway at {self.endpoint} did not answer: transaction "
                        f"{proposal.tx_id} ({what}) outlived its deadline and is still running "
                        "in the chaincode, so the peer refuses it again meanwhile; not waiting "
                        f"for it ({_describe_details(failure.details) or failure.message})"
                    ) from exc
                if failure.code not in TRANSIENT:
                    raise _GatewayRefusalError(failure, exc) from exc
                attempt += 1
                if attempt > self.retries or self._closed.is_set():
                    raise self._unavailable(failure) from exc
                logger.info(
                    "%s to %s failed (%s); resending the same request (%d of %d)",
                    what,
                    self.endpoint,
                    failure.code.name,
                    attempt,
                    self.retries,
                )
                self._pause(attempt)

    def _check_tls(self, failure: _Failure, exc: grpc.RpcError) -> None:
        """Raise when the failure is the TLS handshake refusing the peer's certificate.

        Raises:
            FabricConfigError: it is.
        """
        if failure.code == grpc.StatusCode.UNAVAILABLE and any(
            s in failure.message.lower() for s in _TLS_REFUSALS
        ):
            raise FabricConfigError(
                f"the Fabric gateway at {self.endpoint} failed TLS verification against the"
                f" configured TLS root (or server name): {failure.message}"
            ) from exc

    def _check_placement(self, failure: _Failure, exc: grpc.RpcError) -> None:
        """Raise when the gateway says its peer has not joined the channel, or that no peer
        of the channel runs the chaincode: configuration, never an outage (the real peer
        answers an unknown channel with UNAVAILABLE, which would otherwise be retried).

        Raises:
            FabricConfigError: it does.
        """
        code = failure.code
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION):
            found = _NO_CHANNEL.match(failure.message)
        elif code == grpc.StatusCode.PERMISSION_DENIED:
            found = _NO_POLICIES.match(failure.message)
        else:
            return
        if found is not None:
            raise FabricConfigError(
                f"the Fabric gateway at {self.endpoint} has not joined channel "
                f"{found['channel']!r} (is the channel name right?): {failure.describe()}"
            ) from exc
        if code != grpc.StatusCode.FAILED_PRECONDITION:
            return
        for pattern in _NO_CHAINCODE:
            found = pattern.search(failure.message)
            if found is not None:
                raise FabricConfigError(
                    f"no peer of channel {found['channel']!r} runs chaincode "
                    f"{found['chaincode']!r}, says the Fabric gateway at {self.endpoint} (are "
                    "the channel and chaincode names right, has the peer joined the channel, "
                    f"is the chaincode's definition committed on it?): {failure.describe()}"
                ) from exc

    def _unavailable(self, failure: _Failure) -> FabricUnavailableError:
        return FabricUnavailableError(
            f"the Fabric gateway at {self.endpoint} did not answer: {failure.describe()}"
        )

    def _endorse_error(self, what: str, proposal: SignedProposal, failure: _Failure) -> FabricError:
        refusal = failure.refusal()
        if refusal is not None:
            return ChaincodeRefusedError(refusal)
        if failure.code in (
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.UNKNOWN,
        ):
            message = (
                f"could not {what} transaction {proposal.tx_id} on channel {proposal.channel}: "
                f"{failure.message}"
            )
            if failure.details:
                message += f" [{_describe_details(failure.details)}]"
            return EndorsementError(message, failure.details)
        return FabricError(
            f"the Fabric gateway at {self.endpoint} refused to {what} transaction "
            f"{proposal.tx_id}: {failure.describe()}"
        )


class _GatewayRefusalError(Exception):
    """A non-transient gRPC error, for the call's own mapping."""

    def __init__(self, failure: _Failure, cause: grpc.RpcError) -> None:
        super().__init__(failure.describe())
        self.failure = failure
        self.cause = cause


class GatewayChannel:
    """One log of the ledger chaincode on one channel, through a :class:`GatewayClient`
    (implements :class:`ledger.fabric.channel.LedgerChannel`)."""

    def __init__(self, client: GatewayClient, channel: str, chaincode: str, log: str) -> None:
        self._client = client
        self._channel = channel
        self._chaincode = chaincode
        self._log = wire.check_log_id(log)

    @property
    def log(self) -> str:
        """The log id every call names."""
        return self._log

    @property
    def client(self) -> GatewayClient:
        """The gateway client."""
        return self._client

    def _args(self, function: str, *rest: bytes | str | int) -> list[bytes]:
        out = [function.encode(), self._log.encode()]
        for arg in rest:
            out.append(arg if isinstance(arg, bytes) else str(arg).encode())
        return out

    def _evaluate(self, function: str, *rest: bytes | str | int) -> bytes:
        return self._client.evaluate(self._channel, self._chaincode, self._args(function, *rest))

    def _submit(self, function: str, *rest: bytes | str | int) -> bytes:
        return self._client.submit(
            self._channel, self._chaincode, self._args(function, *rest)
        ).payload

    def genesis(self) -> LogGenesis | None:
        """The log's genesis, or None before :meth:`create`.

        Raises:
            FabricError: the query failed, or its answer is malformed.
        """
        try:
            data = self._evaluate(wire.GENESIS)
        except ChaincodeRefusedError as exc:
            if exc.refusal.code == "no-log":
                return None
            raise
        return _parse(LogGenesis.from_json, data)

    def create(self, vkey: str) -> LogGenesis:
        """Record the log with its checkpoint verifier key (idempotent for the same key).

        Raises:
            ChaincodeRefusedError: ``exists`` with another key, or ``not-pinned``.
            FabricError: as :meth:`GatewayClient.submit`.
        """
        genesis = LogGenesis(self._log, vkey)
        return _parse(LogGenesis.from_json, self._submit(wire.CREATE_LOG, genesis.to_json()))

    def head(self) -> ChannelHead:
        """Full mode's head (size 0 before the first batch of a created log).

        Raises:
            ChaincodeRefusedError: ``no-log``: the log was never created.
            FabricError: the query failed, or its answer is malformed.
        """
        return _parse(ChannelHead.from_json, self._evaluate(wire.HEAD))

    def entries(self, start: int, count: int) -> EntryPage:
        """Up to ``count`` stored leaf inputs from ``start``.

        Raises:
            FabricError: the query failed, or its answer is malformed.
        """
        return _parse(EntryPage.from_json, self._evaluate(wire.ENTRIES, start, count))

    def append(self, batch: AppendBatch) -> ChannelHead:
        """Submit one batch and wait until it is committed valid.

        Raises:
            ChaincodeRefusedError: refused at endorsement (gap, root mismatch, ...).
            CommitConflictError: another transaction moved the head first.
            TransactionInvalidError: committed invalid for another reason.
            EndorsementError: too few endorsers answered or they disagreed.
            FabricUnavailableError: the gateway kept failing after the retries.
        """
        return _parse(ChannelHead.from_json, self._submit(wire.APPEND, batch.to_json()))

    def anchor_head(self) -> AnchorHead:
        """Anchor mode's head (size 0 before the first anchor of a created log).

        Raises:
            ChaincodeRefusedError: ``no-log``: the log was never created.
            FabricError: the query failed, or its answer is malformed.
        """
        return _parse(AnchorHead.from_json, self._evaluate(wire.ANCHOR_HEAD))

    def anchors(self, after: int, count: int) -> AnchorPage:
        """Up to ``count`` anchored checkpoint notes of size greater than ``after``.

        Raises:
            FabricError: the query failed, or its answer is malformed.
        """
        return _parse(AnchorPage.from_json, self._evaluate(wire.ANCHORS, after, count))

    def anchor(self, request: AnchorRequest) -> AnchorHead:
        """Submit one checkpoint and wait until it is committed valid.

        Raises:
            ChaincodeRefusedError: refused at endorsement (not newer, inconsistent, ...).
            FabricError: as :meth:`append`.
        """
        return _parse(AnchorHead.from_json, self._submit(wire.ANCHOR, request.to_json()))

    def events(self, start_block: int | None = None) -> Iterator[LedgerEvent]:
        """This log's ledger events from ``start_block`` (default: the next block).

        Raises:
            FabricError: the stream failed, or an event of this chaincode is malformed.
        """
        names = (wire.EVENT_CREATED, wire.EVENT_APPENDED, wire.EVENT_ANCHORED)
        for block, event in self._client.chaincode_events(
            self._channel, self._chaincode, start_block
        ):
            if event.name not in names:
                continue
            try:
                parsed = LedgerEvent.from_payload(
                    event.name, event.payload, block=block, tx_id=event.tx_id
                )
            except WireError as exc:
                raise FabricError(
                    f"the ledger chaincode emitted a malformed event in block {block}: {exc}"
                ) from exc
            if parsed.log == self._log:
                yield parsed

    def close(self) -> None:
        """Close the connection."""
        self._client.close()


def _parse(parse: Callable[[bytes], T], data: bytes) -> T:
    try:
        return parse(data)
    except WireError as exc:
        raise FabricError(f"the ledger chaincode answered a malformed document: {exc}") from exc


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FabricConfigError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def open_channel(config: FabricConfig, log: str) -> GatewayChannel:
    """The ledger's log ``log`` on the channel ``config`` names, through its gateway.

    Raises:
        FabricConfigError: a file is missing or unreadable, the key or certificate is
            unusable (:meth:`FabricIdentity.from_files`), or the log id is malformed.
    """
    identity = FabricIdentity.from_files(
        config.cert, config.key, config.msp_id, config.key_password
    )
    tls_root = _read(config.tls_root, "Fabric TLS root certificate")
    try:
        wire.check_log_id(log)
    except WireError as exc:
        raise FabricConfigError(str(exc)) from exc
    client = GatewayClient(
        config.gateway,
        tls_root,
        identity,
        server_name=config.server_name,
        timeout=config.timeout,
        retries=config.retries,
    )
    return GatewayChannel(client, config.channel, config.chaincode, log)
