"""Which enterprises take part, still pending, in a collecting job: one look shared by every
long poll.

A long poll that wakes (a job opened or an answer arrived in this process, or
:data:`exchange.routes.agent.POLL_INTERVAL` passed, for other workers'
changes) asks :meth:`PendingIndex.pending` before it lists an enterprise's
tasks: an enterprise with no pending participation in a collecting job has
none, whatever the job. The set is read with one query and reused until the
in-process signal moves or it is ``max_age`` seconds old, so a hundred idle
agents cost one query a wake-up, not a hundred. It only saves looks: an
enterprise in the set has its tasks listed by the full query, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import select

from core.db import Database
from exchange.pipeline.jobs import JobState
from exchange.pipeline.tables import JobRow, ParticipantRow

__all__ = ["PendingIndex"]


class PendingIndex:
    """A shared, briefly kept snapshot of the enterprises pending in collecting jobs."""

    def __init__(self, db: Database, generation: Callable[[], int], max_age: float) -> None:
        self._db = db
        self._generation = generation
        self._max_age = max_age
        self._lock = threading.Lock()
        self._taken: tuple[int, float, frozenset[str]] | None = None

    def _fresh(self, now: float) -> frozenset[str] | None:
        taken = self._taken
        if taken is None:
            return None
        generation, at, names = taken
        if generation != self._generation() or now - at > self._max_age:
            return None
        return names

    def pending(self) -> frozenset[str]:
        """The enterprises with a pending participation in a collecting job."""
        names = self._fresh(time.monotonic())
        if names is not None:
            return names
        with self._lock:  # one look for all the polls that woke together
            names = self._fresh(time.monotonic())
            if names is not None:
                return names
            generation, at = self._generation(), time.monotonic()  # before the look
            with self._db.read() as session:
                names = frozenset(
                    session.execute(
                        select(ParticipantRow.enterprise)
                        .join(JobRow, JobRow.job_id == ParticipantRow.job_id)
                        .where(
                            ParticipantRow.state == "pending",
                            JobRow.state == JobState.COLLECTING.value,
                        )
                        .distinct()
                    ).scalars()
                )
            self._taken = (generation, at, names)
            return names
