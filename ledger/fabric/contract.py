"""The ledger chaincode's logic: pure, deterministic rules over an async world state.

:class:`LedgerContract` implements every function of :mod:`ledger.fabric.wire`
over a :class:`WorldState` (the peer's key-value store as the chaincode sees it
during simulation). It does no I/O of its own, reads no clock, draws no random
numbers and uses no floating point: the same committed state and the same
arguments give the same payload, the same event and the same writes, in the
same order, on every endorsing peer. ``ledger.fabric.chaincode`` adapts it to
the chaincode shim; the tests drive it directly over a dictionary.

The rules (docs/fabric.md):

- ``CreateLog(log, genesis)``: the genesis names this log and carries a C2SP
  Ed25519 verifier key whose name is the log id; an organisation that pins
  keys accepts only those (``not-pinned``); the same key again is a no-op, another
  key is ``exists``.
- ``AppendEntries(log, batch)``: the batch starts at the channel's size
  (``gap``), holds 1..1000 ledger entries whose indices are their positions,
  extends the compact range to the root it claims (``root-mismatch``), and any
  checkpoint it carries is signed by the log's key for exactly that tree
  (``bad-checkpoint``).
- ``AnchorCheckpoint(log, request)``: a checkpoint signed by the log's key,
  beyond the last anchored one (``not-newer``) and consistent with it
  (``inconsistent``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ledger._checkpoint import Checkpoint, NoteVerifier, SignedNote
from ledger._compact import CompactRange
from ledger._entry import LedgerEntry
from ledger._merkle import EMPTY_ROOT, leaf_hash, verify_consistency
from ledger.errors import CheckpointError, ConsistencyProofError, InvalidEntryError, LedgerError
from ledger.fabric.wire import (
    ANCHOR,
    ANCHOR_HEAD,
    ANCHORS,
    APPEND,
    CREATE_LOG,
    ENTRIES,
    EVENT_ANCHORED,
    EVENT_APPENDED,
    EVENT_CREATED,
    GENESIS,
    HEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_ENTRIES,
    MAX_PAGE,
    AnchorHead,
    AnchorPage,
    AnchorRequest,
    AppendBatch,
    ChannelHead,
    EntryPage,
    LedgerEvent,
    LogGenesis,
    Refusal,
    WireError,
    anchor_head_key,
    anchor_key,
    check_log_id,
    entry_key,
    genesis_key,
    head_key,
)

__all__ = ["ContractRefusal", "LedgerContract", "Outcome", "WorldState"]

logger = logging.getLogger(__name__)

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
"""A decimal argument: at most 19 digits, so every index fits the 20-digit keys."""

_KEY_END = "~"
"""Sorts after every digit: ``prefix + _KEY_END`` ends a range over ``prefix + digits``."""


class WorldState(Protocol):
    """The chaincode's view of its namespace during one simulation.

    As in Fabric, reads see the committed state, not this transaction's own writes.
    """

    async def get(self, key: str) -> bytes | None:
        """The committed value of ``key``, or None."""
        ...

    async def put(self, key: str, value: bytes) -> None:
        """Write ``key`` (non-empty ``value``) in this transaction's write set."""
        ...

    def range(self, start: str, end: str) -> AsyncIterator[tuple[str, bytes]]:
        """Committed keys in ``[start, end)``, in key order."""
        ...


@dataclass(frozen=True)
class Outcome:
    """A function's result: the payload returned to the client and the event, if any."""

    payload: bytes
    event: tuple[str, bytes] | None = None


class ContractRefusal(LedgerError):  # noqa: N818 -- the interface's name for a refusal
    """The contract refused the call; the shim returns ``refusal.message()`` as its error."""

    title = "ledger chaincode refusal"

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message())
        self.refusal = refusal


def _refuse(code: str, reason: str) -> ContractRefusal:
    return ContractRefusal(Refusal(code, reason))


def _arguments(function: str, args: Sequence[bytes], count: int) -> tuple[str, ...]:
    """The log id and the other ``count - 1`` arguments as text.

    Raises:
        ContractRefusal: ``bad-request``: another count, not UTF-8, or a bad log id.
    """
    if len(args) != count:
        raise _refuse("bad-request", f"{function} takes {count} arguments, got {len(args)}")
    try:
        texts = tuple(arg.decode("utf-8") for arg in args)
    except UnicodeDecodeError as exc:
        raise _refuse("bad-request", f"{function}: an argument is not UTF-8") from exc
    try:
        check_log_id(texts[0])
    except WireError as exc:
        raise _refuse("bad-request", str(exc)) from exc
    return texts


