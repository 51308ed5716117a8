"""Witnesses at the exchange: cosignatures taken in, checkpoints served with them, forks raised.

* :func:`accept_cosignature` (``POST /v1/ledger/cosignatures``): the note a
  witness posts must carry this ledger's signature on a checkpoint of this
  ledger's history, and the calling witness's cosignature (C2SP
  ``tlog-cosignature``) under the key the ledger records for it
  (:class:`exchange.duty_keys.LedgerDutyKeys`). The checkpoint and the line
  are stored (:class:`ledger.CheckpointStore`) and a ``ledger.cosignature``
  entry recorded, in one transaction.
* :func:`served_note`: a checkpoint the ledger signed, with the cosignature
  lines kept for it (``GET /v1/ledger/checkpoint``, the agents' evidence).
* :func:`accept_fork_report` (``POST /v1/ledger/forks``): two checkpoints
  both signed by this ledger's key that cannot both be its history (one size,
  two roots; or one that is not the tree this ledger holds at its size, or
  is larger than it) are a fork: recorded as a critical ``witness.fork``
  alert. A report of two checkpoints of this ledger's history is false (422).

A note signed by this ledger's key that is not its history, posted as a
cosignature, is refused (409) and raised as the same alert: someone holds the
key and signs another tree.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.alerts import Alert, Severity
from core.canonical import JsonValue
from core.errors import IbxError
from core.events import Event
from exchange.access import Grant
from exchange.error_table import ForbiddenError
from exchange.runtime import Runtime
from exchange.witness_entries import CosignatureEntry
from ledger import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    CosignatureVerifier,
    NoteSignature,
    SignedNote,
    StoredCosignature,
    verify_cosignature,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "FORK_RULE",
    "AcceptedCosignature",
    "CosignatureRefusedError",
    "ForkReportRefusedError",
    "UnknownCheckpointError",
    "accept_cosignature",
    "accept_fork_report",
    "served_note",
]

logger = logging.getLogger(__name__)

FORK_RULE = "witness.fork"
CLOCK_SKEW = 300
"""Seconds a cosignature's timestamp may be ahead of the exchange's clock."""


class CosignatureRefusedError(ForbiddenError):
    """The cosignature does not verify under the calling witness's ledgered key (403)."""

    title = "cosignature refused"


class UnknownCheckpointError(IbxError):
    """The cosigned body is not a checkpoint this exchange signed (409)."""

    title = "not a checkpoint of this ledger"


class ForkReportRefusedError(IbxError):
    """A fork report whose checkpoints are not a fork of this ledger (422)."""

    title = "fork report refused"


@dataclass(frozen=True)
class AcceptedCosignature:
    """A stored cosignature: the checkpoint it is on and the entry that records it."""

    witness: str
    size: int
    timestamp: int
    index: int
    new: bool

    def to_dict(self) -> dict[str, JsonValue]:
        """The ``201`` answer."""
        return {
            "witness": self.witness,
            "size": self.size,
            "timestamp": self.timestamp,
            "index": self.index,
            "new": self.new,
        }


def store_of(runtime: Runtime) -> CheckpointStore:
    """The checkpoint store on the runtime's database (cheap: no state of its own)."""
    return CheckpointStore(runtime.db)


def served_note(runtime: Runtime, note: SignedNote | None = None) -> SignedNote:
    """``note`` (default: the latest checkpoint) with the cosignature lines kept for it."""
    return store_of(runtime).served(note if note is not None else runtime.ledger.checkpoint())


def _ledger_line(runtime: Runtime, note: SignedNote) -> NoteSignature | None:
    verifier = runtime.ledger.verifier
    for sig in note.signatures:
        if sig.name == verifier.name and sig.key_id == verifier.key_id:
            return sig
    return None


def _ours(runtime: Runtime, note: SignedNote) -> Checkpoint | None:
    """The checkpoint of ``note`` if this ledger's key signed it for its origin, else None."""
    try:
        note.verify(runtime.ledger.verifier)
        checkpoint = Checkpoint.from_text(note.text)
    except CheckpointError:
        return None
    if checkpoint.origin != runtime.ledger.config.origin:
        return None
    return checkpoint


def _divergence(runtime: Runtime, checkpoint: Checkpoint) -> str | None:
    """Why ``checkpoint`` (signed by this ledger's key) is not this ledger's history; None
    when it is."""
    size = runtime.ledger.size()
    if checkpoint.size > size:
        return (
            f"the ledger's key signed a tree of {checkpoint.size} entries but the ledger "
            f"holds {size}: rolled back, or another log under the same key"
        )
    if runtime.ledger.root_at(checkpoint.size) != checkpoint.root:
        return (
            f"the ledger's key signed a tree of {checkpoint.size} entries whose root is not "
            "this ledger's at that size: a fork"
        )
    return None


