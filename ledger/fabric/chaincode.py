"""The ledger chaincode as a service: :class:`ledger.fabric.contract.LedgerContract` behind
the Fabric chaincode shim (``ibx ledger chaincode``; docs/fabric.md).

Fabric's peer dials the service (chaincode-as-a-service) and speaks the shim
protocol over one gRPC stream: REGISTER / REGISTERED / READY, then for each
proposal a TRANSACTION message, the chaincode's state requests and a COMPLETED
reply. The service is built on fabric-chaincode-python's ``ChaincodeService``
and ``Handler``, with two corrections in :class:`LedgerHandler`:

- the library drops the stub's event: the handler puts it into the COMPLETED
  message's ``chaincode_event``, where the peer reads it
  (``core/chaincode/chaincode_support.go``: ``processChaincodeExecutionResult``);
- the library hands the peer's ERROR replies back as values: the handler gives the
  contract a :class:`ShimWorldState` that sends GET_STATE, GET_STATE_BY_RANGE,
  QUERY_STATE_NEXT/CLOSE and the writes itself and raises on an ERROR reply.
  Writes are buffered and sent when the contract has succeeded, as one
  WRITE_BATCH_STATE message per ``max_size_write_batch`` writes when the peer
  offered batches in its READY message (Fabric 2.5's default), else as PUT_STATE
  messages.

The library is imported lazily, here only: its import configures the root logger
(``basicConfig(level=DEBUG)``) and logs every message on the ``asyncio`` logger;
:func:`_shim` undoes the first and quiets the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ledger.errors import LedgerError
from ledger.fabric.contract import ContractRefusal, LedgerContract, Outcome

__all__ = [
    "ChaincodeServiceConfig",
    "ChaincodeServiceError",
    "LedgerChaincode",
    "LedgerHandler",
    "ShimRequestError",
    "ShimStreamEndedError",
    "ShimWorldState",
    "new_chaincode",
    "new_handler",
    "run_service",
]

logger = logging.getLogger(__name__)

_loaded: SimpleNamespace | None = None

STOP_GRACE = 0.25
"""Seconds a stopping service waits for its (already ended) peer streams to close."""


class ChaincodeServiceError(LedgerError):
    """The chaincode service cannot start (its address cannot be bound)."""

    title = "chaincode service error"


class ShimRequestError(LedgerError):
    """The peer answered a state request with an ERROR message."""

    title = "chaincode state request failed"


class ShimStreamEndedError(ShimRequestError):
    """A state request's reply cannot come: the peer's stream ended, or the service is
    stopping (routine, so not logged as an error)."""


def _shim() -> SimpleNamespace:
    """The chaincode library's modules, imported once with its logging side effects undone.

    Raises:
        ImportError: fabric-chaincode-python is not installed.
    """
    global _loaded  # noqa: PLW0603 -- a lazily imported library, loaded once per process
    if _loaded is not None:
        return _loaded
    root = logging.getLogger()
    aio = logging.getLogger("asyncio")
    root_handlers, root_level = list(root.handlers), root.level
    aio_handlers = list(aio.handlers)
    try:
        from fabric_chaincode_python.fabric_shim import (  # noqa: PLC0415 -- lazily, see module doc
            handler,
            interfaces,
            msg_queue_handler,
            response,
            server,
            stub,
        )
        from fabric_protos.ledger.queryresult import (  # noqa: PLC0415
            kv_query_result_pb2,
        )
        from fabric_protos.peer import (  # noqa: PLC0415
            chaincode_pb2,
            chaincode_shim_pb2,
            chaincode_shim_pb2_grpc,
        )
    finally:
        for added in [h for h in root.handlers if h not in root_handlers]:
            root.removeHandler(added)
        root.setLevel(root_level)
        for added in [h for h in aio.handlers if h not in aio_handlers]:
            aio.removeHandler(added)
        aio.setLevel(logging.WARNING)
    _loaded = SimpleNamespace(
        handler=handler,
        interfaces=interfaces,
        queue=msg_queue_handler,
        response=response,
        server=server,
        stub=stub,
        kv=kv_query_result_pb2,
        cc=chaincode_pb2,
        shim=chaincode_shim_pb2,
        shim_grpc=chaincode_shim_pb2_grpc,
    )
    return _loaded


# -- the world state over the shim ---------------------------------------------------------


class ShimWorldState:
    """:class:`ledger.fabric.contract.WorldState` for one transaction, over the shim stream.

    Reads go to the peer as they are asked (the peer records them in the read set);
    writes are buffered until :meth:`flush`.
    """

    def __init__(self, handler: Any, channel_id: str, tx_id: str) -> None:
        self._handler = handler
        self._channel_id = channel_id
        self._tx_id = tx_id
        self._writes: dict[str, bytes] = {}

    async def _ask(self, kind: str, request: Any) -> Any:
        shim = _shim().shim
        message = shim.ChaincodeMessage(
            type=getattr(shim.ChaincodeMessage, kind),
            payload=request.SerializeToString(),
            txid=self._tx_id,
            channel_id=self._channel_id,
        )
        result: Any = await self._handler.ask_peer(message, kind)
        return result

    async def get(self, key: str) -> bytes | None:
        """The committed value of ``key`` (None when absent).

        Raises:
            ShimRequestError: the peer refused the request.
        """
        reply = await self._ask("GET_STATE", _shim().shim.GetState(key=key, collection=""))
        value: bytes = reply.payload
        return value or None

    async def put(self, key: str, value: bytes) -> None:
        """Buffer a write (sent by :meth:`flush`).

        Raises:
            ValueError: an empty value (Fabric treats it as a delete).
        """
        if not value:
            raise ValueError("a world-state value must not be empty")
        self._writes[key] = bytes(value)

    async def range(self, start: str, end: str) -> AsyncIterator[tuple[str, bytes]]:
        """Committed keys in ``[start, end)`` in key order, paged as the peer sends them.

        Raises:
            ShimRequestError: the peer refused a request.
        """
        shim = _shim().shim
        kv = _shim().kv
        reply = await self._ask(
            "GET_STATE_BY_RANGE", shim.GetStateByRange(startKey=start, endKey=end, collection="")
        )
        page = shim.QueryResponse.FromString(reply.payload)
        try:
            while True:
                for result in page.results:
                    row = kv.KV.FromString(result.resultBytes)
                    yield row.key, row.value
                if not page.has_more:
                    return
                reply = await self._ask("QUERY_STATE_NEXT", shim.QueryStateNext(id=page.id))
                page = shim.QueryResponse.FromString(reply.payload)
        finally:
            if page.has_more:  # stopped early: the peer still holds the iterator
                await self._ask("QUERY_STATE_CLOSE", shim.QueryStateClose(id=page.id))

    async def flush(self) -> None:
        """Send the buffered writes to the peer, in key order.

        Raises:
            ShimRequestError: the peer refused a write.
        """
        shim = _shim().shim
        writes = sorted(self._writes.items())
        self._writes.clear()
        batch_size = self._handler.write_batch_size
        if batch_size:
            for at in range(0, len(writes), batch_size):
                records = [
                    shim.WriteRecord(
                        key=key, value=value, collection="", type=shim.WriteRecord.PUT_STATE
                    )
                    for key, value in writes[at : at + batch_size]
                ]
                await self._ask("WRITE_BATCH_STATE", shim.WriteBatchState(rec=records))
            return
        for key, value in writes:
            await self._ask("PUT_STATE", shim.PutState(key=key, value=value, collection=""))


# -- the chaincode and its handler ----------------------------------------------------------


class LedgerChaincode:
    """The ledger contract as a fabric-chaincode-python ``Chaincode`` (:func:`new_chaincode`)."""

    def __init__(self, contract: LedgerContract) -> None:
        self.contract = contract

    async def init(self, stub: Any) -> Any:
        """Nothing to initialise: every log starts with its ``CreateLog``."""
        return _shim().response.success(b"")

    async def invoke(self, stub: Any) -> Any:
        """Run the function the proposal names; a refusal is an error response."""
        response = _shim().response
        handler = stub.client
        if not isinstance(handler, LedgerHandler):
            return response.error("the ibx ledger chaincode runs under its own shim handler")
        args = list(stub.cc_input.args)
        if not args:
            return response.error("ibx-ledger/bad-request: no function named")
        try:
            function = bytes(args[0]).decode("utf-8")
        except UnicodeDecodeError:
            return response.error("ibx-ledger/bad-request: the function name is not UTF-8")
        state = ShimWorldState(handler, stub.channel_id, stub.tx_id)
        try:
            outcome: Outcome = await self.contract.invoke(state, function, args[1:])
            await state.flush()
        except ContractRefusal as exc:
            return response.error(exc.refusal.message())
        except ShimStreamEndedError as exc:
            logger.info("transaction %s abandoned: %s", stub.tx_id, exc)
            return response.error(f"ibx ledger chaincode: {exc}")
        except LedgerError as exc:
            logger.error("transaction %s failed: %s", stub.tx_id, exc)
            return response.error(f"ibx ledger chaincode: {exc}")
        if outcome.event is not None:
            stub.set_event(outcome.event[0], outcome.event[1])
        return response.success(outcome.payload)


def new_chaincode(pinned_vkeys: Sequence[str] = ()) -> Any:
    """A ``fabric_shim.interfaces.Chaincode`` running :class:`LedgerContract`.

    Raises:
        ValueError: a pinned key is not a C2SP Ed25519 verifier key.
    """
    base = _shim().interfaces.Chaincode
    kind = type("IbxLedgerChaincode", (LedgerChaincode, base), {})
    return kind(LedgerContract(pinned_vkeys))


class LedgerHandler:
    """Marker base of the shim handler :func:`new_handler` builds (the library's ``Handler``
    with the corrections in the module docstring)."""

    write_batch_size: int

    async def ask_peer(self, message: Any, kind: str) -> Any:
        """Send one state request and wait for the peer's reply.

        Raises:
            ShimRequestError: the peer answered ERROR (or not RESPONSE).
        """
        raise NotImplementedError


class _SerialWrites:
    """A stream's writing end that sends one message at a time: the library writes from
    one task per message, and gRPC refuses a write while another is in flight
    (``GRPC_CALL_ERROR_TOO_MANY_OPERATIONS``), as Fabric's peer serialises its own
    (``handler.go``: ``serialSend``)."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._lock = asyncio.Lock()

    async def write(self, message: Any) -> None:
        async with self._lock:
            await self._context.write(message)


