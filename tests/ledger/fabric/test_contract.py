"""The ledger chaincode's rules (``ledger.fabric.contract``), attacked over an in-memory state.

Every refusal code is provoked by the attack it exists for, and the state is
checked untouched after it. The logs are real: ``ledger.Ledger`` on
``MemoryLedgerBackend`` gives the entries, roots, signed checkpoints and
consistency proofs the shipper would send.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Event
from core.keys import Ed25519Signer
from ledger import (
    Checkpoint,
    Ledger,
    LedgerConfig,
    MemoryLedgerBackend,
    sign_note,
)
from ledger._compact import CompactRange
from ledger.fabric import wire
from ledger.fabric.contract import ContractRefusal, LedgerContract, Outcome

LOG = "ibx.test/ledger"
SIZES = (3, 4, 2, 11, 20)
"""The test ledger's appends: a signed checkpoint at 3, 7, 9, 20 and 40."""


def _signer(name: str) -> Ed25519Signer:
    return Ed25519Signer(name, hashlib.sha256(f"fabric-contract:{name}".encode()).digest())


def _ledger(
    seed: str = "main", origin: str = LOG, sizes: Sequence[int] = SIZES
) -> tuple[Ledger, dict[int, str]]:
    """A real log and its signed checkpoint note at each append."""
    ledger = Ledger(MemoryLedgerBackend(), _signer("ledger-key"), LedgerConfig(origin=origin))
    notes: dict[int, str] = {}
    for n in sizes:
        at = ledger.size()
        ledger.append(
            [Event("test.entry", "tester", {"seed": seed, "i": at + i}) for i in range(n)]
        )
        notes[ledger.size()] = ledger.checkpoint().to_text()
    return ledger, notes


LEDGER, NOTES = _ledger()
LEAVES = tuple(e.leaf_input for e in LEDGER.entries(0, 1000))
OTHER_KEY = Ledger(MemoryLedgerBackend(), _signer("another-key"), LedgerConfig(origin=LOG))


@dataclass
class DictState:
    """:class:`ledger.fabric.contract.WorldState` over a dict; writes kept apart, in order."""

    committed: dict[str, bytes] = field(default_factory=dict)
    writes: list[tuple[str, bytes]] = field(default_factory=list)

    async def get(self, key: str) -> bytes | None:
        return self.committed.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self.writes.append((key, value))

    async def range(self, start: str, end: str) -> AsyncIterator[tuple[str, bytes]]:
        for key in sorted(self.committed):
            if start <= key < end:
                yield key, self.committed[key]


class Channel:
    """One namespace's committed state and the contract, as a peer runs it (commit on success)."""

    def __init__(self, contract: LedgerContract | None = None) -> None:
        self.contract = contract or LedgerContract()
        self.committed: dict[str, bytes] = {}
        self.history: list[tuple[Outcome, tuple[tuple[str, bytes], ...]]] = []

    def call(self, function: str, *args: str | bytes) -> Outcome:
        state = DictState(dict(self.committed))
        raw = [a.encode() if isinstance(a, str) else a for a in args]
        outcome = asyncio.run(self.contract.invoke(state, function, raw))
        self.committed.update(state.writes)
        self.history.append((outcome, tuple(state.writes)))
        return outcome

    def refused(self, function: str, *args: str | bytes) -> wire.Refusal:
        before = dict(self.committed)
        with pytest.raises(ContractRefusal) as caught:
            self.call(function, *args)
        assert self.committed == before
        return caught.value.refusal

    def create(self, vkey: str = "") -> Outcome:
        return self.call(
            wire.CREATE_LOG, LOG, wire.LogGenesis(LOG, vkey or LEDGER.vkey()).to_json()
        )

    def append(self, start: int, end: int, checkpoint: str = "") -> Outcome:
        return self.call(wire.APPEND, LOG, batch(start, end, checkpoint).to_json())

    def head(self) -> wire.ChannelHead:
        return wire.ChannelHead.from_json(self.call(wire.HEAD, LOG).payload)


