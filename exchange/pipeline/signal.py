"""Wake long-polling agents as soon as a task may exist (a job opened, a round advanced).

:meth:`TaskSignal.notify` may be called from any thread (the pipeline's
writes run in worker threads); :meth:`TaskSignal.wait` is awaited on an event
loop. A waiter passes the generation it read before looking for tasks, so a
notification between its look and its wait is never lost. Other worker
processes are not notified: the long poll also looks again every short
interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

__all__ = ["TaskSignal"]

logger = logging.getLogger(__name__)


class TaskSignal:
    """A generation counter with waiters on event loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def generation(self) -> int:
        """Bumped by every :meth:`notify`."""
        return self._generation

    def notify(self) -> None:
        """Wake every waiter (thread-safe)."""
        with self._lock:
            self._generation += 1
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_wake, future)

    async def wait(self, timeout: float, *, since: int) -> None:
        """Return after a :meth:`notify` later than generation ``since``, or ``timeout`` s."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._generation != since:
                return
            entry = (loop, future)
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
