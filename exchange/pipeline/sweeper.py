"""The pipeline's clock: ends collection at deadlines and fails jobs that passed theirs.

One process per data dir runs it: the one holding an exclusive lock on
``<data dir>/pipeline-sweeper.lock`` (with ``ibx serve --workers N`` the first
worker to start; another takes over only if that process exits). At start it
fails the jobs a previous process left ``computing`` and starts those left
``authorized``; then every :data:`PERIOD` seconds it runs
:meth:`~exchange.pipeline.service.Pipeline.sweep` off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import IO, TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from exchange.data_dir_lock import try_lock

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = ["PERIOD", "PipelineSweeper"]

logger = logging.getLogger(__name__)

PERIOD = 0.5
"""Seconds between sweeps."""


class PipelineSweeper:
    """The running sweeper of this process (see the module docstring)."""

    def __init__(self, runtime: Runtime, lock: IO[bytes]) -> None:
        self._runtime = runtime
        self._lock = lock
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, runtime: Runtime) -> PipelineSweeper | None:
        """Start sweeping on the running loop if this process takes the lock, else None."""
        handle = try_lock(runtime.data_dir / "pipeline-sweeper.lock", "pipeline sweeper")
        if handle is None:
            return None
        sweeper = cls(runtime, handle)
        sweeper._task = asyncio.get_running_loop().create_task(sweeper._run())
        return sweeper

    async def _run(self) -> None:
        pipeline = self._runtime.pipeline
        try:
            await run_in_threadpool(pipeline.recover)
        except Exception:
            logger.exception("pipeline recovery failed")
        while True:
            await asyncio.sleep(PERIOD)
            try:
                await run_in_threadpool(pipeline.sweep)
            except Exception:
                logger.exception("pipeline sweep failed")

    async def stop(self) -> None:
        """Stop sweeping and release the lock."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._lock.close()