def batch(start: int, end: int, checkpoint: str = "") -> wire.AppendBatch:
    return wire.AppendBatch(start, LEAVES[start:end], LEDGER.root_at(end), checkpoint)


def anchor_request(size: int, first: int = 0, ledger: Ledger = LEDGER, note: str = "") -> bytes:
    proof = ledger.consistency_proof(first, size).hashes if first else ()
    return wire.AnchorRequest(note or NOTES[size], proof).to_json()


@pytest.fixture
def channel() -> Channel:
    made = Channel()
    made.create()
    return made


# -- CreateLog ----------------------------------------------------------------------------


def test_create_log_records_the_key_once() -> None:
    channel = Channel()
    created = channel.create()
    assert wire.LogGenesis.from_json(created.payload) == wire.LogGenesis(LOG, LEDGER.vkey())
    assert created.event is not None and created.event[0] == wire.EVENT_CREATED
    assert wire.LedgerEvent.from_payload(*created.event).size == 0
    again = channel.create()
    assert again.payload == created.payload and again.event is None
    assert channel.history[-1][1] == ()  # idempotent: nothing written
    assert channel.call(wire.GENESIS, LOG).payload == created.payload


def test_create_log_with_another_key_is_refused(channel: Channel) -> None:
    refusal = channel.refused(
        wire.CREATE_LOG, LOG, wire.LogGenesis(LOG, OTHER_KEY.vkey()).to_json()
    )
    assert refusal.code == "exists"


@pytest.mark.parametrize(
    ("genesis", "reason"),
    [
        (wire.LogGenesis("ibx.test/other", LEDGER.vkey()).to_json(), "genesis is for log"),
        (wire.LogGenesis(LOG, "not a key").to_json(), "does not parse"),
        (
            wire.LogGenesis(
                LOG, Ledger(MemoryLedgerBackend(), _signer("x"), LedgerConfig("elsewhere")).vkey()
            ).to_json(),
            "not the log id",
        ),
        (b'{"log": "ibx.test/ledger"}', "fields"),
    ],
    ids=["other-log", "garbage-key", "key-named-otherwise", "malformed"],
)
def test_create_log_with_a_bad_genesis_is_refused(genesis: bytes, reason: str) -> None:
    refusal = Channel().refused(wire.CREATE_LOG, LOG, genesis)
    assert refusal.code == "bad-request" and reason in refusal.reason


def test_an_unpinned_key_is_refused() -> None:
    pinned = Channel(LedgerContract([OTHER_KEY.vkey()]))
    assert pinned.refused(
        wire.CREATE_LOG, LOG, wire.LogGenesis(LOG, LEDGER.vkey()).to_json()
    ).code == ("not-pinned")
    Channel(LedgerContract([OTHER_KEY.vkey(), LEDGER.vkey() + "\n"])).create()


def test_a_bad_pinned_key_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="pinned ledger key"):
        LedgerContract(["nope"])


