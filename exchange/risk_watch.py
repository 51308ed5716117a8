"""The risk watch: ``ibx serve`` runs the risk rules over the ledger as it grows.

The rules (:class:`audit.RiskRules`) come from the security officer's file:
``IBX_RISK_RULES`` (a path), else ``<data dir>/risk.toml`` if present, else the
shipped defaults. A file that group or others may write, or that does not
parse, stops the server at start with one line (:func:`load_rules`).

One process per data dir evaluates: the one holding an exclusive lock on
``<data dir>/risk-watch.lock`` (with ``ibx serve --workers N`` the first to
take it; the others try again every :data:`LOCK_RETRY` seconds, so one takes
over when the holder exits). The evaluator

* records the rules in force (``audit.risk_rules``: the file's SHA-256 and the
  thresholds) unless the newest such entry already says the same;
* follows the ledger from a persisted cursor (table ``audit_risk_cursor``):
  each pass reads the entries after it, feeds them to :class:`audit.RiskEngine`
  and records the alerts it raises (actor ``ibx-risk``) and the new cursor in
  one transaction, the cursor moved only if no one else moved it — an alert is
  recorded once, even across restarts and replicas;
* after a restart, replays the entries one window back from the cursor without
  raising anything, so windows and quiet periods continue where they were.

At start the evaluator catches up before the server takes requests (the
alerts about history are recorded before the first request is answered), then
runs a pass every :data:`PERIOD` seconds off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from audit import RiskEngine, RiskRules, RiskRulesError
from core.alerts import Alert
from core.clock import format_rfc3339, utcnow
from core.errors import ConfigurationError
from core.events import Event
from exchange.data_dir_lock import try_lock
from exchange.entries import RiskRulesEntry

if TYPE_CHECKING:
    from exchange.runtime import Runtime
    from exchange.settings import Settings

__all__ = [
    "LOCK_RETRY",
    "PERIOD",
    "RISK_ACTOR",
    "RULES_SUBJECT",
    "LoadedRules",
    "RiskWatch",
    "load_rules",
]

logger = logging.getLogger(__name__)

RISK_ACTOR = "ibx-risk"
"""The actor of the alerts and rule records the watch writes."""
RULES_SUBJECT = "audit:risk_rules"
"""Every ``audit.risk_rules`` entry is indexed under this subject."""
PERIOD = 1.0
"""Seconds between passes."""
LOCK_RETRY = 5.0
"""Seconds between a non-evaluating process's tries to take the lock."""
PAGE = 1000
"""Entries one pass reads at most (the ledger's largest read)."""
STARTUP_ENTRIES = 5_000
"""Entries the evaluator catches up on before the server starts answering; the rest
follow in the background."""
RULES_FILE = "risk.toml"
"""The rules file's name in the data dir."""

_CURSOR = sa.Table(
    "audit_risk_cursor",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("next_index", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=True),
)


@dataclass(frozen=True)
class LoadedRules:
    """The rules in force and where they came from."""

    rules: RiskRules
    sha256: str
    """Hex SHA-256 of the file's bytes."""
    source: Literal["file", "defaults"]
    path: Path | None = None

    def entry(self) -> RiskRulesEntry:
        """The ``audit.risk_rules`` entry that records them."""
        return RiskRulesEntry.model_validate(
            {"sha256": self.sha256, "source": self.source, **self.rules.to_dict()}
        )


def load_rules(settings: Settings) -> LoadedRules:
    """The rules of ``settings`` (see the module docstring), checked.

    Raises:
        ConfigurationError: ``IBX_RISK_RULES`` names no readable file; the file is
            group- or world-writable, not a regular file, or does not parse (the
            message names the file and the key).
    """
    path = settings.risk_rules
    if path is None:
        default = settings.data_dir / RULES_FILE
        if not default.exists():
            from importlib import resources

            text = resources.files("audit").joinpath("risk_defaults.toml").read_bytes()
            return LoadedRules(RiskRules.defaults(), _sha256(text), "defaults")
        path = default
    path = path.expanduser()
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigurationError(
            f"risk rules {path}: cannot be read ({exc.strerror or exc}); set IBX_RISK_RULES "
            "to the security officer's rules file"
        ) from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"risk rules {path}: not a regular file")
    if os.name == "posix" and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigurationError(
            f"risk rules {path}: group or others may write it (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); only its owner may: chmod 600 {path}"
        )
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"risk rules {path}: cannot be read ({exc})") from exc
    try:
        rules = RiskRules.from_toml(text, source=f"risk rules {path}")
    except RiskRulesError as exc:
        raise ConfigurationError(" ".join(str(exc).split())) from exc
    return LoadedRules(rules, _sha256(text), "file", path)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _CursorMovedError(Exception):
    """Another evaluator moved the cursor since this pass read it."""


