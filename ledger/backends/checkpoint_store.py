"""The checkpoints served to witnesses, kept with the cosignatures they brought back.

``ledger_checkpoints``   one row per tree size a witness cosigned: the ledger's
                         signed note (body and the ledger's own signature line)
``ledger_cosignatures``  one row per (size, witness name, key id): the witness's
                         cosignature line (C2SP ``tlog-cosignature``) and its timestamp

Rows are an index of signatures anyone can verify: a served note is the
stored ledger note with its cosignature lines appended, and every line is
checked by whoever trusts it (an agent with ``--witness-quorum``, ``ibx audit
verify``). The exchange checks each line before it stores it
(``POST /v1/ledger/cosignatures``); this module only stores and reads.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import cast

from sqlalchemy import BigInteger, LargeBinary, String, Table, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.clock import format_rfc3339, utcnow
from core.db import Base, Database
from ledger._checkpoint import Checkpoint, NoteSignature, SignedNote
from ledger._cosignature import with_cosignatures
from ledger.errors import CheckpointError

__all__ = ["CheckpointStore", "StoredCosignature"]


class LedgerCheckpointRow(Base):
    """A checkpoint the ledger signed and a witness cosigned."""

    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    note: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[str] = mapped_column(String(40))


class LedgerCosignatureRow(Base):
    """One witness's cosignature line on the checkpoint of ``size``."""

    __tablename__ = "ledger_cosignatures"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    key_id: Mapped[bytes] = mapped_column(LargeBinary(4), primary_key=True)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    timestamp: Mapped[int] = mapped_column(BigInteger)


_CHECKPOINTS = cast(Table, LedgerCheckpointRow.__table__)
_COSIGNATURES = cast(Table, LedgerCosignatureRow.__table__)


@dataclass(frozen=True)
class StoredCosignature:
    """A cosignature as stored: which checkpoint size, the line, its stated timestamp."""

    size: int
    line: NoteSignature
    timestamp: int