@pytest.mark.parametrize(
    ("function", "args"),
    [
        (wire.GENESIS, ()),
        (wire.HEAD, ()),
        (wire.ANCHOR_HEAD, ()),
        (wire.ENTRIES, ("0", "10")),
        (wire.ANCHORS, ("0", "10")),
        (wire.APPEND, (batch(0, 3).to_json(),)),
        (wire.ANCHOR, (anchor_request(3),)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_function_refuses_an_unknown_log(function: str, args: tuple[str | bytes]) -> None:
    assert Channel().refused(function, LOG, *args).code == "no-log"


# -- AppendEntries ------------------------------------------------------------------------


def test_batches_continue_the_log(channel: Channel) -> None:
    first = channel.append(0, 3, NOTES[3])
    assert first.event is not None
    event = wire.LedgerEvent.from_payload(*first.event)
    assert (event.name, event.start, event.size, event.root) == (
        wire.EVENT_APPENDED,
        0,
        3,
        LEDGER.root_at(3),
    )
    channel.append(3, 5)
    keys = [key for key, _ in channel.history[-1][1]]
    assert keys == [wire.entry_key(LOG, 3), wire.entry_key(LOG, 4), wire.head_key(LOG)]
    head = channel.head()
    assert (head.size, head.root, head.checkpoint) == (5, LEDGER.root_at(5), NOTES[3])
    assert head.compact() == CompactRange.empty().append(LEAVES[:5])
    page = wire.EntryPage.from_json(channel.call(wire.ENTRIES, LOG, "1", "1000").payload)
    assert page == wire.EntryPage(1, LEAVES[1:5])


@pytest.mark.parametrize(
    ("start", "end"), [(4, 6), (0, 3), (2, 4), (3, 3 + 1)], ids=["forward", "replay", "back", "ok"]
)
def test_a_batch_that_does_not_start_at_the_head_is_a_gap(
    channel: Channel, start: int, end: int
) -> None:
    channel.append(0, 3)
    if start == 3:
        channel.append(start, end)
        return
    refusal = channel.refused(wire.APPEND, LOG, batch(start, end).to_json())
    assert refusal.code == "gap"
    assert f"starts at {start}" in refusal.reason and "has 3 entries" in refusal.reason


def test_a_wrong_root_is_refused(channel: Channel) -> None:
    forged = wire.AppendBatch(0, LEAVES[:3], LEDGER.root_at(4))
    assert channel.refused(wire.APPEND, LOG, forged.to_json()).code == "root-mismatch"


def test_a_rewritten_entry_is_refused_by_its_root(channel: Channel) -> None:
    other, _ = _ledger(seed="rewritten")
    forged = wire.AppendBatch(
        0, (LEAVES[0], other.entry(1).leaf_input, LEAVES[2]), LEDGER.root_at(3)
    )
    assert channel.refused(wire.APPEND, LOG, forged.to_json()).code == "root-mismatch"


@pytest.mark.parametrize(
    "leaves",
    [
        (LEAVES[1], LEAVES[0], LEAVES[2]),
        (LEAVES[0], LEAVES[0]),
        (LEAVES[0], b'{"not": "an entry"}'),
        (LEAVES[0], LEAVES[1].replace(b'"index":1', b'"index":true')),
    ],
    ids=["swapped", "repeated", "not-an-entry", "bool-index"],
)
def test_a_leaf_whose_index_is_not_its_position_is_refused(
    channel: Channel, leaves: tuple[bytes, ...]
) -> None:
    root = CompactRange.empty().append(leaves).root()  # the root of what is sent: only the
    forged = wire.AppendBatch(0, leaves, root)  # index rule can refuse it
    refusal = channel.refused(wire.APPEND, LOG, forged.to_json())
    assert refusal.code == "bad-request" and "entry" in refusal.reason


def test_too_many_or_too_large_or_no_entries_are_refused(channel: Channel) -> None:
    many = wire.AppendBatch(0, (b"x",) * (wire.MAX_BATCH_ENTRIES + 1), bytes(32))
    assert channel.refused(wire.APPEND, LOG, many.to_json()).code == "too-large"
    count = wire.MAX_BATCH_BYTES // (1 << 16) + 1
    large = wire.AppendBatch(0, (b"x" * (1 << 16),) * count, bytes(32))
    assert channel.refused(wire.APPEND, LOG, large.to_json()).code == "too-large"
    empty = wire.AppendBatch(0, (), bytes(32))
    assert channel.refused(wire.APPEND, LOG, empty.to_json()).code == "bad-request"


def _note(origin: str, size: int, root: bytes, signer: Ed25519Signer, name: str = LOG) -> str:
    return sign_note(Checkpoint(origin, size, root).to_text(), name, signer).to_text()


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        (OTHER_KEY.checkpoint().to_text(), "no signature by"),
        (
            _note(LOG, 3, LEDGER.root_at(3), _signer("another-key")),
            "no signature by",
        ),
        (_note("ibx.test/other", 3, LEDGER.root_at(3), _signer("ledger-key")), "origin"),
        (_note(LOG, 2, LEDGER.root_at(2), _signer("ledger-key")), "size 2"),
        (_note(LOG, 3, LEDGER.root_at(2), _signer("ledger-key")), "root"),
        ("not a note", "does not verify"),
        (
            NOTES[3].replace(base64.b64encode(LEDGER.root_at(3)).decode(), "A" * 43 + "="),
            "does not verify",
        ),
    ],
    ids=["another-key", "another-key-same-name", "other-origin", "wrong-size", "wrong-root",
         "garbage", "edited"],
)  # fmt: skip
def test_a_batch_checkpoint_must_be_the_logs_signed_head(
    channel: Channel, note: str, reason: str
) -> None:
    refusal = channel.refused(wire.APPEND, LOG, batch(0, 3, note).to_json())
    assert refusal.code == "bad-checkpoint" and reason in refusal.reason


# -- AnchorCheckpoint ---------------------------------------------------------------------


def test_anchors_grow_consistently(channel: Channel) -> None:
    first = channel.call(wire.ANCHOR, LOG, anchor_request(3))
    assert wire.AnchorHead.from_json(first.payload) == wire.AnchorHead(
        3, LEDGER.root_at(3), NOTES[3]
    )
    second = channel.call(wire.ANCHOR, LOG, anchor_request(20, 3))
    assert second.event is not None
    event = wire.LedgerEvent.from_payload(*second.event)
    assert (event.name, event.start, event.size) == (wire.EVENT_ANCHORED, 3, 20)
    page = wire.AnchorPage.from_json(channel.call(wire.ANCHORS, LOG, "0", "10").payload)
    assert page.checkpoints == (NOTES[3], NOTES[20])
    later = wire.AnchorPage.from_json(channel.call(wire.ANCHORS, LOG, "3", "10").payload)
    assert later.checkpoints == (NOTES[20],)
    one = wire.AnchorPage.from_json(channel.call(wire.ANCHORS, LOG, "0", "1").payload)
    assert one.checkpoints == (NOTES[3],)
    head = wire.AnchorHead.from_json(channel.call(wire.ANCHOR_HEAD, LOG).payload)
    assert (head.size, head.checkpoint) == (20, NOTES[20])


def test_an_anchor_not_beyond_the_last_is_refused(channel: Channel) -> None:
    channel.call(wire.ANCHOR, LOG, anchor_request(7))
    assert channel.refused(wire.ANCHOR, LOG, anchor_request(7)).code == "not-newer"
    assert channel.refused(wire.ANCHOR, LOG, anchor_request(3)).code == "not-newer"


def test_an_anchor_with_a_bad_proof_is_refused(channel: Channel) -> None:
    channel.call(wire.ANCHOR, LOG, anchor_request(3))
    bad = wire.AnchorRequest(NOTES[9], (bytes(32),) * 3).to_json()
    assert channel.refused(wire.ANCHOR, LOG, bad).code == "inconsistent"
    none = wire.AnchorRequest(NOTES[9], ()).to_json()
    assert channel.refused(wire.ANCHOR, LOG, none).code == "inconsistent"
    first_with_proof = Channel()
    first_with_proof.create()
    extra = wire.AnchorRequest(NOTES[9], (bytes(32),)).to_json()
    assert first_with_proof.refused(wire.ANCHOR, LOG, extra).code == "inconsistent"


def test_an_anchor_of_a_rewritten_history_is_refused(channel: Channel) -> None:
    """The operator rebuilds the log with other entries under the same key: its checkpoints
    verify, and its own consistency proofs are valid for it, but not from the anchor."""
    channel.call(wire.ANCHOR, LOG, anchor_request(7))
    rewritten, notes = _ledger(seed="rewritten")
    request = anchor_request(20, 7, ledger=rewritten, note=notes[20])
    refusal = channel.refused(wire.ANCHOR, LOG, request)
    assert refusal.code == "inconsistent" and "from anchored size 7 to 20" in refusal.reason


def test_an_anchor_signed_by_another_key_is_refused(channel: Channel) -> None:
    note = _note(LOG, 3, LEDGER.root_at(3), _signer("another-key"))
    refusal = channel.refused(wire.ANCHOR, LOG, wire.AnchorRequest(note, ()).to_json())
    assert refusal.code == "bad-checkpoint"


# -- requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "args", "code"),
    [
        ("Delete", (LOG,), "bad-request"),
        (wire.HEAD, (), "bad-request"),
        (wire.HEAD, (LOG, "extra"), "bad-request"),
        (wire.HEAD, ("has space",), "bad-request"),
        (wire.HEAD, (b"\xff",), "bad-request"),
        (wire.ENTRIES, (LOG, "-1", "10"), "bad-request"),
        (wire.ENTRIES, (LOG, "01", "10"), "bad-request"),
        (wire.ENTRIES, (LOG, "0", "1001"), "too-large"),
        (wire.ANCHORS, (LOG, "1" * 20, "1"), "bad-request"),
        (wire.APPEND, (LOG, b"{}"), "bad-request"),
        (wire.ANCHOR, (LOG, b"[]"), "bad-request"),
    ],
    ids=["unknown", "no-log-id", "extra", "space", "not-utf8", "negative", "leading-zero",
         "page", "huge", "bad-batch", "bad-anchor"],
)  # fmt: skip
def test_malformed_requests_are_refused(
    channel: Channel, function: str, args: tuple[str | bytes, ...], code: str
) -> None:
    assert channel.refused(function, *args).code == code


