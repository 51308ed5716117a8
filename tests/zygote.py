"""``ibx`` processes for tests without re-importing the product in each of them.

A new interpreter spends one to three seconds of CPU importing the API, the
database layer, the engines and the cryptography before ``ibx`` does
anything, and the suite starts hundreds of them: a document's eighty commands,
a real ``ibx serve`` per test module. The preloaded interpreter
(``python tests/zygote.py SOCKET``) imports them once; the stand-in ``ibx``
script (:func:`stand_in`) asks it for a fork: the forked process takes the
stand-in's argv, working directory, environment, signal dispositions and
standard input, output and error (passed over a Unix socket), then runs
``exchange.cli.main`` as the console script does and exits as it would; the
stand-in exits with its status (or dies of its signal) and forwards SIGTERM,
SIGINT and SIGHUP to it; a stand-in killed (SIGKILL) takes its command with it.

What each command does, prints and exits with is that of the real ``ibx``:
the same entry point, in a process of its own, with nothing run before it
but imports (no module of the product reads the environment at import,
``tests/exchange/test_settings.py`` checks it; ``mpyc``, whose runtime parses
``sys.argv`` on import, is never preloaded). Where the preloaded interpreter
is not listening (not started, not ready yet, gone) the stand-in runs the
real console script. A test whose subject is a fresh interpreter (what it
imports, how it starts) starts ``ibx`` itself, not through this.

Users: ``tests/docs/shellblocks.py`` (every ``ibx`` of a document, its server
included) and ``tests/server.py`` (``running_exchange``: :func:`shared`).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

PRELOAD = (
    "exchange.runtime",
    "exchange.identities",
    "exchange.client",
    "exchange.cli._api_client",
    "exchange.cli._profiles",
    "exchange.cli.serve",
    "exchange.app",
    "uvicorn",
    "httpx",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    "ledger",
    "ledger.backends.sql",
    "alembic.command",
    "pydantic_settings",
    "cryptography.x509",
    "nacl.signing",
)
"""What commands and the server import; never ``mpyc`` (its runtime parses ``sys.argv``)."""

NEVER_PRELOADED = ("mpyc",)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
DISPOSITIONS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)
"""Signals whose disposition (ignored or not) the command inherits from its stand-in."""

PIDFILE_VARIABLE = "ZYGOTE_PIDFILE"
"""Set in a stand-in's environment (and taken out of its command's), the file the stand-in
writes its command's pid to: for a test that must know the command is gone after a SIGKILL
(:func:`command_pid`, :func:`wait_ended`)."""

STAND_IN = '''\
#!{python} -IS
"""ibx for tests: a fork of a preloaded interpreter (tests/zygote.py)."""
import json, os, signal, socket, sys

SOCKET, REAL = {socket!r}, {real!r}
PIDFILE = os.environ.pop({pidfile_variable!r}, None)  # for the test, never for ibx


def record(pid):
    if PIDFILE:
        with open(PIDFILE + ".new", "w") as out:
            out.write(str(pid))
        os.rename(PIDFILE + ".new", PIDFILE)


def real():
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    record(os.getpid())
    os.execv(REAL, [REAL, *sys.argv[1:]])


def forward(signum, _frame):
    os.kill(pid, signum)


signal.pthread_sigmask(signal.SIG_BLOCK, {forwarded!r})  # held until the command runs
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    conn.connect(SOCKET)
except OSError:
    real()
ignored = [int(s) for s in {dispositions!r} if signal.getsignal(s) is signal.SIG_IGN]
request = json.dumps(
    {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), "ignored": ignored}}
).encode() + b"\\n"
sent = socket.send_fds(conn, [request], [0, 1, 2])
conn.sendall(request[sent:])
answer = conn.makefile("rb")
first = answer.readline()
if not first:
    sys.exit("ibx (tests/zygote.py): the preloaded interpreter did not run the command")
pid = int(first)
record(pid)
for signum in {forwarded!r}:
    signal.signal(signum, forward)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {forwarded!r})
last = answer.readline()
if not last:
    sys.exit("ibx (tests/zygote.py): the preloaded interpreter lost the command")
status = int(last)
if os.WIFSIGNALED(status):
    dead = os.WTERMSIG(status)
    signal.signal(dead, signal.SIG_DFL)
    os.kill(os.getpid(), dead)
sys.exit(os.waitstatus_to_exitcode(status))
'''


def real_ibx() -> Path:
    """The venv's ``ibx`` console script."""
    return Path(sys.executable).parent / "ibx"


