"""The ibx ledger chaincode's interface: function names, argument and result
documents, world-state keys, events and refusal codes (docs/fabric.md).

Both sides use these types: the chaincode (``ledger.fabric.chaincode``) and the
client that ships the log (``ledger.fabric.shipper`` over the Gateway). Every
document is RFC 8785 canonical JSON with integers and base64 strings only (no
floating point), so the same input gives the same bytes, and the same write
set, on every endorsing peer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from core.canonical import JsonValue, canonical_bytes, parse_json_object
from core.errors import CanonicalJsonError
from ledger._compact import CompactRange
from ledger._merkle import HASH_SIZE
from ledger.errors import LedgerError

__all__ = [
    "ANCHOR",
    "ANCHORS",
    "ANCHOR_HEAD",
    "APPEND",
    "CREATE_LOG",
    "ENTRIES",
    "EVENT_ANCHORED",
    "EVENT_APPENDED",
    "EVENT_CREATED",
    "GENESIS",
    "HEAD",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ENTRIES",
    "MAX_LOG_ID",
    "MAX_PAGE",
    "REFUSAL_PREFIX",
    "AnchorHead",
    "AnchorPage",
    "AnchorRequest",
    "AppendBatch",
    "ChannelHead",
    "EntryPage",
    "LedgerEvent",
    "LogGenesis",
    "Refusal",
    "WireError",
    "anchor_head_key",
    "anchor_key",
    "check_log_id",
    "entry_key",
    "find_refusal",
    "genesis_key",
    "head_key",
]

# -- functions -------------------------------------------------------------------------
# A channel can carry several logs; each is named by its log id (the ledger's checkpoint
# origin, :func:`check_log_id`), the first argument of every function.
CREATE_LOG: Final = "CreateLog"
"""Submit. Arguments: log id, :class:`LogGenesis`. Records the log's checkpoint verifier
key: the genesis must name this log and carry a C2SP Ed25519 verifier key whose key name
is the log id (``bad-request``), one of the keys this organisation's service pins if it
pins any (``not-pinned``). Idempotent for the same key (no write, no event), refused
(``exists``) for another. Result: the genesis as stored (the key normalised)."""
GENESIS: Final = "Genesis"
"""Evaluate. Argument: log id. Result: :class:`LogGenesis` (refused ``no-log`` if none)."""
APPEND: Final = "AppendEntries"
"""Submit. Arguments: log id, :class:`AppendBatch`. Refused: ``bad-request`` (a malformed
batch, checked before the log's existence; no entries; a leaf that is not a ledger entry
whose index is its position), ``no-log``, ``too-large`` (over :data:`MAX_BATCH_ENTRIES` or
:data:`MAX_BATCH_BYTES`), ``gap`` (not starting at the channel's size), ``root-mismatch``,
``bad-checkpoint``. Result: the new :class:`ChannelHead` (keeping the latest checkpoint)."""
ANCHOR: Final = "AnchorCheckpoint"
"""Submit. Arguments: log id, :class:`AnchorRequest`. Refused: ``bad-request``, ``no-log``,
``bad-checkpoint`` (not signed by the log's key, or another origin), ``not-newer`` (not
beyond the anchored size; the same size again too), ``inconsistent`` (the proof from the
anchored checkpoint fails; the first anchor must carry an empty proof). Result: the new
:class:`AnchorHead`."""
HEAD: Final = "Head"
"""Evaluate. Argument: log id. Result: :class:`ChannelHead`. Refused ``no-log`` for a log
never created (an unknown log id never reads as an empty log); a created log's head is
size 0 (the empty tree's root, no frontier, no checkpoint) until its first batch."""
ENTRIES: Final = "Entries"
"""Evaluate. Arguments: log id, start, count (decimal, at most 19 digits: ``bad-request``;
count 0..:data:`MAX_PAGE`: ``too-large``). Result: :class:`EntryPage`, the stored leaf
inputs from ``start``, fewer than ``count`` (or none) at the log's end. Refused ``no-log``
for a log never created."""
ANCHOR_HEAD: Final = "AnchorHead"
"""Evaluate. Argument: log id. Result: :class:`AnchorHead`. Refused ``no-log`` for a log
never created; a created log's anchor head is size 0 until its first anchor."""
ANCHORS: Final = "Anchors"
"""Evaluate. Arguments: log id, after (a tree size), count (decimal, as :data:`ENTRIES`).
Result: :class:`AnchorPage`, at most ``count`` anchored checkpoints of size greater than
``after``, in size order. Refused ``no-log`` for a log never created."""

# -- events ----------------------------------------------------------------------------
EVENT_CREATED: Final = "ibx.ledger.created"
"""Emitted by :data:`CREATE_LOG` the first time; payload :class:`LedgerEvent` (0, 0, empty root)."""
EVENT_APPENDED: Final = "ibx.ledger.appended"
"""Emitted by :data:`APPEND`; payload :class:`LedgerEvent` (start, size, root)."""
EVENT_ANCHORED: Final = "ibx.ledger.anchored"
"""Emitted by :data:`ANCHOR`; payload :class:`LedgerEvent` (start = previous anchored size)."""

# -- world state (keys, see the functions below) ----------------------------------------
MAX_LOG_ID: Final = 200
"""The longest log id."""

# -- limits ----------------------------------------------------------------------------
MAX_BATCH_ENTRIES: Final = 1000
"""The most entries one :data:`APPEND` transaction carries."""
MAX_BATCH_BYTES: Final = 8 << 20
"""The most leaf-input bytes one :data:`APPEND` transaction carries."""
MAX_PAGE: Final = 1000
"""The most entries or checkpoints one query returns."""

REFUSAL_PREFIX: Final = "ibx-ledger/"
"""Every refusal message the chaincode returns starts with this, then a code and ': '."""


def check_log_id(log: str) -> str:
    """``log`` if it can name a log: 1-200 printable ASCII characters, no space or ``~``.

    Raises:
        WireError: it cannot.
    """
    if not 0 < len(log) <= MAX_LOG_ID or any(not "!" <= c <= "}" for c in log):
        raise WireError(
            f"a log id is 1-{MAX_LOG_ID} printable ASCII characters without spaces or '~'"
        )
    return log


def genesis_key(log: str) -> str:
    """The world-state key of a log's :class:`LogGenesis`."""
    return f"ibx~{log}~genesis"


def head_key(log: str) -> str:
    """The world-state key of a log's full-mode :class:`ChannelHead`."""
    return f"ibx~{log}~head"


def entry_key(log: str, index: int) -> str:
    """The world-state key of the entry at ``index`` (zero-padded: range scans are in order)."""
    return f"ibx~{log}~entry~{index:020d}"


def anchor_head_key(log: str) -> str:
    """The world-state key of a log's :class:`AnchorHead`."""
    return f"ibx~{log}~anchor"


def anchor_key(log: str, size: int) -> str:
    """The world-state key of the anchored checkpoint note of tree ``size``."""
    return f"ibx~{log}~anchor~{size:020d}"


class WireError(LedgerError):
    """A document is not what the chaincode interface says it is."""


@dataclass(frozen=True)
class Refusal:
    """The chaincode refused a transaction: a stable code and the reason.

    Codes: ``bad-request`` (an unknown function, another argument count, a
    malformed document, log id or decimal, an empty batch, a leaf that is not a
    ledger entry at its position), ``no-log`` (no :data:`CREATE_LOG` yet: every
    other function, queries included), ``exists`` (the log exists with another
    key), ``not-pinned`` (this organisation's chaincode service pins other
    ledger keys), ``gap`` (the batch does not start at the channel's size),
    ``too-large`` (a batch over :data:`MAX_BATCH_ENTRIES` entries or
    :data:`MAX_BATCH_BYTES` bytes, a page over :data:`MAX_PAGE`),
    ``root-mismatch`` (the recomputed root is not the one the batch claims),
    ``bad-checkpoint`` (not signed by the log's key from its genesis, another
    origin, or not this tree), ``not-newer`` (an anchor not beyond the last
    one), ``inconsistent`` (the consistency proof from the last anchor fails,
    or the first anchor carries one).
    """

    code: str
    reason: str

    def message(self) -> str:
        """The chaincode's error message: ``ibx-ledger/<code>: <reason>``."""
        return f"{REFUSAL_PREFIX}{self.code}: {self.reason}"


def find_refusal(text: str) -> Refusal | None:
    """The refusal inside ``text`` (Fabric wraps a chaincode's message in its own), if any."""
    at = text.find(REFUSAL_PREFIX)
    if at < 0:
        return None
    rest = text[at + len(REFUSAL_PREFIX) :]
    code, sep, reason = rest.partition(": ")
    if not sep or not code or any(not (c.isalnum() or c == "-") for c in code):
        return None
    return Refusal(code, reason)


# -- documents -------------------------------------------------------------------------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _obj(
    data: bytes | str, what: str, keys: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, JsonValue]:
    try:
        obj = parse_json_object(data, what=what)
    except CanonicalJsonError as exc:
        raise WireError(str(exc)) from exc
    missing = keys - obj.keys()
    extra = obj.keys() - keys - optional
    if missing or extra:
        raise WireError(
            f"{what}: fields must be {sorted(keys | optional)}"
            + (f"; missing {sorted(missing)}" if missing else "")
            + (f"; unexpected {sorted(extra)}" if extra else "")
        )
    return obj


def _int(obj: Mapping[str, JsonValue], key: str, what: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WireError(f"{what}: {key} must be a non-negative integer")
    return value


def _str(obj: Mapping[str, JsonValue], key: str, what: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise WireError(f"{what}: {key} must be a string")
    return value


def _bytes(value: JsonValue, what: str, *, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise WireError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise WireError(f"{what} is not base64") from exc
    if size is not None and len(raw) != size:
        raise WireError(f"{what} must be {size} bytes")
    return raw


def _list(obj: Mapping[str, JsonValue], key: str, what: str) -> Sequence[JsonValue]:
    value = obj[key]
    if not isinstance(value, list):
        raise WireError(f"{what}: {key} must be a list")
    return value


def _hashes(obj: Mapping[str, JsonValue], key: str, what: str) -> tuple[bytes, ...]:
    return tuple(
        _bytes(h, f"{what}: {key}[{i}]", size=HASH_SIZE)
        for i, h in enumerate(_list(obj, key, what))
    )


@dataclass(frozen=True)
class LogGenesis:
    """A log on the channel: its id and the C2SP verifier key of its checkpoint signer
    (``ibx ledger vkey``); every checkpoint a batch or an anchor carries must verify
    under it, and its key name must be the log id."""

    log: str
    vkey: str

    def to_json(self) -> bytes:
        """The canonical document."""
        return canonical_bytes({"log": self.log, "vkey": self.vkey})

    @classmethod
    def from_json(cls, data: bytes | str) -> LogGenesis:
        """Parse a genesis.

        Raises:
            WireError: malformed.
        """
        what = "log genesis"
        obj = _obj(data, what, {"log", "vkey"})
        return cls(check_log_id(_str(obj, "log", what)), _str(obj, "vkey", what))


@dataclass(frozen=True)
class AppendBatch:
    """Entries ``start .. start + len(leaves)`` as stored (leaf inputs), and the root the
    log has at their end. ``checkpoint`` is the ledger's signed checkpoint note of exactly
    that tree when the shipper has one (the batch ends at the signed head), else ``""``."""

    start: int
    leaves: tuple[bytes, ...]
    root: bytes
    checkpoint: str = ""

    @property
    def end(self) -> int:
        """The tree size after this batch."""
        return self.start + len(self.leaves)

    def to_json(self) -> bytes:
        """The canonical document."""
        return canonical_bytes(
            {
                "start": self.start,
                "leaves": [_b64(leaf) for leaf in self.leaves],
                "root": _b64(self.root),
                "checkpoint": self.checkpoint,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> AppendBatch:
        """Parse a batch.

        Raises:
            WireError: malformed.
        """
        what = "append batch"
        obj = _obj(data, what, {"start", "leaves", "root", "checkpoint"})
        leaves = tuple(
            _bytes(leaf, f"{what}: leaves[{i}]")
            for i, leaf in enumerate(_list(obj, "leaves", what))
        )
        return cls(
            _int(obj, "start", what),
            leaves,
            _bytes(obj["root"], f"{what}: root", size=HASH_SIZE),
            _str(obj, "checkpoint", what),
        )


@dataclass(frozen=True)
class ChannelHead:
    """Full mode's head on the channel: size, root, the compact range (right frontier)
    and the latest signed checkpoint a batch carried (``""`` if none yet)."""

    size: int
    root: bytes
    frontier: tuple[bytes, ...]
    checkpoint: str = ""

    @classmethod
    def of(cls, compact: CompactRange, checkpoint: str = "") -> ChannelHead:
        """The head for a compact range."""
        return cls(compact.size, compact.root(), compact.hashes, checkpoint)

    def compact(self) -> CompactRange:
        """The compact range (checked against the size).

        Raises:
            WireError: the frontier does not fit the size, or does not fold to the root.
        """
        try:
            compact = CompactRange(self.size, self.frontier)
        except ValueError as exc:
            raise WireError(f"channel head: {exc}") from exc
        if compact.root() != self.root:
            raise WireError("channel head: the frontier does not fold to the root")
        return compact

    def to_json(self) -> bytes:
        """The canonical document."""
        return canonical_bytes(
            {
                "size": self.size,
                "root": _b64(self.root),
                "frontier": [_b64(h) for h in self.frontier],
                "checkpoint": self.checkpoint,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> ChannelHead:
        """Parse a head.

        Raises:
            WireError: malformed.
        """
        what = "channel head"
        obj = _obj(data, what, {"size", "root", "frontier", "checkpoint"})
        return cls(
            _int(obj, "size", what),
            _bytes(obj["root"], f"{what}: root", size=HASH_SIZE),
            _hashes(obj, "frontier", what),
            _str(obj, "checkpoint", what),
        )


@dataclass(frozen=True)
class EntryPage:
    """Leaf inputs from ``start``, in index order (at most :data:`MAX_PAGE`; it ends at
    the first index the channel does not hold)."""

    start: int
    leaves: tuple[bytes, ...]

    def to_json(self) -> bytes:
        """The canonical document."""
        return canonical_bytes(
            {"start": self.start, "leaves": [_b64(leaf) for leaf in self.leaves]}
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> EntryPage:
        """Parse a page.

        Raises:
            WireError: malformed.
        """
        what = "entry page"
        obj = _obj(data, what, {"start", "leaves"})
        leaves = tuple(
            _bytes(leaf, f"{what}: leaves[{i}]")
            for i, leaf in enumerate(_list(obj, "leaves", what))
        )
        return cls(_int(obj, "start", what), leaves)


@dataclass(frozen=True)
class AnchorRequest:
    """A signed checkpoint note and the RFC 9162 consistency proof from the channel's
    last anchored checkpoint to it (empty for the first anchor)."""

    checkpoint: str
    proof: tuple[bytes, ...]

    def to_json(self) -> bytes:
        """The canonical document."""
        return canonical_bytes(
            {"checkpoint": self.checkpoint, "proof": [_b64(h) for h in self.proof]}
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> AnchorRequest:
        """Parse a request.

        Raises:
            WireError: malformed.
        """
        what = "anchor request"
        obj = _obj(data, what, {"checkpoint", "proof"})
        return cls(_str(obj, "checkpoint", what), _hashes(obj, "proof", what))


@dataclass(frozen=True)
class AnchorHead:
    """Anchor mode's head: the last anchored checkpoint (size 0, the empty tree's root and
    ``""`` before any)."""

    size: int
    root: bytes
    checkpoint: str

    def to_json(self) -> bytes:
        """The canonical document."""
        return canonical_bytes(
            {"size": self.size, "root": _b64(self.root), "checkpoint": self.checkpoint}
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> AnchorHead:
        """Parse a head.

        Raises:
            WireError: malformed.
        """
        what = "anchor head"
        obj = _obj(data, what, {"size", "root", "checkpoint"})
        return cls(
            _int(obj, "size", what),
            _bytes(obj["root"], f"{what}: root", size=HASH_SIZE),
            _str(obj, "checkpoint", what),
        )


@dataclass(frozen=True)
class AnchorPage:
    """Anchored checkpoint notes, in size order (at most :data:`MAX_PAGE`)."""

    checkpoints: tuple[str, ...]

    def to_json(self) -> bytes:
        """The canonical document."""
        return canonical_bytes({"checkpoints": list(self.checkpoints)})

    @classmethod
    def from_json(cls, data: bytes | str) -> AnchorPage:
        """Parse a page.

        Raises:
            WireError: malformed.
        """
        what = "anchor page"
        obj = _obj(data, what, {"checkpoints"})
        notes = _list(obj, "checkpoints", what)
        if not all(isinstance(n, str) for n in notes):
            raise WireError(f"{what}: checkpoints must be strings")
        return cls(tuple(str(n) for n in notes))


@dataclass(frozen=True)
class LedgerEvent:
    """A chaincode event's payload: log ``log`` grew from ``start`` to ``size`` with ``root``."""

    name: str
    log: str
    start: int
    size: int
    root: bytes
    block: int = 0
    """The block that committed it (set by the client from the event stream; not in the payload)."""
    tx_id: str = ""

    def payload(self) -> bytes:
        """The canonical payload."""
        return canonical_bytes(
            {"log": self.log, "start": self.start, "size": self.size, "root": _b64(self.root)}
        )

    @classmethod
    def from_payload(
        cls, name: str, data: bytes, *, block: int = 0, tx_id: str = ""
    ) -> LedgerEvent:
        """Parse an event payload.

        Raises:
            WireError: malformed.
        """
        what = f"event {name}"
        obj = _obj(data, what, {"log", "start", "size", "root"})
        return cls(
            name,
            check_log_id(_str(obj, "log", what)),
            _int(obj, "start", what),
            _int(obj, "size", what),
            _bytes(obj["root"], f"{what}: root", size=HASH_SIZE),
            block,
            tx_id,
        )