def test_queries_write_nothing(channel: Channel) -> None:
    channel.append(0, 9, NOTES[9])
    channel.call(wire.ANCHOR, LOG, anchor_request(9))
    for function, args in [
        (wire.HEAD, ()),
        (wire.GENESIS, ()),
        (wire.ENTRIES, ("0", "0")),
        (wire.ENTRIES, ("5", "100")),
        (wire.ANCHOR_HEAD, ()),
        (wire.ANCHORS, ("0", "5")),
    ]:
        outcome = channel.call(function, LOG, *args)
        assert outcome.event is None and channel.history[-1][1] == ()
    page = wire.EntryPage.from_json(channel.call(wire.ENTRIES, LOG, "5", "100").payload)
    assert page.leaves == LEAVES[5:9]


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=15), min_size=1, max_size=40))
def test_any_split_gives_the_same_head_and_the_channel_rebuilds_the_root(
    cuts: list[int],
) -> None:
    channel = Channel()
    channel.create()
    total = len(LEAVES)
    start = 0
    carried = ""
    for n in cuts:
        if start == total:
            break
        end = min(total, start + n)
        channel.append(start, end, NOTES.get(end, ""))
        carried = NOTES.get(end, carried)
        start = end
    head = channel.head()
    assert (head.size, head.root, head.checkpoint) == (start, LEDGER.root_at(start), carried)
    page = wire.EntryPage.from_json(channel.call(wire.ENTRIES, LOG, "0", "1000").payload)
    assert page.leaves == LEAVES[:start]
    assert CompactRange.empty().append(page.leaves).root() == LEDGER.root_at(start)


def _session() -> list[tuple[Outcome, tuple[tuple[str, bytes], ...]]]:
    channel = Channel(LedgerContract([LEDGER.vkey()]))
    channel.create()
    channel.append(0, 7, NOTES[7])
    channel.append(7, 20, NOTES[20])
    channel.call(wire.ANCHOR, LOG, anchor_request(9))
    channel.call(wire.ANCHOR, LOG, anchor_request(40, 9))
    channel.call(wire.ENTRIES, LOG, "0", "50")
    with pytest.raises(ContractRefusal) as caught:
        channel.call(wire.APPEND, LOG, batch(19, 22).to_json())
    channel.history.append((Outcome(caught.value.refusal.message().encode()), ()))
    return channel.history


def test_the_same_input_gives_byte_identical_writes_and_events() -> None:
    first, second = _session(), _session()
    assert first == second
    assert any(writes for _, writes in first)
