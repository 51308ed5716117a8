"""The peer's side of the chaincode shim protocol, for tests: a real chaincode, no Fabric.

:class:`ShimPeer` does what Fabric's peer does with a chaincode
(``core/chaincode/handler.go``): it receives REGISTER and answers REGISTERED and
READY (offering write batches, as Fabric 2.5 does), sends each proposal as a
TRANSACTION message, serves the chaincode's state requests from a
:class:`World` and waits for COMPLETED or ERROR. It speaks to the chaincode
either in process, driving fabric-chaincode-python's ``Handler`` (the ledger's
corrected subclass by default) over in-memory queues, or over gRPC as the peer
dials a chaincode-as-a-service (:meth:`ShimPeer.dial`).

A simulation reads the committed state as of its start (Fabric holds commits
back while it simulates; here the :class:`World` keeps versions instead), never
its own writes, and records what a peer's transaction simulator records: the
version of every key read, each range query with the keys and versions the peer's
iterator went through (in batches of 100, as the peer reads ahead), and the
writes. :meth:`Simulation.results` encodes them as the peer's ``TxReadWriteSet``.

Several :meth:`ShimPeer.execute` calls may run at once on one connection.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fabric_protos.ledger.queryresult import kv_query_result_pb2 as kv_pb
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2 as kvrw
from fabric_protos.peer import chaincode_pb2 as cc_pb
from fabric_protos.peer import chaincode_shim_pb2 as shim_pb
from fabric_protos.peer import proposal_response_pb2 as pr_pb

__all__ = [
    "RangeRead",
    "ShimPeer",
    "ShimProtocolError",
    "Simulation",
    "Version",
    "World",
]

Message = shim_pb.ChaincodeMessage

MAX_RESULT_LIMIT = 100
"""Results per range-query response (``QueryResponseGenerator.MaxResultLimit``)."""
TOTAL_QUERY_LIMIT = 10_000
"""Results one range query returns at most (``ledger.state.totalQueryLimit``)."""
MAX_DEGREE_QUERY_READS_HASHING = 50
"""Range reads above this are summarised as Merkle hashes (``txmgr/query_executor.go``)."""
WRITE_BATCH_SIZE = 1000
"""``chaincode.runtimeParams.maxSizeWriteBatch``, offered in READY."""
EXECUTE_TIMEOUT = 30.0
"""Seconds a transaction may run (``chaincode.executetimeout``)."""


class ShimProtocolError(Exception):
    """The chaincode broke the shim protocol, or the connection ended."""


# -- committed state --------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Version:
    """A committed value's height: the block and the transaction within it."""

    block: int
    tx: int


class World:
    """One namespace's committed state, with every version kept (so that a simulation
    reads a consistent snapshot while others commit). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._history: dict[str, list[tuple[Version, bytes | None]]] = {}
        self._keys: list[str] = []
        self._height: Version | None = None

    @property
    def height(self) -> Version | None:
        """The latest version applied (None while empty)."""
        with self._lock:
            return self._height

    def get(self, key: str) -> tuple[bytes, Version] | None:
        """The latest committed value of ``key`` and its version."""
        return self.get_at(key, None)

    def get_at(self, key: str, height: Version | None) -> tuple[bytes, Version] | None:
        """``key``'s value as committed up to ``height`` (None: the latest)."""
        with self._lock:
            return self._value_at(key, height)

    def _value_at(self, key: str, height: Version | None) -> tuple[bytes, Version] | None:
        for version, value in reversed(self._history.get(key, ())):
            if height is None or version <= height:
                return None if value is None else (value, version)
        return None

    def range(self, start: str, end: str) -> list[tuple[str, bytes, Version]]:
        """Latest committed keys in ``[start, end)`` in key order (``""``: unbounded)."""
        return self.range_at(start, end, None)

    def range_at(
        self, start: str, end: str, height: Version | None
    ) -> list[tuple[str, bytes, Version]]:
        """As :meth:`range`, as committed up to ``height`` (None: the latest)."""
        with self._lock:
            lo = bisect.bisect_left(self._keys, start)
            hi = len(self._keys) if end == "" else bisect.bisect_left(self._keys, end)
            rows = []
            for key in self._keys[lo:hi]:
                found = self._value_at(key, height)
                if found is not None:
                    rows.append((key, found[0], found[1]))
            return rows

    def apply(self, writes: Mapping[str, bytes | None], version: Version) -> None:
        """Commit ``writes`` (None deletes) at ``version``, which must be above the height.

        Raises:
            ValueError: ``version`` is not above every version already applied.
        """
        with self._lock:
            if self._height is not None and version <= self._height:
                raise ValueError(f"version {version} is not above the height {self._height}")
            for key, value in writes.items():
                history = self._history.get(key)
                if history is None:
                    history = self._history[key] = []
                    bisect.insort(self._keys, key)
                history.append((version, value))
            self._height = version


