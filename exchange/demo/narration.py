"""The demo's voice: numbered steps, one line per fact, and the ledger index of each.

The narrator is not an actor: it acts on nothing. To name the ledger entry
behind a fact ("consent signed, ledger #27") it reads the deployment's
ledger on the data dir, read-only (:class:`LedgerView`); the auditor, at the
end, checks every one of those entries on their own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from pathlib import Path

    from exchange.runtime import Runtime
    from ledger import LedgerEntry

__all__ = ["LedgerView", "Narrator"]


class Narrator:
    """Prints the story: ``== N. Title`` then the facts, each on its own line."""

    def __init__(self, out: TextIO | None = None) -> None:
        """Print to ``out`` (standard output by default)."""
        self._out = out or sys.stdout

    def step(self, number: int, title: str) -> None:
        """Start step ``number``."""
        print(f"\n== {number}. {title}", file=self._out, flush=True)

    def fact(self, text: str) -> None:
        """One fact of the step."""
        print(f"  {text}", file=self._out, flush=True)

    def detail(self, text: str) -> None:
        """A line under the last fact (a reason, a result's numbers, a tree)."""
        print(f"      {text}", file=self._out, flush=True)

    def say(self, text: str = "") -> None:
        """A line as it is (the closing lines)."""
        print(text, file=self._out, flush=True)


class LedgerView:
    """The narrator's read-only view of the deployment's ledger (on the data dir)."""

    def __init__(self, data_dir: Path) -> None:
        """Open lazily: the data dir holds a deployment only after ``ibx init``."""
        self._data_dir = data_dir
        self._runtime: Runtime | None = None

    def _opened(self) -> Runtime:
        if self._runtime is None:
            from exchange.runtime import Runtime
            from exchange.settings import Settings

            # the demo's environment, as the operator's: a PostgreSQL URL, a master key
            self._runtime = Runtime(Settings(data_dir=self._data_dir))
        return self._runtime

    def size(self) -> int:
        """Entries on the ledger now."""
        return self._opened().ledger.size()

    def since(self, start: int) -> Iterator[LedgerEntry]:
        """Every entry from index ``start`` on, in order."""
        log = self._opened().ledger
        size = log.size()
        while start < size:
            page = log.entries(start, 1000)
            yield from page
            start += len(page)

    def find(
        self,
        type_: str,
        *,
        since: int = 0,
        where: Callable[[LedgerEntry], bool] = lambda _e: True,
    ) -> list[LedgerEntry]:
        """The entries of ``type_`` from ``since`` on that ``where`` accepts."""
        return [e for e in self.since(since) if e.type == type_ and where(e)]

    def last(
        self,
        type_: str,
        *,
        since: int = 0,
        where: Callable[[LedgerEntry], bool] = lambda _e: True,
    ) -> LedgerEntry:
        """The last such entry.

        Raises:
            LookupError: there is none.
        """
        found = self.find(type_, since=since, where=where)
        if not found:
            raise LookupError(f"no {type_} entry on the ledger since #{since}")
        return found[-1]

    def close(self) -> None:
        """Release the database connection."""
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
