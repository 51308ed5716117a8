"""The shipper's progress per channel, log and mode (table ``ledger_fabric_outbox``).

The outbox itself is the entry table: entries are dense and append-only, so
what is not shipped yet is every entry from the channel's size on. This table
only says how far shipping got and why it last failed, for ``ibx status``;
the channel is the truth on restart (the shipper re-reads its head).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.clock import format_rfc3339
from core.db import Base, Database

__all__ = ["FabricOutbox", "LedgerFabricOutboxRow", "OutboxKey", "OutboxStatus"]

MAX_ERROR = 2000
"""The longest last error kept (characters)."""


class LedgerFabricOutboxRow(Base):
    """One (channel, chaincode, log, mode): how far shipping got."""

    __tablename__ = "ledger_fabric_outbox"

    channel: Mapped[str] = mapped_column(String(250), primary_key=True)
    chaincode: Mapped[str] = mapped_column(String(250), primary_key=True)
    log: Mapped[str] = mapped_column(String(200), primary_key=True)
    mode: Mapped[str] = mapped_column(String(10), primary_key=True)
    shipped_size: Mapped[int] = mapped_column(BigInteger)
    shipped_root: Mapped[bytes] = mapped_column(LargeBinary)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_attempt: Mapped[str | None] = mapped_column(String(40), nullable=True)
    failures: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True)
class OutboxKey:
    """Which shipping this is: the channel, the chaincode on it, the log and the mode."""

    channel: str
    chaincode: str
    log: str
    mode: str


@dataclass(frozen=True)
class OutboxStatus:
    """How far shipping got: the channel's size and root when last seen, and the last
    failure (``failures`` in a row; 0 and None once a pass succeeds)."""

    key: OutboxKey
    shipped_size: int
    shipped_root: bytes
    last_error: str | None
    last_attempt: str | None
    failures: int


class FabricOutbox:
    """The progress rows of the project database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def status(self, key: OutboxKey) -> OutboxStatus | None:
        """The row of ``key``, if shipping ever ran."""
        with self._db.read() as s:
            row = s.get(LedgerFabricOutboxRow, (key.channel, key.chaincode, key.log, key.mode))
            return None if row is None else _status(key, row)

    def statuses(self) -> list[OutboxStatus]:
        """Every row, in key order."""
        with self._db.read() as s:
            rows = s.execute(select(LedgerFabricOutboxRow)).scalars().all()
            found = [_status(OutboxKey(r.channel, r.chaincode, r.log, r.mode), r) for r in rows]
        return sorted(found, key=lambda st: (st.key.channel, st.key.chaincode, st.key.log))

    def shipped(self, key: OutboxKey, size: int, root: bytes, when: datetime) -> None:
        """Record that the channel holds ``size`` entries (or checkpoints up to it) with
        ``root``; clears the last error."""
        with self._db.write() as s:
            row = self._row(s, key)
            row.shipped_size, row.shipped_root = size, root
            row.last_error, row.failures = None, 0
            row.last_attempt = format_rfc3339(when)

    def failed(self, key: OutboxKey, error: str, when: datetime) -> None:
        """Record a failed pass (the progress stays)."""
        with self._db.write() as s:
            row = self._row(s, key)
            row.last_error = " ".join(error.split())[:MAX_ERROR]
            row.failures += 1
            row.last_attempt = format_rfc3339(when)

    @staticmethod
    def _row(session: Session, key: OutboxKey) -> LedgerFabricOutboxRow:
        row = session.get(
            LedgerFabricOutboxRow,
            (key.channel, key.chaincode, key.log, key.mode),
            with_for_update=True,
        )
        if row is None:
            row = LedgerFabricOutboxRow(
                channel=key.channel,
                chaincode=key.chaincode,
                log=key.log,
                mode=key.mode,
                shipped_size=0,
                shipped_root=b"",
                last_error=None,
                last_attempt=None,
                failures=0,
            )
            session.add(row)
        return row


def _status(key: OutboxKey, row: LedgerFabricOutboxRow) -> OutboxStatus:
    return OutboxStatus(
        key,
        row.shipped_size,
        row.shipped_root,
        row.last_error,
        row.last_attempt,
        row.failures,
    )