# -- simulation results -----------------------------------------------------------------------


@dataclass(frozen=True)
class RangeRead:
    """One range query as the peer records it for phantom-read validation: ``end`` is the
    query's end when the iterator was exhausted, else the last key it read."""

    start: str
    end: str
    results: tuple[tuple[str, Version], ...]
    exhausted: bool = True


def _kv_read(key: str, version: Version | None) -> Any:
    read = kvrw.KVRead(key=key)
    if version is not None:
        read.version.CopyFrom(kvrw.Version(block_num=version.block, tx_num=version.tx))
    return read


def _combined_hash(hashes: Sequence[bytes]) -> bytes:
    return hashlib.sha256(b"".join(hashes)).digest()


def _range_query_info(read: RangeRead) -> Any:
    """``kvrwset.RangeQueryInfo`` as ``rwsetutil.RangeQueryResultsHelper`` builds it: raw
    reads up to 50 results, else the Merkle summary of their hashes (degree 50)."""
    info = kvrw.RangeQueryInfo(start_key=read.start, end_key=read.end, itr_exhausted=read.exhausted)
    reads = [_kv_read(key, version) for key, version in read.results]
    degree = MAX_DEGREE_QUERY_READS_HASHING
    if len(reads) <= degree:
        info.raw_reads.CopyFrom(kvrw.QueryReads(kv_reads=reads))
        return info
    tree: dict[int, list[bytes]] = {}
    max_level = 1

    def update(leaf: bytes) -> None:
        nonlocal max_level
        tree.setdefault(1, []).append(leaf)
        level = 1
        while len(tree[level]) > degree:
            combined = _combined_hash(tree.pop(level))
            level += 1
            tree.setdefault(level, []).append(combined)
            max_level = max(max_level, level)

    pending: list[Any] = []
    for kv_read in reads:
        pending.append(kv_read)
        if len(pending) > degree:
            update(hashlib.sha256(kvrw.QueryReads(kv_reads=pending).SerializeToString()).digest())
            pending = []
    if pending:
        update(hashlib.sha256(kvrw.QueryReads(kv_reads=pending).SerializeToString()).digest())
    level = 1
    while level < max_level:
        hashes = tree.pop(level, [])
        if hashes:
            node = hashes[0] if len(hashes) == 1 else _combined_hash(hashes)
            tree.setdefault(level + 1, []).append(node)
        level += 1
    final = tree[max_level]
    if len(final) > degree:
        del tree[max_level]
        max_level += 1
        tree[max_level] = final = [_combined_hash(final)]
    info.reads_merkle_hashes.CopyFrom(
        kvrw.QueryReadsMerkleSummary(max_degree=degree, max_level=max_level, max_level_hashes=final)
    )
    return info