class RiskWatch:
    """Runs the risk rules over the ledger (see the module docstring).

    The synchronous methods (:meth:`record_rules`, :meth:`run_pass`,
    :meth:`catch_up`) are the whole of the work; :meth:`start` runs them on the
    server's event loop for the process that holds the lock.
    """

    def __init__(self, runtime: Runtime, loaded: LoadedRules) -> None:
        self._runtime = runtime
        self.loaded = loaded
        self._engine: RiskEngine | None = None
        self._engine_at = -1
        """The cursor the engine's state corresponds to (-1: none)."""
        self._handle: IO[bytes] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the work -------------------------------------------------------------------------

    def record_rules(self) -> bool:
        """Record the rules in force unless the newest ``audit.risk_rules`` entry says the
        same; True when recorded.

        Raises:
            ledger.LedgerError: the entry could not be recorded.
        """
        runtime = self._runtime
        ledger = runtime.ledger
        entry = self.loaded.entry()
        payload = entry.payload()
        hits = ledger.find([RULES_SUBJECT], [RiskRulesEntry.TYPE])
        if hits and ledger.entry(hits[-1].index).payload == payload:
            return False
        event = Event(entry.TYPE, RISK_ACTOR, payload, subjects=(RULES_SUBJECT,))
        with runtime.db.write() as session:
            ledger.record(event, session=session)
        logger.info(
            "risk rules in force: %s (sha256 %s)",
            self.loaded.path or "the shipped defaults",
            self.loaded.sha256[:16],
        )
        return True

    def catch_up(self, *, limit: int | None = None) -> list[Alert]:
        """Run passes until the cursor reaches the ledger's head (or ``limit`` entries were
        read); return the alerts recorded.

        Raises:
            ledger.LedgerError: an entry could not be read or an alert recorded.
        """
        raised: list[Alert] = []
        read = 0
        while limit is None or read < limit:
            done = self.run_pass()
            if done is None:
                break
            count, alerts = done
            read += count
            raised.extend(alerts)
        return raised

    def run_pass(self) -> tuple[int, list[Alert]] | None:
        """Evaluate up to :data:`PAGE` entries after the cursor, record their alerts and
        move the cursor; None when the cursor is at the head. Returns how many entries
        were read and the alerts recorded.

        Raises:
            ledger.LedgerError: an entry could not be read or an alert recorded.
        """
        runtime = self._runtime
        cursor = self._cursor()
        if cursor >= runtime.ledger.size():
            return None
        engine = self._engine_for(cursor)
        entries = runtime.ledger.entries(cursor, PAGE)
        try:
            alerts = engine.evaluate(entries)
            after = entries[-1].index + 1
            events = [alert.event(RISK_ACTOR) for alert in alerts]
            stamp = format_rfc3339(utcnow())

            with runtime.db.write() as session:  # the alerts and the cursor, or neither
                if events:
                    runtime.ledger.record_batch(events, session=session)
                moved = session.connection().execute(
                    sa.update(_CURSOR)
                    .where(_CURSOR.c.id == 1, _CURSOR.c.next_index == cursor)
                    .values(next_index=after, updated_at=stamp)
                )
                if moved.rowcount != 1:
                    raise _CursorMovedError
        except _CursorMovedError:
            logger.info("the risk cursor moved under this evaluator; following it")
            self._engine, self._engine_at = None, -1
            return 0, []
        except BaseException:
            self._engine, self._engine_at = None, -1  # its state ran ahead of the cursor
            raise
        self._engine_at = after
        for alert in alerts:
            logger.warning("alert %s about %s: %s", alert.rule, alert.subject, alert.message)
        return len(entries), alerts

    def _cursor(self) -> int:
        with self._runtime.db.read() as session:
            found = session.execute(
                sa.select(_CURSOR.c.next_index).where(_CURSOR.c.id == 1)
            ).scalar_one_or_none()
        return int(found or 0)

    def _engine_for(self, cursor: int) -> RiskEngine:
        """The engine whose state is that of having evaluated everything before ``cursor``."""
        if self._engine is not None and self._engine_at == cursor:
            return self._engine
        from exchange.ledger_types import ENTRY_PARSERS

        engine = RiskEngine(self.loaded.rules, entry_types=ENTRY_PARSERS)
        ledger = self._runtime.ledger
        start = self._replay_start(cursor)
        while start < cursor:
            page = ledger.entries(start, min(PAGE, cursor - start))
            engine.replay(page)
            start = page[-1].index + 1
        self._engine, self._engine_at = engine, cursor
        return engine

    def _replay_start(self, cursor: int) -> int:
        """The first index within the longest window before ``cursor`` (times ascend)."""
        if cursor <= 0:
            return 0
        ledger = self._runtime.ledger
        since = ledger.entry(cursor - 1).time - self.loaded.rules.longest_window
        low, high = 0, cursor - 1
        while low < high:
            middle = (low + high) // 2
            if ledger.entry(middle).time <= since:
                low = middle + 1
            else:
                high = middle
        return low

    # -- on the server's loop -------------------------------------------------------------

    @classmethod
    async def start(cls, runtime: Runtime, loaded: LoadedRules) -> RiskWatch:
        """Start watching on the running loop: if this process takes the lock, record the
        rules and catch up (before returning), then pass every :data:`PERIOD` seconds;
        else try for the lock every :data:`LOCK_RETRY` seconds."""
        watch = cls(runtime, loaded)
        if watch._take_lock():
            await watch._begin()
        watch._task = asyncio.get_running_loop().create_task(watch._run())
        return watch

    def _take_lock(self) -> bool:
        if self._handle is not None:
            return True
        self._handle = try_lock(self._runtime.data_dir / "risk-watch.lock", "risk watch")
        return self._handle is not None

    async def _begin(self) -> None:
        try:
            await run_in_threadpool(self.record_rules)
            await run_in_threadpool(lambda: self.catch_up(limit=STARTUP_ENTRIES))
        except Exception:
            logger.exception("the risk watch could not catch up at start")

    async def _run(self) -> None:
        begun = self._handle is not None
        while True:
            if self._handle is None:
                await asyncio.sleep(LOCK_RETRY)
                if not self._take_lock():
                    continue
            if not begun:
                begun = True
                await self._begin()
            await asyncio.sleep(PERIOD)
            try:
                await run_in_threadpool(self.catch_up, limit=PAGE * 10)
            except Exception:
                logger.exception("a risk watch pass failed")

    @property
    def evaluating(self) -> bool:
        """Whether this process holds the lock (evaluates the rules)."""
        return self._handle is not None

    async def stop(self) -> None:
        """Stop watching and release the lock."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.release()

    def release(self) -> None:
        """Release the lock (another process may then evaluate)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