def _record_fork(
    runtime: Runtime,
    actor: str,
    reason: str,
    notes: Sequence[str],
    *,
    consistency: JsonValue = None,
) -> int:
    """Record the ``witness.fork`` alert in a transaction of its own; its ledger index."""
    alert = Alert(
        rule=FORK_RULE,
        severity=Severity.CRITICAL,
        subject=runtime.ledger.config.origin,
        message=f"{actor} reports a fork of the ledger: {reason}",
        details={
            "witness": actor,
            "reason": reason,
            "checkpoints": list(notes),
            "consistency": consistency,
        },
    )
    event = alert.event(actor)
    recorded = runtime.pipeline.group.run(
        lambda session: runtime.ledger.record(event, session=session)
    )
    logger.warning("fork alert at ledger index %d: %s", recorded.index, reason)
    return int(recorded.index)


def accept_cosignature(runtime: Runtime, grant: Grant, text: str) -> AcceptedCosignature:
    """Check and keep the calling witness's cosignature on a checkpoint of this ledger.

    Raises:
        CheckpointError: the body is not a signed note (400).
        UnknownCheckpointError: this ledger did not sign the body, or did but it is not
            its history (then also raised as a ``witness.fork`` alert) (409).
        DutyError: the witness's registered key disagrees with the ledger (403).
        CosignatureRefusedError: no cosignature by the witness, or it does not verify
            under the witness's ledgered key (403).
    """
    witness = grant.identity.name
    note = SignedNote.from_text(text)
    checkpoint = _ours(runtime, note)
    if checkpoint is None:
        raise UnknownCheckpointError(
            "the cosigned body is not a checkpoint this exchange signed (no valid signature "
            f"by {runtime.ledger.verifier.name} for origin {runtime.ledger.config.origin})"
        )
    diverges = _divergence(runtime, checkpoint)
    if diverges is not None:
        _record_fork(runtime, witness, diverges, [text])
        raise UnknownCheckpointError(
            f"the cosigned checkpoint is not this ledger's history: {diverges} "
            "(recorded as a witness.fork alert)"
        )
    key = runtime.duty_keys.duty_key(witness, "witness")
    verifier = CosignatureVerifier(witness, key)
    try:
        timestamp = verify_cosignature(note, verifier, not_after=int(time.time()) + CLOCK_SKEW)
    except CheckpointError as exc:
        raise CosignatureRefusedError(
            f"{exc}: a cosignature must be by {witness}'s registered key "
            f"(vkey {verifier.to_vkey()})"
        ) from exc
    line = next(s for s in note.signatures if s.name == witness and s.key_id == verifier.key_id)
    ledger_line = _ledger_line(runtime, note)
    assert ledger_line is not None  # _ours verified it
    signed = SignedNote(note.text, (ledger_line,))
    entry = CosignatureEntry(
        witness=witness,
        origin=checkpoint.origin,
        size=checkpoint.size,
        root=base64.b64encode(checkpoint.root).decode(),
        key_id=verifier.key_id.hex(),
        timestamp=timestamp,
        cosignature=base64.b64encode(line.key_id + line.signature).decode(),
    )
    event = Event(CosignatureEntry.TYPE, witness, entry.to_payload(), subjects=(witness,))
    store = store_of(runtime)

    def work(session: Session) -> tuple[bool, int]:
        new = store.add(
            signed, StoredCosignature(checkpoint.size, line, timestamp), session=session
        )
        recorded = runtime.ledger.record(event, session=session)
        return new, int(recorded.index)

    new, index = runtime.pipeline.group.run(work)
    logger.info("cosignature by %s on checkpoint %d kept", witness, checkpoint.size)
    return AcceptedCosignature(witness, checkpoint.size, timestamp, index, new)


def accept_fork_report(
    runtime: Runtime, grant: Grant, notes: Sequence[str], consistency: JsonValue = None
) -> tuple[int, str]:
    """Check a witness's fork report and record it as a ``witness.fork`` alert; the
    alert's ledger index and the reason.

    Raises:
        ForkReportRefusedError: not two notes both signed by this ledger's key for its
            origin, or both are this ledger's history (no fork) (422).
    """
    if len(notes) != 2:
        raise ForkReportRefusedError("a fork report carries exactly two signed checkpoints")
    parsed: list[Checkpoint] = []
    for text in notes:
        try:
            checkpoint = _ours(runtime, SignedNote.from_text(text))
        except CheckpointError:
            checkpoint = None
        if checkpoint is None:
            raise ForkReportRefusedError(
                "each checkpoint of a fork report must be signed by this ledger's key "
                f"({runtime.ledger.verifier.name}) for its origin"
            )
        parsed.append(checkpoint)
    first, second = parsed
    reason: str | None = None
    if first.size == second.size and first.root != second.root:
        reason = f"two checkpoints of size {first.size} with different roots"
    else:
        for checkpoint in parsed:
            reason = _divergence(runtime, checkpoint)
            if reason is not None:
                break
    if reason is None:
        raise ForkReportRefusedError(
            "both checkpoints are this ledger's history (consistent with its tree): no fork"
        )
    index = _record_fork(runtime, grant.identity.name, reason, notes, consistency=consistency)
    return index, reason