def _handler_class() -> type:
    """The library's ``Handler`` with the ledger's corrections (built once the library loads)."""
    lib = _shim()
    if hasattr(lib, "handler_class"):
        handler_class: type = lib.handler_class
        return handler_class
    shim = lib.shim
    base = lib.handler.Handler
    states = lib.handler.STATES

    class _Handler(LedgerHandler, base):  # type: ignore[misc,valid-type]
        def __init__(self, cc_id: str, cc: Any) -> None:
            base.__init__(self, cc_id, cc)
            self.write_batch_size = 0
            self.cancelled_because = "the peer closed the chaincode stream"

        async def ask_peer(self, message: Any, kind: str) -> Any:
            future = asyncio.get_running_loop().create_future()
            await self.msg_queue_handler.queue_msg(lib.queue.QueueMessage(message, kind, future))
            reply = await future
            if reply.type == shim.ChaincodeMessage.ERROR:
                raise ShimRequestError(
                    f"{kind}: {bytes(reply.payload).decode('utf-8', errors='replace')}"
                )
            if reply.type != shim.ChaincodeMessage.RESPONSE:
                raise ShimRequestError(f"{kind}: unexpected reply type {reply.type}")
            return reply

        async def chat_with_peer(self, stream: Any, context: Any) -> None:
            # The library's loop, except that when the stream ends (the peer went away)
            # the requests still waiting for its reply fail instead of waiting forever.
            self.state = states.CREATED
            self.context = _SerialWrites(context)
            self.msg_queue_handler = lib.queue.MsgQueueHandler(self)
            register = shim.ChaincodeMessage(
                type=shim.ChaincodeMessage.REGISTER, payload=self.chaincode_id.SerializeToString()
            )
            register.timestamp.GetCurrentTime()
            await self.context.write(register)
            reason = "the peer closed the chaincode stream"
            try:
                async for message in stream:
                    self._track_task(self.handle_message(message))
            except asyncio.CancelledError:  # the service is stopping, or the call was cancelled
                reason = self.cancelled_because
                raise
            finally:
                for queued in self.msg_queue_handler.tx_queues.values():
                    for waiting in queued:
                        if not waiting.future.done():
                            waiting.future.set_exception(ShimStreamEndedError(reason))
                if self._pending_tasks:
                    await asyncio.gather(*self._pending_tasks, return_exceptions=True)

        async def handle_message(self, msg: Any) -> None:
            # The library's version logs a warning for every message.
            if msg.type == shim.ChaincodeMessage.KEEPALIVE:
                return
            if self.state == states.READY:
                await self.handle_message_ready(msg)
            elif self.state == states.ESTABLISHED:
                await self.handle_message_established(msg)
            elif self.state == states.CREATED:
                await self.handle_message_created(msg)

        async def handle_message_established(self, msg: Any) -> None:
            if msg.type == shim.ChaincodeMessage.READY and msg.payload:
                params = lib.cc.ChaincodeAdditionalParams.FromString(msg.payload)
                if params.use_write_batch:
                    self.write_batch_size = int(params.max_size_write_batch) or 1000
            await base.handle_message_established(self, msg)

        async def handle_stub_interaction(self, msg: Any, action: str = "Invoke") -> None:
            completed = await self._complete(msg, action)
            await self.context.write(completed)

        async def _complete(self, msg: Any, action: str) -> Any:
            reply = {"txid": msg.txid, "channel_id": msg.channel_id}
            try:
                cc_input = lib.cc.ChaincodeInput.FromString(msg.payload)
                proposal = msg.proposal if msg.HasField("proposal") else None
                stub = lib.stub.ChaincodeStub(self, msg.channel_id, msg.txid, cc_input, proposal)
                if action == "Init":
                    response = await self.chaincode.init(stub)
                else:
                    response = await self.chaincode.invoke(stub)
            except Exception as exc:  # a bug, not a refusal: the shim's ERROR reply, as Go's
                logger.exception("transaction %s failed", msg.txid)
                return shim.ChaincodeMessage(
                    type=shim.ChaincodeMessage.ERROR,
                    payload=f"ibx ledger chaincode: {type(exc).__name__}: {exc}".encode(),
                    **reply,
                )
            completed = shim.ChaincodeMessage(
                type=shim.ChaincodeMessage.COMPLETED, payload=response.SerializeToString(), **reply
            )
            events = stub.get_events()
            if events:  # Fabric keeps one event per transaction: the last one set
                completed.chaincode_event.CopyFrom(events[-1])
            return completed

    lib.handler_class = _Handler
    return _Handler


