"""``ibx serve --workers N``: the API in N processes on one port.

One Python process runs one request's Python code at a time, so on a machine
with several cores one process leaves all but one idle. With ``--workers N``
the parent prepares everything once — the runtime, the API's TLS context
(its key stays in memory, as with one process), the application — binds one
listening socket per worker on the same port (``SO_REUSEPORT``: the kernel
spreads new connections over them), then forks the workers and only
supervises: a signal stops them all, and a worker that exits stops the rest
(the service manager restarts the whole).

The parent closes its database connections before forking, so no worker
inherits a connection that another process uses. Worker 0 also serves the
edge listener (``--edge-port``), whose upload quota is held in memory and so
must live in one process.

What each worker holds alone:

* the failed-authentication lockout (:mod:`exchange.auth_lockout`): a source
  that presents bad tokens is refused by each worker after the configured
  number of failures *at that worker*, so up to N times as many attempts are
  answered before every worker refuses it;
* the decision cache and the active policy version, which another worker's
  activation reaches within ``PolicyConfig.active_version_ttl``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

import uvicorn

__all__ = ["Listener", "PreBoundServer", "bind_listeners", "run_workers"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    """The listening sockets of one port: one per worker, or one shared by all."""

    sockets: tuple[socket.socket, ...]
    served_by: int | None = None
    """Only this worker accepts on it (None: every worker)."""

    def for_worker(self, index: int) -> socket.socket | None:
        """The socket worker ``index`` accepts on (None: it serves no one on this port)."""
        if self.served_by is not None:
            return self.sockets[0] if index == self.served_by else None
        return self.sockets[index % len(self.sockets)]

    def close(self, *, keep: socket.socket | None = None) -> None:
        """Close every socket but ``keep``."""
        for sock in self.sockets:
            if sock is not keep:
                sock.close()


def _bound(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family, kind, proto, _name, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def bind_listeners(host: str, port: int, count: int, *, served_by: int | None = None) -> Listener:
    """``count`` sockets listening on ``host:port`` (port 0: a free one, the same for all).

    With ``SO_REUSEPORT`` (Linux) each worker gets its own and the kernel balances
    connections across them; elsewhere they share one.

    Raises:
        OSError: the address cannot be bound (in use, not ours).
    """
    reuse_port = count > 1 and sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
    first = _bound(host, port, reuse_port=reuse_port)
    if not reuse_port:
        return Listener((first,), served_by)
    sockets = [first]
    try:
        chosen = first.getsockname()[1]
        sockets += [_bound(host, chosen, reuse_port=True) for _ in range(count - 1)]
    except OSError:
        Listener(tuple(sockets)).close()
        raise
    return Listener(tuple(sockets), served_by)


def run_workers(
    count: int,
    work: Callable[[int], None],
    *,
    listeners: Sequence[Listener],
    before_fork: Callable[[], None],
) -> int:
    """Fork ``count`` workers that each run ``work(index)``, and supervise them.

    ``before_fork`` runs once in the parent first (close database connections).
    Each worker keeps only its own sockets of ``listeners``; the parent closes
    them all once the workers run. SIGINT or SIGTERM to the parent stops every
    worker (each finishes its requests); a worker that exits on its own stops
    the others too. Returns the parent's exit status: 0 when stopped by a
    signal, 1 when a worker exited first.
    """
    before_fork()
    children: dict[int, int] = {}
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                for listener in listeners:
                    listener.close(keep=listener.for_worker(index))
                work(index)
                status = 0
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                logger.exception("worker %d failed", index)
            finally:
                os._exit(status)
        children[pid] = index
    for listener in listeners:
        listener.close()
    logger.info("serving with %d workers (pids %s)", count, ", ".join(map(str, children)))
    return _supervise(children)


def _supervise(children: dict[int, int]) -> int:
    stopping = False
    status = 0

    def stop_all(signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):  # it exited already
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid, None)
            if index is None:
                continue  # not a worker (a subprocess of ours)
            if not stopping:
                code = os.waitstatus_to_exitcode(wait_status)
                logger.error(
                    "worker %d (pid %d) exited with %d; stopping the others", index, pid, code
                )
                status = 1
                stop_all()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


class PreBoundServer(uvicorn.Server):
    """A uvicorn server that accepts on a socket bound before the workers were forked."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket) -> None:
        super().__init__(config)
        self._socket = sock

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve on the pre-bound socket (or on ``sockets`` when given)."""
        await super().serve(sockets=sockets or [self._socket])
