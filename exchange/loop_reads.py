"""Where a request's short database reads run: on the event loop with SQLite, else in a thread.

FastAPI runs every plain ``def`` dependency and route in its thread pool (and a
plain route's response validation too). Each hop costs a thread switch, and
the threads contend with the event loop for the GIL: a thread holding it
delays every connection of the process by up to the interpreter's switch
interval (5 ms). The reads on the hot path of a request — a token, the active
policy version, an identity, a page of the catalog — are reads of a local
SQLite file's page cache, tens of microseconds each: cheaper than the hop.

So with SQLite, :func:`run_read` runs them on the event loop; with a database
across the network, whose round trip would stall the whole process, in the
thread pool. Writes never run on the loop: a write may wait for SQLite's write
lock (up to its busy timeout), so write routes and anything that records an
event stay in the thread pool. Several processes (``ibx serve --workers``)
give the parallelism threads could not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = ["reads_on_loop", "run_read"]

P = ParamSpec("P")
T = TypeVar("T")


def reads_on_loop(runtime: Runtime) -> bool:
    """Whether short reads of ``runtime``'s database run on the event loop (SQLite)."""
    return runtime.db.is_sqlite


async def run_read(
    runtime: Runtime, read: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """``read(*args, **kwargs)``, which must only read (a few short queries, some CPU):
    on the event loop with SQLite, in the thread pool with any other database."""
    if reads_on_loop(runtime):
        return read(*args, **kwargs)
    return await run_in_threadpool(read, *args, **kwargs)