def stand_in(folder: Path, socket_path: Path) -> Path:
    """Write the ``ibx`` stand-in into ``folder`` (to put first on ``PATH``); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ibx"
    path.write_text(
        STAND_IN.format(
            python=sys.executable,
            socket=str(socket_path),
            real=str(real_ibx()),
            dispositions=tuple(int(s) for s in DISPOSITIONS),
            forwarded=tuple(int(s) for s in FORWARDED),
            pidfile_variable=PIDFILE_VARIABLE,
        ),
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


def argv(socket_path: Path) -> list[str]:
    """The command that starts a preloaded interpreter listening on ``socket_path``."""
    return [sys.executable, str(Path(__file__).resolve()), str(socket_path)]


def start_command(socket_path: Path, log: Path) -> str:
    """The shell line that starts the preloaded interpreter as a background job."""
    return f"{shlex.join(argv(socket_path))} >{shlex.quote(str(log))} 2>&1 &\n"


def supported() -> bool:
    """Whether this system can run the preloaded interpreter (Linux 5.3's pidfd, fds passed
    over a Unix socket); without it every ``ibx`` is a new interpreter, as before."""
    if not hasattr(os, "pidfd_open") or not hasattr(socket, "send_fds"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


_SHARED: list[Path | None] = []


def shared() -> Path | None:
    """This test process's stand-in ``ibx``, its preloaded interpreter started on first use
    (and waited for: a server would spend that time importing) and killed at exit; None
    when it cannot start (callers then run the console script)."""
    if _SHARED:
        return _SHARED[0]
    if not supported():
        _SHARED.append(None)
        return None
    folder = Path(tempfile.mkdtemp(prefix="ibx-zygote-"))
    socket_path = folder / "ibx.sock"
    log = (folder / "zygote.log").open("wb")
    process = subprocess.Popen(
        argv(socket_path), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()

    def stop() -> None:
        process.kill()
        process.wait()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    deadline = time.monotonic() + 120
    while not socket_path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    _SHARED.append(stand_in(folder / "bin", socket_path) if socket_path.exists() else None)
    return _SHARED[0]


def ibx_argv() -> list[str]:
    """How a test runs ``ibx`` as a process of its own when its subject is what the process
    does (output, exit code, argv, environment, signals), not a new interpreter's start:
    the stand-in of :func:`shared`, or ``python -m exchange.cli`` without it. Not for a
    test of what the process imports, nor of its process group (the forked command is in
    the preloaded interpreter's)."""
    ibx = shared()
    return [str(ibx)] if ibx else [sys.executable, "-m", "exchange.cli"]


def command_pid(
    pidfile: Path, stand_in: subprocess.Popen[bytes], timeout: float = 60
) -> int | None:
    """The pid of the command that ``stand_in`` (started with :data:`PIDFILE_VARIABLE` set to
    ``pidfile``) runs: its fork, or the stand-in itself where it ran the console script;
    None if the stand-in ended first.

    Raises:
        TimeoutError: the stand-in neither ran its command nor ended within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while not pidfile.exists():
        if stand_in.poll() is not None:
            return None
        if time.monotonic() > deadline:
            raise TimeoutError(f"stand-in {stand_in.pid}: no command started in {timeout} s")
        time.sleep(0.005)
    return int(pidfile.read_text())


def wait_ended(pid: int, timeout: float = 30) -> None:
    """Return once process ``pid`` (a forked command, not a child of this process) is gone.

    Raises:
        TimeoutError: it still runs after ``timeout`` seconds.
    """
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([handle], [], [], timeout)
    finally:
        os.close(handle)
    if not ready:
        raise TimeoutError(f"process {pid} still runs {timeout} s after its stand-in ended")


def start(
    args: list[str], pidfile: Path, *, env: dict[str, str], **popen: Any
) -> tuple[subprocess.Popen[bytes], int | None]:
    """``ibx ARGS`` as a process of its own (:func:`ibx_argv`) that a test may SIGKILL:
    its stand-in and the pid of the command (:func:`command_pid`, for :func:`kill`)."""
    ibx = shared()
    if ibx is None:  # a new interpreter: the process is the command
        return subprocess.Popen([*ibx_argv(), *args], env=env, **popen), None
    pidfile.unlink(missing_ok=True)
    process = subprocess.Popen([ibx, *args], env={**env, PIDFILE_VARIABLE: str(pidfile)}, **popen)
    return process, command_pid(pidfile, process)


def kill(process: subprocess.Popen[bytes], pid: int | None) -> None:
    """SIGKILL ``process`` (a stand-in from :func:`start`); return once its command is gone
    too, as a killed process of its own would be."""
    process.kill()
    process.wait()
    if pid is not None:
        wait_ended(pid)


# --- the preloaded interpreter (``python zygote.py SOCKET``) --------------------------------


def _preload() -> None:
    """Import what commands import, as ``exchange.cli.main`` would (httpx's own command
    line kept out first, as ``main`` does)."""
    import importlib

    import exchange.cli

    exchange.cli._skip_httpx_command_line()
    for name in PRELOAD:
        importlib.import_module(name)
    leaked = [m for m in sys.modules if m.split(".")[0] in NEVER_PRELOADED]
    if leaked:
        raise RuntimeError(f"the preload imported {leaked[:3]}: they must load per command")
    gc.collect()
    gc.freeze()  # the forks share these objects' pages: no collection walks (copies) them


class Request(TypedDict):
    """What the stand-in sends, besides its standard input, output and error."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    ignored: list[int]


def _receive(conn: socket.socket) -> tuple[Request, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
    while not data.endswith(b"\n"):
        more = conn.recv(1 << 16)
        if not more:
            raise ConnectionError("the stand-in went away")
        data += more
    request: Request = json.loads(data)
    return request, fds


def _standard_streams() -> None:
    """New ``sys.stdin``/``stdout``/``stderr`` on fds 0-2, made as the interpreter makes them
    at start-up (buffering, line buffering on a terminal and for stderr, errors)."""
    buffered = not os.environ.get("PYTHONUNBUFFERED")  # the console script has no -u
    streams = []
    for fd, mode, old in ((0, "rb", sys.stdin), (1, "wb", sys.stdout), (2, "wb", sys.stderr)):
        writing = mode == "wb"
        binary = open(fd, mode, buffering=-1 if buffered or not writing else 0, closefd=False)  # noqa: SIM115
        streams.append(
            io.TextIOWrapper(
                binary,
                encoding=old.encoding,
                errors=old.errors,
                newline="\n",
                line_buffering=buffered and (os.isatty(fd) or fd == 2),
                write_through=not buffered,
            )
        )
    for name, stream in zip(("stdin", "stdout", "stderr"), streams, strict=True):
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _run(request: Request, fds: list[int]) -> None:
    """In the forked command: become the command's process, then run ``ibx``."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    ignored = set(request["ignored"])
    for signum in DISPOSITIONS:
        if signum in ignored:
            signal.signal(signum, signal.SIG_IGN)
        elif signum == signal.SIGINT:
            signal.signal(signum, signal.default_int_handler)
        else:
            signal.signal(signum, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _standard_streams()
    script = real_ibx()
    sys.argv = [str(script), *request["argv"]]
    sys.path[0] = str(script.parent)
    from exchange.cli import main

    sys.exit(main())  # type: ignore[func-returns-value]


def _serve_one(conn: socket.socket) -> None:
    """In a fork of the preloaded interpreter: fork the command, report its pid and status."""
    request, fds = _receive(conn)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run(request, fds)
        return
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    argv = " ".join(request["argv"])
    print(f"{pid} ibx {argv}: started", file=sys.stderr, flush=True)
    ended = os.pidfd_open(pid)
    ready, _, _ = select.select([conn.fileno(), ended], [], [])
    if ended not in ready:  # the stand-in died (SIGKILL): so does its command
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    print(
        f"{pid} ibx {argv}: status {status}, CPU {usage.ru_utime:.2f} s user "
        f"{usage.ru_stime:.2f} s system",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(OSError):  # a stand-in killed is not there to read it
        conn.sendall(f"{status}\n".encode())
    conn.close()
    os._exit(0)


def serve(socket_path: Path) -> None:
    """Preload, listen on ``socket_path`` and fork a command per connection, until killed."""
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = socket_path.with_name(socket_path.name + ".new")
    listener.bind(str(temporary))
    listener.listen(64)
    temporary.rename(socket_path)  # the stand-in connects only once this listens
    sys.stdout.flush()
    sys.stderr.flush()
    while True:
        conn, _ = listener.accept()
        while True:  # the finished per-command forks
            try:
                reaped, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if reaped == 0:
                break
        if os.fork() == 0:
            listener.close()
            _serve_one(conn)  # the command's fork returns here only to run it
            return
        conn.close()


if __name__ == "__main__":
    sys.path[0] = str(real_ibx().parent)  # as the console script's: not this folder
    serve(Path(sys.argv[1]))
