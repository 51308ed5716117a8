"""Private set intersection between two enterprises (ECDH-PSI on the Ed25519 group).

Each side blinds its hashed items with its own secret scalar and sends them
(sorted, so their order says nothing) through the relay; each side blinds the
other's points a second time and sends them back; equal doubly-blinded points
are common items. The relay sees only blinded points.

* :attr:`PsiMode.CARDINALITY` — the doubly-blinded points of the other side's
  set come back sorted, so each side learns only the size of the overlap.
* :attr:`PsiMode.INTERSECTION` — used only when both consents allow it: they
  come back in the order sent, so each side also learns which of its own items
  are common.

Items are compared as UTF-8 bytes after stripping surrounding whitespace;
normalise names (e.g. unified social credit codes, 统一社会信用代码) before.

**More than two parties** (the pipeline's ring): each of n parties posts its
:meth:`PsiParty.blinded` set; in each of the rounds 2..n every party
re-blinds (:meth:`~PsiParty.reblind`) the set its predecessor on the ring posted in the
round before. After round n each set has been blinded once by every party's
key, and :func:`common_size` counts the points common to all of them (the
relay that counts learns the sizes of overlaps, never an item). A party that
must survive a restart between rounds keeps its key
(:meth:`PsiParty.export_key`, a secret) and comes back with
:meth:`PsiParty.restore`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mpc.errors import PsiError
from mpc.hazmat import ecgroup

__all__ = ["BlindedSet", "PsiMode", "PsiOutcome", "PsiParty", "common_size"]

logger = logging.getLogger(__name__)

MAX_ITEMS = 1_000_000


class PsiMode(enum.Enum):
    """What each side learns."""

    CARDINALITY = "cardinality"
    INTERSECTION = "intersection"


@dataclass(frozen=True)
class BlindedSet:
    """Points as they cross the relay, with the session they belong to."""

    session: str
    points: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.points) > MAX_ITEMS:
            raise PsiError(f"more than {MAX_ITEMS} points")

    @classmethod
    def checked(cls, session: str, points: Iterable[bytes]) -> BlindedSet:
        """Points received from another party: each a canonical group element, none twice.

        Raises:
            PsiError: more than the limit, a duplicate, or a point outside the group.
        """
        received = tuple(points)
        if len(set(received)) != len(received):
            raise PsiError("a set holds duplicate points")
        if any(not ecgroup.is_valid_point(p) for p in received):
            raise PsiError("a set holds a point outside the group")
        return cls(session, received)


@dataclass(frozen=True)
class PsiOutcome:
    """The overlap size, and the common items of this side when the mode allows it."""

    size: int
    items: tuple[str, ...] | None = None


class PsiParty:
    """One enterprise's side of a PSI session."""

    def __init__(
        self, session: str, items: Iterable[str], mode: PsiMode, *, _key: bytes | None = None
    ) -> None:
        """Hash this side's items into the group and draw its secret scalar.

        Raises:
            PsiError: no items, or more than the limit.
        """
        unique = sorted({item.strip() for item in items if item.strip()})
        if not unique or len(unique) > MAX_ITEMS:
            raise PsiError(f"a PSI set needs 1 to {MAX_ITEMS} non-empty items")
        self.session = session
        self.mode = mode
        self._items = unique
        self._scalar = ecgroup.random_scalar() if _key is None else _key
        self._mine = [
            ecgroup.blind(self._scalar, ecgroup.hash_to_group(i.encode())) for i in unique
        ]
        self._order = sorted(range(len(unique)), key=lambda k: self._mine[k])
        self._their_doubled: frozenset[bytes] | None = None

    @classmethod
    def restore(cls, session: str, items: Iterable[str], mode: PsiMode, key: bytes) -> PsiParty:
        """This side again, after a restart, with the key :meth:`export_key` gave.

        The same items and key give the same blinded set, so a round answered
        before the restart is answered identically after it.

        Raises:
            PsiError: no items, more than the limit, or ``key`` is not a canonical
                non-zero scalar.
        """
        if not ecgroup.is_valid_scalar(bytes(key)):
            raise PsiError("not a PSI key (a canonical non-zero Ed25519 scalar)")
        return cls(session, items, mode, _key=bytes(key))

    def export_key(self) -> bytes:
        """This side's secret scalar (32 bytes): keep it like a private key, never send it."""
        return self._scalar

    def __repr__(self) -> str:
        return f"PsiParty(session={self.session!r}, items={len(self._items)}, scalar=<redacted>)"

    def blinded(self) -> BlindedSet:
        """This side's items blinded once, sorted (what goes to the other side)."""
        return BlindedSet(self.session, tuple(self._mine[k] for k in self._order))

    def reblind(self, theirs: BlindedSet) -> BlindedSet:
        """Blind the other side's points with this side's scalar and send them back.

        Raises:
            PsiError: another session, duplicate points, or a point that is not in the group.
        """
        points = self._check(theirs)
        doubled = [ecgroup.blind(self._scalar, p) for p in points]
        self._their_doubled = frozenset(doubled)
        if self.mode is PsiMode.CARDINALITY:
            doubled.sort()
        return BlindedSet(self.session, tuple(doubled))

    def finish(self, mine_reblinded: BlindedSet) -> PsiOutcome:
        """Compare this side's doubly-blinded points with the other side's.

        ``mine_reblinded`` is the other side's :meth:`reblind` of this side's
        :meth:`blinded`; this side must have reblinded the other's set first.

        Raises:
            PsiError: called before :meth:`reblind`, another session, malformed
                points, or a reblinded set of the wrong size.
        """
        their_doubled = self._their_doubled
        if their_doubled is None:
            raise PsiError("reblind the other side's set before finishing")
        doubled_mine = mine_reblinded.points
        if mine_reblinded.session != self.session or len(doubled_mine) != len(self._items):
            raise PsiError("the reblinded set does not match this side's set")
        if any(not ecgroup.is_valid_point(p) for p in doubled_mine):
            raise PsiError("the reblinded set holds a point outside the group")
        if self.mode is PsiMode.CARDINALITY:
            size = sum(1 for p in doubled_mine if p in their_doubled)
            logger.info("PSI %s: overlap size computed", self.session)
            return PsiOutcome(size)
        common = tuple(
            sorted(
                self._items[k]
                for k, p in zip(self._order, doubled_mine, strict=True)
                if p in their_doubled
            )
        )
        return PsiOutcome(len(common), common)

    def _check(self, theirs: BlindedSet) -> Sequence[bytes]:
        if theirs.session != self.session:
            raise PsiError(f"points of session {theirs.session!r}, not {self.session!r}")
        if len(set(theirs.points)) != len(theirs.points):
            raise PsiError("the other side sent duplicate points")
        if any(not ecgroup.is_valid_point(p) for p in theirs.points):
            raise PsiError("the other side sent a point outside the group")
        return theirs.points


def common_size(sets: Sequence[BlindedSet]) -> int:
    """How many points every one of ``sets`` holds (sets each blinded by all the parties' keys).

    Raises:
        PsiError: fewer than two sets, sets of different sessions, a set with
            duplicate points or a point outside the group.
    """
    if len(sets) < 2:
        raise PsiError("an intersection needs at least two sets")
    session = sets[0].session
    common: set[bytes] | None = None
    for blinded in sets:
        if blinded.session != session:
            raise PsiError(f"points of session {blinded.session!r}, not {session!r}")
        points = set(BlindedSet.checked(session, blinded.points).points)
        common = points if common is None else common & points
    assert common is not None
    return len(common)