@dataclass(frozen=True)
class Simulation:
    """What one TRANSACTION left: the chaincode's response and the read-write set."""

    status: int
    message: str
    payload: bytes
    reads: Mapping[str, Version | None]
    range_reads: tuple[RangeRead, ...]
    writes: Mapping[str, bytes | None]
    event: Any | None
    """The ``ChaincodeEvent`` the chaincode set (chaincode_id and tx_id filled in), or None."""

    def results(self, namespace: str) -> bytes:
        """The ``TxReadWriteSet`` bytes a peer puts in its ``ChaincodeAction.results``
        (reads and writes sorted by key; range queries in the order they were made).

        A real peer also records a read of ``_lifecycle``'s
        ``namespaces/fields/<name>/Sequence``; a caller that models it adds that namespace.
        """
        rwset = rwset_pb2.TxReadWriteSet(data_model=rwset_pb2.TxReadWriteSet.KV)
        if not (self.reads or self.range_reads or self.writes):
            return bytes(rwset.SerializeToString())
        kv_rwset = kvrw.KVRWSet(
            reads=[_kv_read(key, self.reads[key]) for key in sorted(self.reads)],
            range_queries_info=[_range_query_info(read) for read in self.range_reads],
            writes=[
                kvrw.KVWrite(key=key, is_delete=value is None, value=value or b"")
                for key, value in sorted(self.writes.items())
            ],
        )
        rwset.ns_rwset.append(
            rwset_pb2.NsReadWriteSet(namespace=namespace, rwset=kv_rwset.SerializeToString())
        )
        return bytes(rwset.SerializeToString())


# -- one transaction's context ----------------------------------------------------------------


@dataclass
class _Iterator:
    start: str
    end: str
    rows: list[tuple[str, bytes, Version]]
    position: int = 0
    read: list[tuple[str, Version]] = field(default_factory=list)
    last_key: str = ""
    exhausted: bool = False
    pending: list[bytes] = field(default_factory=list)
    returned: int = 0

    def next(self) -> tuple[str, bytes, Version] | None:
        """The next row, recorded as the peer's ``resultsItr.Next`` records it."""
        if self.position == len(self.rows):
            self.exhausted = True
            self.last_key = self.end
            return None
        row = self.rows[self.position]
        self.position += 1
        self.read.append((row[0], row[2]))
        self.last_key = row[0]
        return row


@dataclass
class _Tx:
    world: World
    snapshot: Version | None
    done: asyncio.Future[Any]
    reads: dict[str, Version | None] = field(default_factory=dict)
    writes: dict[str, bytes | None] = field(default_factory=dict)
    iterators: dict[str, _Iterator] = field(default_factory=dict)
    created: list[_Iterator] = field(default_factory=list)

    def range_reads(self) -> tuple[RangeRead, ...]:
        seen: set[tuple[str, str, bool]] = set()
        made = []
        for it in self.created:
            key = (it.start, it.last_key, it.exhausted)
            if key not in seen:  # rwsetutil.AddToRangeQuerySet keeps the first
                seen.add(key)
                made.append(RangeRead(it.start, it.last_key, tuple(it.read), it.exhausted))
        return tuple(made)


class _RequestError(Exception):
    """A state request the peer answers with ERROR."""


# -- transports -------------------------------------------------------------------------------


class _Transport:
    async def send(self, message: Any) -> None:
        raise NotImplementedError

    async def receive(self) -> Any | None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _QueueContext:
    """What the library's ``Handler`` writes to: the gRPC servicer context's ``write``,
    which, like gRPC's, refuses a write while another is in flight."""

    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self._queue = queue
        self._writing = False

    async def write(self, message: Any) -> None:
        if self._writing:
            raise RuntimeError("GRPC_CALL_ERROR_TOO_MANY_OPERATIONS: a write is in flight")
        self._writing = True
        try:
            await asyncio.sleep(0)  # a write takes time: let others overlap it, as on a socket
            await self._queue.put(message)
        finally:
            self._writing = False


class _InProcess(_Transport):
    def __init__(self, handler: Any) -> None:
        self._to_chaincode: asyncio.Queue[Any] = asyncio.Queue()
        self._from_chaincode: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(
            self._run(handler), name="shim-chaincode"
        )

    async def _run(self, handler: Any) -> None:
        try:
            await handler.chat_with_peer(self._stream(), _QueueContext(self._from_chaincode))
        finally:
            await self._from_chaincode.put(None)

    async def _stream(self) -> AsyncIterator[Any]:
        while True:
            message = await self._to_chaincode.get()
            if message is None:
                return
            yield message

    async def send(self, message: Any) -> None:
        await self._to_chaincode.put(message)

    async def receive(self) -> Any | None:
        return await self._from_chaincode.get()

    async def close(self) -> None:
        await self._to_chaincode.put(None)
        await asyncio.wait_for(asyncio.shield(self._task), 5)