def new_handler(chaincode_id: str, chaincode: Any) -> Any:
    """A shim handler (the library's ``Handler``, corrected) for one peer connection."""
    return _handler_class()(chaincode_id, chaincode)


def _service(chaincode_id: str, chaincode: Any) -> Any:
    """The library's ``ChaincodeService`` using :func:`new_handler` for each connection.

    Its ``end_streams()`` ends every peer stream at once (the RPC returns OK), so that a
    stopping server has nothing left to cancel: gRPC would wait out the grace period and
    then log each cancelled ``Connect`` with a ``CancelledError`` traceback.
    """
    lib = _shim()

    class _Service(lib.server.ChaincodeService):  # type: ignore[misc,name-defined]
        def __init__(self, cc_id: str, cc: Any) -> None:
            super().__init__(cc_id, cc)
            self._ending = asyncio.Event()

        def end_streams(self) -> None:
            self._ending.set()

        async def Connect(self, request_iterator: Any, context: Any) -> None:  # noqa: N802 -- gRPC
            if self._ending.is_set():
                return
            handler = new_handler(chaincode_id, chaincode)
            chat = asyncio.ensure_future(handler.chat_with_peer(request_iterator, context))
            ending = asyncio.ensure_future(self._ending.wait())
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({chat, ending}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ending.cancel()
                if self._ending.is_set():
                    handler.cancelled_because = "the chaincode service is stopping"
                chat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chat

    return _Service(chaincode_id, chaincode)


# -- the service ----------------------------------------------------------------------------


def _split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` as host and port (0 picks a free one).

    Raises:
        ValueError: not HOST:PORT with a port 0-65535.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--address {address!r} is not HOST:PORT")
    return host, int(port)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def _check_pem_certificates(data: bytes, path: Path, what: str) -> None:
    from cryptography import x509  # noqa: PLC0415 -- only when TLS is configured

    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"the {what} {path} holds no PEM certificate") from exc


def _check_key_pair(cert: bytes, key: bytes, key_path: Path) -> None:
    from cryptography import x509  # noqa: PLC0415 -- only when TLS is configured
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError as exc:
        raise ValueError(f"the TLS key {key_path} is encrypted; give an unencrypted key") from exc
    except ValueError as exc:
        raise ValueError(f"the TLS key {key_path} is not a PEM private key") from exc
    leaf = x509.load_pem_x509_certificates(cert)[0]
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if leaf.public_key().public_bytes(der, raw) != private.public_key().public_bytes(der, raw):
        raise ValueError(f"the TLS key {key_path} does not match the certificate")


@dataclass(frozen=True)
class ChaincodeServiceConfig:
    """What ``ibx ledger chaincode`` serves, and how.

    Attributes:
        address: ``HOST:PORT`` to listen on (port 0: a free one, printed when ready).
        chaincode_id: the installed package id the service registers as (``LABEL:HASH``).
        pinned_vkeys: the ledger checkpoint verifier keys this organisation accepts
            (empty: any well-formed key).
        tls_cert: PEM server certificate chain (with ``tls_key``: the peer dials over TLS).
        tls_key: PEM private key of ``tls_cert`` (unencrypted).
        client_ca: PEM CA certificates of the peer's client certificate (mutual TLS).
    """

    address: str
    chaincode_id: str
    pinned_vkeys: tuple[str, ...] = ()
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    client_ca: bytes | None = None

    def __post_init__(self) -> None:
        _split_address(self.address)
        if not self.chaincode_id or any(c.isspace() for c in self.chaincode_id):
            raise ValueError("--id must be the package id, LABEL:HASH, without spaces")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("--client-ca needs --tls-cert and --tls-key")
        LedgerContract(self.pinned_vkeys)

    @classmethod
    def from_files(
        cls,
        *,
        address: str,
        chaincode_id: str,
        pinned_vkeys: list[Path],
        tls_cert: Path | None,
        tls_key: Path | None,
        client_ca: Path | None,
    ) -> ChaincodeServiceConfig:
        """Read and check the files the options name.

        Raises:
            ValueError: an unreadable file, a key that is not a verifier key, a TLS key that
                is encrypted or does not match its certificate, or a malformed address or id.
        """
        vkeys: list[str] = []
        for path in pinned_vkeys:
            text = _read(path, "ledger verifier key").decode("utf-8", errors="replace").strip()
            try:
                LedgerContract([text])
            except ValueError as exc:
                raise ValueError(f"{path} is not a ledger verifier key (ibx ledger vkey)") from exc
            vkeys.append(text)
        cert = None if tls_cert is None else _read(tls_cert, "TLS certificate")
        key = None if tls_key is None else _read(tls_key, "TLS key")
        ca = None if client_ca is None else _read(client_ca, "client CA")
        if cert is not None and tls_cert is not None:
            _check_pem_certificates(cert, tls_cert, "TLS certificate")
            if key is not None and tls_key is not None:
                _check_key_pair(cert, key, tls_key)
        if ca is not None and client_ca is not None:
            _check_pem_certificates(ca, client_ca, "client CA")
        return cls(address, chaincode_id, tuple(vkeys), cert, key, ca)


def run_service(config: ChaincodeServiceConfig) -> None:
    """Serve the chaincode until SIGTERM or SIGINT, then stop promptly and quietly: the
    peers' streams are ended at once (a transaction still running fails, as when the
    service dies; the peer retries or times it out) and the server is stopped.

    Prints ``ibx ledger chaincode listening on HOST:PORT (id ...)`` to stderr when ready,
    and ``ibx ledger chaincode on HOST:PORT stopped (SIGTERM)`` (or ``SIGINT``) when done.

    Raises:
        ChaincodeServiceError: the address cannot be bound.
    """
    asyncio.run(_serve(config))


async def _serve(config: ChaincodeServiceConfig) -> None:
    import grpc  # noqa: PLC0415 -- gRPC loads with the service only

    lib = _shim()
    host, _port = _split_address(config.address)
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),  # a taken port is an error
            # A batch may carry MAX_BATCH_BYTES of leaves: Fabric's limits (100 MiB), not 4 MiB.
            ("grpc.max_receive_message_length", 100 << 20),
            ("grpc.max_send_message_length", 100 << 20),
        ]
    )
    service = _service(config.chaincode_id, new_chaincode(config.pinned_vkeys))
    lib.shim_grpc.add_ChaincodeServicer_to_server(service, server)
    try:
        if config.tls_cert is not None and config.tls_key is not None:
            credentials = grpc.ssl_server_credentials(
                [(config.tls_key, config.tls_cert)],
                root_certificates=config.client_ca,
                require_client_auth=config.client_ca is not None,
            )
            port = server.add_secure_port(config.address, credentials)
        else:
            port = server.add_insecure_port(config.address)
    except RuntimeError as exc:
        raise ChaincodeServiceError(f"cannot listen on {config.address}: {exc}") from exc
    if not port:
        raise ChaincodeServiceError(f"cannot listen on {config.address}")
    await server.start()
    stop = asyncio.Event()
    received: list[signal.Signals] = []
    loop = asyncio.get_running_loop()

    def stopping(signum: signal.Signals) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping, signum)
    print(
        f"ibx ledger chaincode listening on {host}:{port} (id {config.chaincode_id})",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        # End the peers' streams first (a transaction in flight fails; the peer retries it
        # elsewhere or times it out), so the server's stop has nothing to wait for.
        service.end_streams()
        await server.stop(grace=STOP_GRACE)
    why = received[0].name if received else "stopped"
    print(f"ibx ledger chaincode on {host}:{port} stopped ({why})", file=sys.stderr, flush=True)
