"""When each enterprise's data agent last asked for its tasks (``GET /v1/agent/tasks``).

An index row per enterprise, kept for the enterprise's own pages (``GET
/v1/agent/contact``, the console): a convenience, **not a signed fact** and
not on the ledger — what an agent did is (its signed contributions and
refusals). The time is the exchange's clock when a poll arrived; each process
writes at most once every :data:`TOUCH_INTERVAL` per enterprise, so a busy
agent costs no write per request and the time shown may be that much old.
A failure to write is logged and never fails the agent's poll.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import String
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import format_rfc3339, parse_rfc3339
from core.db import Base, Database

__all__ = ["TOUCH_INTERVAL", "AgentContact", "AgentContacts"]

logger = logging.getLogger(__name__)

TOUCH_INTERVAL: Final = timedelta(seconds=5)
"""How stale the recorded time may be (per process): polls closer together write once."""


class _ContactRow(Base):
    __tablename__ = "exchange_agent_contacts"

    enterprise: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_contact_at: Mapped[str] = mapped_column(String(40))
    first_contact_at: Mapped[str] = mapped_column(String(40))


@dataclass(frozen=True)
class AgentContact:
    """An enterprise's agent's first and latest poll seen by this exchange."""

    enterprise: str
    first_contact_at: datetime
    last_contact_at: datetime


class AgentContacts:
    """The ``exchange_agent_contacts`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._written: dict[str, datetime] = {}

    def touch(self, enterprise: str, *, now: datetime) -> None:
        """Note that ``enterprise``'s agent polled at ``now`` (throttled; never raises)."""
        with self._lock:
            last = self._written.get(enterprise)
            if last is not None and now - last < TOUCH_INTERVAL:
                return
            self._written[enterprise] = now
        stamp = format_rfc3339(now)
        try:
            with self._db.write() as session:
                row = session.get(_ContactRow, enterprise)
                if row is None:
                    session.add(
                        _ContactRow(
                            enterprise=enterprise, last_contact_at=stamp, first_contact_at=stamp
                        )
                    )
                elif row.last_contact_at < stamp:
                    row.last_contact_at = stamp
        except SQLAlchemyError as exc:  # an index row: the poll goes on without it
            logger.warning(
                "could not note the agent contact of %s: %s", enterprise, type(exc).__name__
            )
            with self._lock:
                self._written.pop(enterprise, None)

    def last(self, enterprise: str) -> AgentContact | None:
        """``enterprise``'s agent's contacts, or None if it never polled."""
        with self._db.read() as session:
            row = session.get(_ContactRow, enterprise)
            if row is None:
                return None
            return AgentContact(
                enterprise, parse_rfc3339(row.first_contact_at), parse_rfc3339(row.last_contact_at)
            )