def _decimal(text: str, what: str) -> int:
    """A non-negative decimal argument.

    Raises:
        ContractRefusal: ``bad-request``: not a decimal of at most 19 digits.
    """
    if not _DECIMAL.fullmatch(text):
        raise _refuse("bad-request", f"{what} must be a decimal integer below 10^19")
    return int(text)


def _parse_verifier(vkey: str) -> NoteVerifier:
    """The verifier of a C2SP verifier key string.

    Raises:
        ContractRefusal: ``bad-request``: the key does not parse.
    """
    try:
        return NoteVerifier.from_vkey(vkey)
    except (CheckpointError, ValueError) as exc:
        raise _refuse("bad-request", f"the genesis verifier key does not parse: {exc}") from exc


def _signed_checkpoint(note_text: str, verifier: NoteVerifier, log: str) -> Checkpoint:
    """The checkpoint of a note signed by ``verifier`` for origin ``log``.

    Raises:
        ContractRefusal: ``bad-checkpoint``: malformed, not signed by the log's key, or
            another origin.
    """
    try:
        note = SignedNote.from_text(note_text)
        note.verify(verifier)
        checkpoint = Checkpoint.from_text(note.text)
    except CheckpointError as exc:
        raise _refuse("bad-checkpoint", f"the checkpoint does not verify: {exc}") from exc
    if checkpoint.origin != log:
        raise _refuse(
            "bad-checkpoint", f"the checkpoint's origin is {checkpoint.origin!r}, not {log!r}"
        )
    return checkpoint


