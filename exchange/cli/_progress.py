"""Progress of long work (MPC runs, PSI, ``ledger verify``, the demo), on a terminal only.

What a command prints on standard output is its result and never changes:
progress goes to standard error, and only when standard error is a terminal.
In a pipe, a file, a cron job or a test nothing extra is written, so scripts
and the CLI's output tests see exactly what they saw before.

Rich (which Typer already brings) is imported only when there is a terminal
to draw on, so a command run from a script pays nothing for it.

    progress = Progress.for_stderr()
    progress.step("dealing shares to 3 parties")
    with progress.working("3 parties computing over TLS"):
        result = runner.run(...)
    with progress.counting("verifying entries", total=size) as advance:
        log.verify(progress=advance)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Advance", "Progress"]

logger = logging.getLogger(__name__)

Advance = Callable[[int, int], None]
"""``advance(done, total)``: how far a counted piece of work has got."""


def _ignore(done: int, total: int) -> None:
    del done, total


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or foreign stream
        return False


class Progress:
    """Announces steps and draws spinners and bars on a terminal; silent otherwise.

    Build it with :meth:`for_stderr` (a terminal check) or, to render
    somewhere else, :meth:`on` with a Rich console (tests pass one with
    ``force_terminal=True`` writing to a ``StringIO``).
    """

    def __init__(self, console: Console | None, *, shares_stdout: bool = False) -> None:
        """``console`` to draw on, or ``None`` for a progress that prints nothing.

        ``shares_stdout``: standard output is the same terminal, so what the
        work prints meanwhile is drawn above the spinner or bar; otherwise it
        goes where standard output goes, untouched.
        """
        self._console = console
        self._shares_stdout = shares_stdout

    @classmethod
    def silent(cls) -> Progress:
        """A progress that prints nothing (what a pipe or a file gets)."""
        return cls(None)

    @classmethod
    def on(cls, console: Console) -> Progress:
        """Draw on ``console`` whatever it is connected to."""
        return cls(console)

    @classmethod
    def for_stderr(cls, stream: TextIO | None = None) -> Progress:
        """Draw on standard error when it is a terminal; otherwise print nothing.

        ``stream`` defaults to ``sys.stderr`` (read when called, so that a test
        harness that swaps it is honoured).
        """
        target = sys.stderr if stream is None else stream
        if not _is_terminal(target):
            return cls.silent()
        from rich.console import Console

        return cls(Console(file=target), shares_stdout=_is_terminal(sys.stdout))

    @property
    def enabled(self) -> bool:
        """True when something is drawn."""
        return self._console is not None

    def step(self, text: str) -> None:
        """Announce one step of the work (a line such as ``▸ dealing shares``)."""
        if self._console is not None:
            self._console.print(f"[bold cyan]▸[/] {text}", highlight=False)

    @contextmanager
    def working(self, text: str) -> Iterator[None]:
        """A spinner with elapsed time while work of unknown length runs."""
        if self._console is None:
            yield
            return
        from rich.progress import Progress as Bars
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        with Bars(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self._console,
            redirect_stdout=self._shares_stdout,
            transient=False,
        ) as bars:
            task = bars.add_task(text, total=None)
            yield
            bars.update(task, total=1, completed=1)

    @contextmanager
    def counting(self, text: str, total: int) -> Iterator[Advance]:
        """A bar for work of known size; yields ``advance(done, total)`` to report with."""
        if self._console is None:
            yield _ignore
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        with Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self._console,
            redirect_stdout=self._shares_stdout,
        ) as bars:
            task = bars.add_task(text, total=max(total, 0))

            def advance(done: int, of: int) -> None:
                bars.update(task, completed=done, total=of)

            yield advance
