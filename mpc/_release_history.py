"""What the guard remembers between releases, stored in the caller's transaction.

Per requester group (the adversary) and field: the reduced form of every
weight vector released (:class:`~mpc._disclosure.LinearTracker`); per group:
the noisy answers already given (keyed by the question's fingerprint) and
the epsilon spent per dataset. Every read and write happens in the session
the guard's approval is written in, so a release, its reduced form and its
answer commit together or not at all.

The form is stored as a snapshot plus a log of the rank-adding releases
since (:data:`SNAPSHOT_EVERY`), so an approval writes a short row, not the
whole form. A tracker read back is cached in this process under its row's
``stamp``, a
random value each write replaces: the cache is used only while the stamp is
still the stored one, so a write by another replica, or a rolled-back write
of this one, is never mistaken for the current form. Rows are read with
``FOR UPDATE`` (PostgreSQL); SQLite's write transactions are serial already.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.canonical import canonical_bytes
from core.clock import format_rfc3339, utcnow
from mpc._disclosure import LinearTracker
from mpc._tables import GroupSpendRow, ReleasedAnswerRow, TrackerLogRow, TrackerRow

__all__ = ["ReleaseHistory", "TrackerSlot"]

logger = logging.getLogger(__name__)


SNAPSHOT_EVERY = 32
"""Rank-adding releases between two stored snapshots of a reduced form."""


def _key(*parts: str) -> str:
    return hashlib.sha256(canonical_bytes(list(parts))).hexdigest()


def _weights_to_json(weights: Mapping[str, Fraction]) -> str:
    return json.dumps([[name, f"{w.numerator}/{w.denominator}"] for name, w in weights.items()])


def _weights_from_json(text: str) -> dict[str, Fraction]:
    return {str(name): Fraction(str(w)) for name, w in json.loads(text)}


@dataclass(frozen=True)
class TrackerSlot:
    """One group's tracker for one (dataset, field), as read in a transaction."""

    key: str
    adversary: str
    dataset: str
    field: str
    tracker: LinearTracker
    releases: int


class ReleaseHistory:
    """Reads and writes the guard's memory inside a caller's session."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, LinearTracker]] = {}

    def tracker(self, session: Session, adversary: str, dataset: str, field: str) -> TrackerSlot:
        """The stored reduced form for ``(adversary, dataset, field)`` (empty if none yet).

        Raises:
            ValueError: a stored form that does not decode (the row is corrupt).
        """
        key = _key(adversary, dataset, field)
        stamp = session.execute(
            select(TrackerRow.stamp).where(TrackerRow.tracker_key == key).with_for_update()
        ).scalar_one_or_none()
        if stamp is None:
            return TrackerSlot(key, adversary, dataset, field, LinearTracker.empty(), 0)
        cached = self._cache.get(key)
        row = session.get(TrackerRow, key)
        assert row is not None  # the stamp was just read in this transaction
        if cached is not None and cached[0] == stamp:
            return TrackerSlot(key, adversary, dataset, field, cached[1], row.releases)
        tracker = LinearTracker.from_parts(
            row.prime, json.loads(row.columns_json), json.loads(row.pivots_json), row.matrix
        )
        logged = session.execute(
            select(TrackerLogRow.weights_json)
            .where(TrackerLogRow.tracker_key == key, TrackerLogRow.position >= tracker.rank)
            .order_by(TrackerLogRow.position)
        ).scalars()
        for weights in logged:
            tracker = tracker.with_row(_weights_from_json(weights))
        self._cache[key] = (stamp, tracker)
        return TrackerSlot(key, adversary, dataset, field, tracker, row.releases)

    def store_tracker(
        self,
        session: Session,
        slot: TrackerSlot,
        tracker: LinearTracker,
        weights: Mapping[str, Fraction],
    ) -> None:
        """Record ``tracker`` (``slot``'s form plus ``weights``) as the new form.

        A release that adds no rank changes nothing stored but the count. One
        that does is appended to the form's log; every :data:`SNAPSHOT_EVERY`
        logged rows the whole form is written as a snapshot and the log
        before it dropped, so each approval writes about a kilobyte and a
        cold read replays fewer than :data:`SNAPSHOT_EVERY` rows.
        """
        stamp = secrets.token_hex(16)
        row = session.get(TrackerRow, slot.key)
        if row is None:
            row = TrackerRow(
                tracker_key=slot.key,
                adversary=slot.adversary,
                dataset=slot.dataset,
                field=slot.field,
                prime=tracker.prime,
                columns_json="[]",
                pivots_json="[]",
                matrix=b"",
            )
            session.add(row)
            snapshot_rank = 0
        else:
            snapshot_rank = len(json.loads(row.pivots_json))
        if tracker.rank > slot.tracker.rank:
            session.add(
                TrackerLogRow(
                    tracker_key=slot.key,
                    position=slot.tracker.rank,
                    weights_json=_weights_to_json(weights),
                )
            )
            if tracker.rank - snapshot_rank >= SNAPSHOT_EVERY:
                row.columns_json = json.dumps(list(tracker.columns))
                row.pivots_json = json.dumps(list(tracker.pivots))
                row.matrix = tracker.to_bytes()
                session.flush()
                session.execute(
                    delete(TrackerLogRow).where(
                        TrackerLogRow.tracker_key == slot.key,
                        TrackerLogRow.position < tracker.rank,
                    )
                )
        row.releases = slot.releases + 1
        row.stamp = stamp
        row.updated_at = format_rfc3339(utcnow())
        self._cache[slot.key] = (stamp, tracker)

    @staticmethod
    def answer_key(adversary: str, fingerprint: str, terms: str) -> str:
        """The key a noisy answer is kept under: group, question and noise terms."""
        return _key(adversary, fingerprint, terms)

    @staticmethod
    def answer(session: Session, key: str) -> tuple[float, ...] | None:
        """The noisy answer already given under ``key``, if any."""
        row = session.get(ReleasedAnswerRow, key)
        if row is None:
            return None
        return tuple(float(v) for v in json.loads(row.values_json))

    @staticmethod
    def store_answer(
        session: Session, key: str, adversary: str, job_id: str, values: tuple[float, ...]
    ) -> None:
        """Keep a noisy answer so the same question gets it again."""
        session.add(
            ReleasedAnswerRow(
                answer_key=key,
                adversary=adversary,
                job_id=job_id,
                values_json=json.dumps(list(values)),
                released_at=format_rfc3339(utcnow()),
            )
        )

    @staticmethod
    def group_spent(session: Session, adversary: str, dataset: str) -> float:
        """Epsilon the group has spent on ``dataset``."""
        row = session.get(GroupSpendRow, _key(adversary, dataset))
        return 0.0 if row is None else row.spent

    @staticmethod
    def charge_group(session: Session, adversary: str, dataset: str, epsilon: float) -> None:
        """Add ``epsilon`` to the group's spend on ``dataset``."""
        key = _key(adversary, dataset)
        row = session.get(GroupSpendRow, key)
        if row is None:
            session.add(
                GroupSpendRow(budget_key=key, adversary=adversary, dataset=dataset, spent=epsilon)
            )
        else:
            row.spent += epsilon