class LedgerContract:
    """The ledger chaincode's functions over a :class:`WorldState`.

    ``pinned_vkeys``: the checkpoint verifier keys this organisation accepts for new
    logs (``ibx ledger chaincode --ledger-vkey``); empty accepts any well-formed key.
    """

    def __init__(self, pinned_vkeys: Sequence[str] = ()) -> None:
        """Parse the pinned keys.

        Raises:
            ValueError: a pinned key is not a C2SP Ed25519 verifier key.
        """
        pinned: set[str] = set()
        for vkey in pinned_vkeys:
            try:
                pinned.add(NoteVerifier.from_vkey(vkey).to_vkey())
            except CheckpointError as exc:
                raise ValueError(f"pinned ledger key {vkey.strip()!r}: {exc}") from exc
        self._pinned = frozenset(pinned)

    @property
    def pinned_vkeys(self) -> frozenset[str]:
        """The pinned verifier keys, normalised."""
        return self._pinned

    async def invoke(self, state: WorldState, function: str, args: Sequence[bytes]) -> Outcome:
        """Run ``function`` with ``args`` (the log id first) against ``state``.

        Raises:
            ContractRefusal: the call breaks a rule; its refusal says which.
        """
        if function == CREATE_LOG:
            log, genesis = _arguments(function, args, 2)
            return await self._create_log(state, log, genesis)
        if function == APPEND:
            log, batch = _arguments(function, args, 2)
            return await self._append(state, log, batch)
        if function == ANCHOR:
            log, request = _arguments(function, args, 2)
            return await self._anchor(state, log, request)
        if function == GENESIS:
            (log,) = _arguments(function, args, 1)
            return Outcome((await self._genesis(state, log)).to_json())
        if function == HEAD:
            (log,) = _arguments(function, args, 1)
            await self._genesis(state, log)
            return Outcome((await self._head(state, log)).to_json())
        if function == ANCHOR_HEAD:
            (log,) = _arguments(function, args, 1)
            await self._genesis(state, log)
            return Outcome((await self._anchor_head(state, log)).to_json())
        if function == ENTRIES:
            log, start, count = _arguments(function, args, 3)
            return await self._entries(state, log, _decimal(start, "start"), _page(count))
        if function == ANCHORS:
            log, after, count = _arguments(function, args, 3)
            return await self._anchors(state, log, _decimal(after, "after"), _page(count))
        raise _refuse("bad-request", f"no function {function[:64]!r}")

    # -- state ------------------------------------------------------------------------

    async def _genesis(self, state: WorldState, log: str) -> LogGenesis:
        raw = await state.get(genesis_key(log))
        if raw is None:
            raise _refuse("no-log", f"no log {log!r} on this channel: CreateLog it first")
        return LogGenesis.from_json(raw)

    async def _head(self, state: WorldState, log: str) -> ChannelHead:
        raw = await state.get(head_key(log))
        if raw is None:
            return ChannelHead.of(CompactRange.empty())
        return ChannelHead.from_json(raw)

    async def _anchor_head(self, state: WorldState, log: str) -> AnchorHead:
        raw = await state.get(anchor_head_key(log))
        if raw is None:
            return AnchorHead(0, EMPTY_ROOT, "")
        return AnchorHead.from_json(raw)

    # -- CreateLog --------------------------------------------------------------------

    async def _create_log(self, state: WorldState, log: str, document: str) -> Outcome:
        try:
            genesis = LogGenesis.from_json(document)
        except WireError as exc:
            raise _refuse("bad-request", str(exc)) from exc
        if genesis.log != log:
            raise _refuse("bad-request", f"the genesis is for log {genesis.log!r}, not {log!r}")
        verifier = _parse_verifier(genesis.vkey)
        if verifier.name != log:
            raise _refuse(
                "bad-request", f"the verifier key is named {verifier.name!r}, not the log id"
            )
        vkey = verifier.to_vkey()
        if self._pinned and vkey not in self._pinned:
            raise _refuse("not-pinned", f"this organisation does not accept the key of {log!r}")
        stored = LogGenesis(log, vkey)
        existing = await state.get(genesis_key(log))
        if existing is not None:
            if LogGenesis.from_json(existing).vkey == vkey:
                return Outcome(stored.to_json())
            raise _refuse("exists", f"log {log!r} exists with another verifier key")
        await state.put(genesis_key(log), stored.to_json())
        event = LedgerEvent(EVENT_CREATED, log, 0, 0, EMPTY_ROOT)
        return Outcome(stored.to_json(), (EVENT_CREATED, event.payload()))

    # -- AppendEntries ----------------------------------------------------------------

    async def _append(self, state: WorldState, log: str, document: str) -> Outcome:
        try:
            batch = AppendBatch.from_json(document)
        except WireError as exc:
            raise _refuse("bad-request", str(exc)) from exc
        genesis = await self._genesis(state, log)
        if not batch.leaves:
            raise _refuse("bad-request", "a batch carries at least one entry")
        if len(batch.leaves) > MAX_BATCH_ENTRIES:
            raise _refuse(
                "too-large",
                f"a batch carries at most {MAX_BATCH_ENTRIES} entries, not {len(batch.leaves)}",
            )
        size = sum(len(leaf) for leaf in batch.leaves)
        if size > MAX_BATCH_BYTES:
            raise _refuse(
                "too-large", f"a batch carries at most {MAX_BATCH_BYTES} bytes, not {size}"
            )
        head = await self._head(state, log)
        if batch.start != head.size:
            raise _refuse(
                "gap",
                f"the batch starts at {batch.start} but the channel's log has {head.size} entries",
            )
        hashes = []
        for position, leaf in enumerate(batch.leaves, start=batch.start):
            _check_entry(leaf, position)
            hashes.append(leaf_hash(leaf))
        compact = head.compact().append_hashes(hashes)
        root = compact.root()
        if root != batch.root:
            raise _refuse(
                "root-mismatch",
                f"the entries give root {root.hex()} at size {compact.size}, "
                f"the batch claims {batch.root.hex()}",
            )
        checkpoint = head.checkpoint
        if batch.checkpoint:
            verifier = NoteVerifier.from_vkey(genesis.vkey)
            signed = _signed_checkpoint(batch.checkpoint, verifier, log)
            if signed.size != compact.size or signed.root != root:
                raise _refuse(
                    "bad-checkpoint",
                    f"the checkpoint is of size {signed.size}, root {signed.root.hex()}; "
                    f"the batch ends at size {compact.size}, root {root.hex()}",
                )
            checkpoint = batch.checkpoint
        for position, leaf in enumerate(batch.leaves, start=batch.start):
            await state.put(entry_key(log, position), leaf)
        new_head = ChannelHead.of(compact, checkpoint)
        await state.put(head_key(log), new_head.to_json())
        event = LedgerEvent(EVENT_APPENDED, log, batch.start, compact.size, root)
        return Outcome(new_head.to_json(), (EVENT_APPENDED, event.payload()))

    # -- AnchorCheckpoint -------------------------------------------------------------

    async def _anchor(self, state: WorldState, log: str, document: str) -> Outcome:
        try:
            request = AnchorRequest.from_json(document)
        except WireError as exc:
            raise _refuse("bad-request", str(exc)) from exc
        genesis = await self._genesis(state, log)
        checkpoint = _signed_checkpoint(
            request.checkpoint, NoteVerifier.from_vkey(genesis.vkey), log
        )
        anchored = await self._anchor_head(state, log)
        if checkpoint.size <= anchored.size:
            raise _refuse(
                "not-newer",
                f"the checkpoint is of size {checkpoint.size}; "
                f"the channel has anchored size {anchored.size}",
            )
        if anchored.size == 0:
            if request.proof:
                raise _refuse("inconsistent", "the first anchor carries no consistency proof")
        else:
            try:
                verify_consistency(
                    anchored.size, checkpoint.size, anchored.root, checkpoint.root, request.proof
                )
            except ConsistencyProofError as exc:
                raise _refuse(
                    "inconsistent",
                    f"no consistency from anchored size {anchored.size} "
                    f"to {checkpoint.size}: {exc}",
                ) from exc
        await state.put(anchor_key(log, checkpoint.size), request.checkpoint.encode())
        new_head = AnchorHead(checkpoint.size, checkpoint.root, request.checkpoint)
        await state.put(anchor_head_key(log), new_head.to_json())
        event = LedgerEvent(EVENT_ANCHORED, log, anchored.size, checkpoint.size, checkpoint.root)
        return Outcome(new_head.to_json(), (EVENT_ANCHORED, event.payload()))

    # -- queries ----------------------------------------------------------------------

    async def _entries(self, state: WorldState, log: str, start: int, count: int) -> Outcome:
        await self._genesis(state, log)
        rows = state.range(entry_key(log, start), entry_key(log, start + count))
        leaves: list[bytes] = []
        async with contextlib.aclosing(_taking(rows, count)) as taken:
            async for key, value in taken:
                if key != entry_key(log, start + len(leaves)):
                    break  # entries are dense; a hole would be corrupt state: stop before it
                leaves.append(value)
        return Outcome(EntryPage(start, tuple(leaves)).to_json())

    async def _anchors(self, state: WorldState, log: str, after: int, count: int) -> Outcome:
        await self._genesis(state, log)
        prefix = anchor_key(log, 0)[:-20]
        rows = state.range(anchor_key(log, after + 1), prefix + _KEY_END)
        async with contextlib.aclosing(_taking(rows, count)) as taken:
            notes = [value.decode("utf-8") async for _key, value in taken]
        return Outcome(AnchorPage(tuple(notes)).to_json())