class _Grpc(_Transport):
    def __init__(self, channel: Any) -> None:
        from fabric_protos.peer import chaincode_shim_pb2_grpc as shim_grpc

        self._channel = channel
        self._call = shim_grpc.ChaincodeStub(channel).Connect()

    async def send(self, message: Any) -> None:
        await self._call.write(message)

    async def receive(self) -> Any | None:
        import grpc

        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError:
            return None
        return None if message is grpc.aio.EOF else message

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # the stream may already be gone
            await self._call.done_writing()
        self._call.cancel()
        await self._channel.close()


# -- the peer ---------------------------------------------------------------------------------


class ShimPeer:
    """The peer's end of one chaincode connection (see the module docstring)."""

    def __init__(self, transport: _Transport, namespace: str) -> None:
        self._transport = transport
        self.namespace = namespace
        """The chaincode's name on the channel: events carry it as their ``chaincode_id``."""
        self.registered_id = ""
        """The chaincode id the chaincode sent in REGISTER."""
        self._txs: dict[tuple[str, str], _Tx] = {}
        self._send_lock = asyncio.Lock()
        self._iterator_ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def in_process(
        cls,
        chaincode: Any,
        chaincode_id: str = "ibx-ledger",
        *,
        handler: Callable[[str, Any], Any] | None = None,
        namespace: str = "ibx-ledger",
    ) -> ShimPeer:
        """Connect to ``chaincode`` (a ``fabric_shim`` ``Chaincode``) through a shim
        ``Handler`` in this event loop, over in-memory queues.

        ``handler(chaincode_id, chaincode)`` builds the handler; by default the ledger's
        (:func:`ledger.fabric.chaincode.new_handler`).

        Raises:
            ShimProtocolError: the chaincode did not register.
        """
        if handler is None:
            from ledger.fabric.chaincode import new_handler

            handler = new_handler
        peer = cls(_InProcess(handler(chaincode_id, chaincode)), namespace)
        await peer._handshake(chaincode_id)
        return peer

    @classmethod
    async def dial(
        cls,
        address: str,
        *,
        chaincode_id: str | None = None,
        root_cert: bytes | None = None,
        client_cert: bytes | None = None,
        client_key: bytes | None = None,
        namespace: str = "ibx-ledger",
    ) -> ShimPeer:
        """Dial a chaincode service as Fabric's peer dials a chaincode-as-a-service:
        ``Chaincode.Connect``, expect REGISTER (with ``chaincode_id`` if given), answer
        REGISTERED and READY. TLS when ``root_cert`` is given (mutual with a client pair).

        Raises:
            ShimProtocolError: no REGISTER, or another chaincode id.
        """
        import grpc

        limits = [  # Fabric's peer allows 100 MiB messages on the chaincode stream
            ("grpc.max_receive_message_length", 100 << 20),
            ("grpc.max_send_message_length", 100 << 20),
        ]
        if root_cert is None:
            channel = grpc.aio.insecure_channel(address, options=limits)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_cert, private_key=client_key, certificate_chain=client_cert
            )
            channel = grpc.aio.secure_channel(address, credentials, options=limits)
        peer = cls(_Grpc(channel), namespace)
        try:
            await peer._handshake(chaincode_id)
        except BaseException:
            await peer._transport.close()
            raise
        return peer

    async def _handshake(self, chaincode_id: str | None) -> None:
        register = await asyncio.wait_for(self._transport.receive(), EXECUTE_TIMEOUT)
        if register is None or register.type != Message.REGISTER:
            raise ShimProtocolError(f"expected REGISTER, got {register and register.type}")
        self.registered_id = cc_pb.ChaincodeID.FromString(register.payload).name
        if not self.registered_id:
            raise ShimProtocolError("REGISTER carries an empty chaincode id")
        if chaincode_id is not None and self.registered_id != chaincode_id:
            raise ShimProtocolError(
                f"the chaincode registered as {self.registered_id!r}, not {chaincode_id!r}"
            )
        await self._send(Message(type=Message.REGISTERED))
        params = cc_pb.ChaincodeAdditionalParams(
            use_write_batch=True,
            max_size_write_batch=WRITE_BATCH_SIZE,
            use_get_multiple_keys=True,
            max_size_get_multiple_keys=WRITE_BATCH_SIZE,
        )
        await self._send(Message(type=Message.READY, payload=params.SerializeToString()))
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="shim-peer")

    async def _send(self, message: Any) -> None:
        async with self._send_lock:
            await self._transport.send(message)

    async def _read(self) -> None:
        try:
            while True:
                message = await self._transport.receive()
                if message is None:
                    return
                if message.type == Message.KEEPALIVE:
                    continue
                if message.type in (Message.COMPLETED, Message.ERROR):
                    tx = self._txs.get((message.channel_id, message.txid))
                    if tx is not None and not tx.done.done():
                        tx.done.set_result(message)
                    continue
                await self._send(self._serve(message))
        finally:
            self._closed = True
            for tx in self._txs.values():
                if not tx.done.done():
                    tx.done.set_exception(ShimProtocolError("the chaincode stream ended"))

    # -- state requests (handler.go's Handle* functions) --------------------------------------

    def _serve(self, message: Any) -> Any:
        reply = {"txid": message.txid, "channel_id": message.channel_id}
        name = Message.Type.Name(message.type)
        tx = self._txs.get((message.channel_id, message.txid))
        try:
            if tx is None:
                raise _RequestError("no ledger context")
            payload = self._handle(tx, message)
        except Exception as exc:  # as handler.go: any failure is an ERROR reply
            text = f"{name} failed: transaction ID: {message.txid}: {exc}"
            return Message(type=Message.ERROR, payload=text.encode(), **reply)
        return Message(type=Message.RESPONSE, payload=payload, **reply)

    def _handle(self, tx: _Tx, message: Any) -> bytes:
        kind = message.type
        if kind == Message.GET_STATE:
            request = shim_pb.GetState.FromString(message.payload)
            _no_collection(request.collection)
            return self._get(tx, request.key)
        if kind == Message.GET_STATE_MULTIPLE:
            request = shim_pb.GetStateMultiple.FromString(message.payload)
            _no_collection(request.collection)
            values = [self._get(tx, key) for key in request.keys]
            return bytes(shim_pb.GetStateMultipleResult(values=values).SerializeToString())
        if kind == Message.PUT_STATE:
            request = shim_pb.PutState.FromString(message.payload)
            _no_collection(request.collection)
            tx.writes[request.key] = request.value or None  # an empty value deletes
            return b""
        if kind == Message.DEL_STATE:
            request = shim_pb.DelState.FromString(message.payload)
            _no_collection(request.collection)
            tx.writes[request.key] = None
            return b""
        if kind == Message.WRITE_BATCH_STATE:
            for record in shim_pb.WriteBatchState.FromString(message.payload).rec:
                _no_collection(record.collection)
                if record.type == shim_pb.WriteRecord.PUT_STATE:
                    tx.writes[record.key] = record.value or None
                elif record.type == shim_pb.WriteRecord.DEL_STATE:
                    tx.writes[record.key] = None
                else:
                    raise _RequestError("unknown operation type")
            return b""
        if kind == Message.GET_STATE_BY_RANGE:
            return self._open_range(tx, shim_pb.GetStateByRange.FromString(message.payload))
        if kind == Message.QUERY_STATE_NEXT:
            iterator_id = shim_pb.QueryStateNext.FromString(message.payload).id
            iterator = tx.iterators.get(iterator_id)
            if iterator is None:
                raise _RequestError("query iterator not found")
            return self._page(tx, iterator_id, iterator)
        if kind == Message.QUERY_STATE_CLOSE:
            iterator_id = shim_pb.QueryStateClose.FromString(message.payload).id
            tx.iterators.pop(iterator_id, None)
            return bytes(shim_pb.QueryResponse(has_more=False, id=iterator_id).SerializeToString())
        raise _RequestError(f"this peer does not serve {Message.Type.Name(kind)}")

    def _get(self, tx: _Tx, key: str) -> bytes:
        found = tx.world.get_at(key, tx.snapshot)
        tx.reads[key] = None if found is None else found[1]
        return b"" if found is None else found[0]

    def _open_range(self, tx: _Tx, request: Any) -> bytes:
        _no_collection(request.collection)
        if request.metadata:
            raise _RequestError("paginated range queries are not served by this peer")
        iterator_id = str(next(self._iterator_ids))
        rows = tx.world.range_at(request.startKey, request.endKey, tx.snapshot)
        iterator = _Iterator(request.startKey, request.endKey, rows)
        tx.iterators[iterator_id] = iterator
        tx.created.append(iterator)
        return self._page(tx, iterator_id, iterator)

    def _page(self, tx: _Tx, iterator_id: str, iterator: _Iterator) -> bytes:
        """``QueryResponseGenerator.BuildQueryResponse`` (not paginated)."""
        while True:
            if iterator.returned >= TOTAL_QUERY_LIMIT:
                break
            row = iterator.next()
            if row is None:
                break
            kv = kv_pb.KV(namespace=self.namespace, key=row[0], value=row[1])
            result = shim_pb.QueryResultBytes(resultBytes=kv.SerializeToString())
            if len(iterator.pending) == MAX_RESULT_LIMIT:
                batch, iterator.pending = iterator.pending, [result.SerializeToString()]
                iterator.returned += 1
                response = shim_pb.QueryResponse(
                    results=[shim_pb.QueryResultBytes.FromString(b) for b in batch],
                    has_more=True,
                    id=iterator_id,
                )
                return bytes(response.SerializeToString())
            iterator.pending.append(result.SerializeToString())
            iterator.returned += 1
        batch, iterator.pending = iterator.pending, []
        tx.iterators.pop(iterator_id, None)  # the peer cleans the query context up
        response = shim_pb.QueryResponse(
            results=[shim_pb.QueryResultBytes.FromString(b) for b in batch],
            has_more=False,
            id=iterator_id,
        )
        return bytes(response.SerializeToString())

    # -- transactions ---------------------------------------------------------------------------

    async def execute(
        self,
        world: World,
        *,
        channel: str,
        tx_id: str,
        args: Sequence[bytes],
        signed_proposal: Any | None = None,
    ) -> Simulation:
        """Run one TRANSACTION against ``world``'s committed state and return what it left.

        Raises:
            ValueError: ``tx_id`` is already executing on ``channel``.
            ShimProtocolError: the connection ended, or the chaincode did not answer in time.
        """
        key = (channel, tx_id)
        if self._closed:
            raise ShimProtocolError("the chaincode connection is closed")
        if key in self._txs:
            raise ValueError(f"transaction {tx_id} is already executing on {channel}")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        tx = _Tx(world, world.height, done)
        self._txs[key] = tx
        try:
            message = Message(
                type=Message.TRANSACTION,
                payload=cc_pb.ChaincodeInput(args=list(args)).SerializeToString(),
                txid=tx_id,
                channel_id=channel,
            )
            if signed_proposal is not None:
                message.proposal.CopyFrom(signed_proposal)
            await self._send(message)
            try:
                reply = await asyncio.wait_for(done, EXECUTE_TIMEOUT)
            except TimeoutError as exc:
                raise ShimProtocolError("timeout expired while executing transaction") from exc
        finally:
            del self._txs[key]
        return self._simulation(tx, reply, tx_id)

    def _simulation(self, tx: _Tx, reply: Any, tx_id: str) -> Simulation:
        event = None
        if reply.HasField("chaincode_event"):
            event = reply.chaincode_event
            event.chaincode_id = self.namespace  # as ChaincodeSupport fills them in
            event.tx_id = tx_id
        if reply.type == Message.COMPLETED:
            response = pr_pb.Response.FromString(reply.payload)
            status, text, payload = response.status, response.message, response.payload
        else:
            status, payload = 500, b""
            text = "transaction returned with failure: " + reply.payload.decode(errors="replace")
        return Simulation(
            status=status,
            message=text,
            payload=bytes(payload),
            reads=dict(tx.reads),
            range_reads=tx.range_reads(),
            writes=dict(tx.writes),
            event=event,
        )

    async def close(self) -> None:
        """End the connection (the chaincode's stream ends too)."""
        self._closed = True
        await self._transport.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def _no_collection(collection: str) -> None:
    if collection:
        raise _RequestError("private data collections are not served by this peer")