class CheckpointStore:
    """Cosigned checkpoints in the project database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        note: SignedNote,
        cosignature: StoredCosignature,
        *,
        session: Session,
    ) -> bool:
        """Keep ``note`` (the ledger's signed checkpoint, without cosignatures) and one
        cosignature line on it, in ``session``'s transaction. True when the line is
        new; a witness's later line on the same checkpoint replaces its earlier one.

        Raises:
            CheckpointError: the note's body is not a checkpoint, or another body of
                the same size is stored (the caller checks the body is this log's).
        """
        size = Checkpoint.from_text(note.text).size
        if size != cosignature.size:
            raise CheckpointError("the cosignature is for another tree size than the note")
        connection = session.connection()
        stored = connection.execute(
            select(_CHECKPOINTS.c.note).where(_CHECKPOINTS.c.size == size)
        ).scalar_one_or_none()
        if stored is None:
            connection.execute(
                _CHECKPOINTS.insert().values(
                    size=size, note=note.to_text(), stored_at=format_rfc3339(utcnow())
                )
            )
        elif SignedNote.from_text(stored).text != note.text:
            raise CheckpointError(f"another checkpoint body of size {size} is stored")
        line = cosignature.line
        key = (
            (_COSIGNATURES.c.size == size)
            & (_COSIGNATURES.c.name == line.name)
            & (_COSIGNATURES.c.key_id == line.key_id)
        )
        old = connection.execute(select(_COSIGNATURES.c.timestamp).where(key)).scalar_one_or_none()
        if old is None:
            connection.execute(
                _COSIGNATURES.insert().values(
                    size=size,
                    name=line.name,
                    key_id=line.key_id,
                    signature=line.signature,
                    timestamp=cosignature.timestamp,
                )
            )
            return True
        if cosignature.timestamp > old:
            connection.execute(
                _COSIGNATURES.update()
                .where(key)
                .values(signature=line.signature, timestamp=cosignature.timestamp)
            )
        return False

    def cosignatures(self, size: int) -> list[NoteSignature]:
        """The cosignature lines kept for the checkpoint of ``size`` (by name, key id)."""
        with self._db.read() as s:
            rows = s.connection().execute(
                select(_COSIGNATURES.c.name, _COSIGNATURES.c.key_id, _COSIGNATURES.c.signature)
                .where(_COSIGNATURES.c.size == size)
                .order_by(_COSIGNATURES.c.name, _COSIGNATURES.c.key_id)
            )
            return [NoteSignature(str(n), bytes(k), bytes(sig)) for n, k, sig in rows]

    def served(self, note: SignedNote) -> SignedNote:
        """``note`` (a checkpoint the ledger signed) with the cosignature lines kept for
        it: its own lines byte for byte, then the witnesses' (none when the stored
        checkpoint of that size has another body)."""
        size = Checkpoint.from_text(note.text).size
        with self._db.read() as s:
            stored = (
                s.connection()
                .execute(select(_CHECKPOINTS.c.note).where(_CHECKPOINTS.c.size == size))
                .scalar_one_or_none()
            )
        if stored is None or SignedNote.from_text(stored).text != note.text:
            return note
        return with_cosignatures(note, self.cosignatures(size))

    def page(self, after: int, limit: int) -> tuple[list[SignedNote], bool]:
        """Stored checkpoints of size above ``after``, ascending, at most ``limit``, each
        with its cosignature lines; and whether more follow."""
        with self._db.read() as s:
            connection = s.connection()
            rows = connection.execute(
                select(_CHECKPOINTS.c.size, _CHECKPOINTS.c.note)
                .where(_CHECKPOINTS.c.size > after)
                .order_by(_CHECKPOINTS.c.size)
                .limit(limit + 1)
            ).all()
            more = len(rows) > limit
            rows = rows[:limit]
            sizes = [int(r[0]) for r in rows]
            lines: dict[int, list[NoteSignature]] = {size: [] for size in sizes}
            if sizes:
                for size, name, key_id, sig in connection.execute(
                    select(
                        _COSIGNATURES.c.size,
                        _COSIGNATURES.c.name,
                        _COSIGNATURES.c.key_id,
                        _COSIGNATURES.c.signature,
                    )
                    .where(_COSIGNATURES.c.size.in_(sizes))
                    .order_by(_COSIGNATURES.c.size, _COSIGNATURES.c.name, _COSIGNATURES.c.key_id)
                ):
                    lines[int(size)].append(NoteSignature(str(name), bytes(key_id), bytes(sig)))
        notes = [
            with_cosignatures(SignedNote.from_text(str(note)), lines[int(size)])
            for size, note in rows
        ]
        return notes, more

    def latest(self) -> SignedNote | None:
        """The largest stored checkpoint with its cosignature lines; None before any."""
        with self._db.read() as s:
            size = (
                s.connection()
                .execute(select(_CHECKPOINTS.c.size).order_by(_CHECKPOINTS.c.size.desc()).limit(1))
                .scalar_one_or_none()
            )
        if size is None:
            return None
        notes, _ = self.page(int(size) - 1, 1)
        return notes[0] if notes else None

    def newest_cosigned(self, quorum: int = 1, names: Collection[str] = ()) -> SignedNote | None:
        """The largest stored checkpoint with cosignature lines of at least ``quorum``
        distinct witness names (of ``names`` when given, else of any), with all its
        lines; None when no stored checkpoint has that many.

        The names are counted as stored (each line was verified when posted); whoever
        trusts the answer verifies every line under the keys it holds.
        """
        wanted = max(quorum, 1)
        query = select(_COSIGNATURES.c.size)
        if names:
            query = query.where(_COSIGNATURES.c.name.in_(list(names)))
        with self._db.read() as s:
            size = (
                s.connection()
                .execute(
                    query.group_by(_COSIGNATURES.c.size)
                    .having(func.count(func.distinct(_COSIGNATURES.c.name)) >= wanted)
                    .order_by(_COSIGNATURES.c.size.desc())
                    .limit(1)
                )
                .scalar_one_or_none()
            )
        if size is None:
            return None
        notes, _ = self.page(int(size) - 1, 1)
        return notes[0] if notes else None