async def _taking(
    rows: AsyncIterator[tuple[str, bytes]], count: int
) -> AsyncGenerator[tuple[str, bytes], None]:
    """At most ``count`` rows of a range; the range is closed however the caller stops."""
    try:
        if count:
            taken = 0
            async for row in rows:
                yield row
                taken += 1
                if taken == count:
                    break
    finally:
        close = getattr(rows, "aclose", None)
        if close is not None:
            await close()


def _page(text: str) -> int:
    """A page size argument, 0..MAX_PAGE.

    Raises:
        ContractRefusal: ``bad-request`` or ``too-large``.
    """
    count = _decimal(text, "count")
    if count > MAX_PAGE:
        raise _refuse("too-large", f"a page holds at most {MAX_PAGE} items, not {count}")
    return count


def _check_entry(leaf: bytes, position: int) -> None:
    """Check that ``leaf`` is a ledger entry whose index is ``position``.

    Raises:
        ContractRefusal: ``bad-request``: not an entry, or another index.
    """
    try:
        entry = LedgerEntry.from_leaf_input(leaf)
    except InvalidEntryError as exc:
        raise _refuse("bad-request", f"entry {position}: {exc}") from exc
    if type(entry.index) is not int or entry.index != position:
        raise _refuse("bad-request", f"the leaf at position {position} holds entry {entry.index!r}")
