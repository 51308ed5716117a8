"""``ibx`` forked from the preloaded interpreter acts as the console script does.

Same exit code, standard output and standard error, from the same working
directory and environment (a relative ``IBX_DATA_DIR``); a command's death by
a signal is the stand-in's; a background job gets the real console script.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import zygote

pytestmark = pytest.mark.skipif(
    not zygote.supported(), reason="no pidfd here: every ibx is a new interpreter"
)


@pytest.fixture(scope="module")
def preloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A running preloaded interpreter: (its stand-in ``ibx``, its log)."""
    folder = tmp_path_factory.mktemp("zygote")
    socket_path, log = folder / "z.sock", folder / "zygote.log"
    stand_in = zygote.stand_in(folder / "bin", socket_path)
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, zygote.__file__, str(socket_path)], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while not socket_path.exists():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the preloaded interpreter never listened"
            time.sleep(0.05)
        yield stand_in, log
    finally:
        server.kill()
        server.wait()


def _run(ibx: Path, cwd: Path, *argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run(
        [str(ibx), *argv],
        cwd=cwd,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("IBX_")}, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (("no-such-command",), {}),
        (("identity", "list"), {"IBX_DATA_DIR": "relative/.ibx"}),
    ],
    ids=["usage-error", "relative-data-dir"],
)
def test_a_forked_command_prints_and_exits_as_the_console_script(
    preloaded: tuple[Path, Path], tmp_path: Path, argv: tuple[str, ...], env: dict[str, str]
) -> None:
    stand_in, log = preloaded
    forked = _run(stand_in, tmp_path, *argv, env=env)
    assert forked == _run(zygote.real_ibx(), tmp_path, *argv, env=env)
    assert forked[0] != 0 and forked[2].startswith(("ibx: ", "Usage: ibx"))
    assert f"ibx {' '.join(argv)}: status {forked[0] << 8}," in log.read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_signal_to_the_stand_in_ends_the_command(
    preloaded: tuple[Path, Path], tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGTERM to the stand-in reaches the forked command and the stand-in dies of it, as
    the command did; SIGKILL, which no process can forward, ends the command all the same."""
    stand_in, log = preloaded
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # the command blocks opening it for reading
    waiting = subprocess.Popen(
        [str(stand_in), "audit", "verify", "--export", str(fifo), "--ledger-vkey", str(fifo)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while f"{fifo}: started" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        waiting.send_signal(signum)
        assert waiting.wait(timeout=60) == -signum
        deadline = time.monotonic() + 60
        while f"{fifo}: status {signum.value}," not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        with contextlib.suppress(OSError):  # a command still blocked on the FIFO: let it go
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_a_command_killed_through_start_is_gone_when_kill_returns(tmp_path: Path) -> None:
    """:func:`tests.zygote.kill` returns only once the forked command itself has ended, as
    ``Popen.kill(); wait()`` would for a process of its own (a test restarting a server on
    its port, or an agent on its state, relies on it)."""
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    process, pid = zygote.start(
        ["audit", "verify", "--export", str(fifo), "--ledger-vkey", str(fifo)],
        tmp_path / "command.pid",
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert pid is not None and pid != process.pid  # a fork, not the stand-in
        os.kill(pid, 0)  # running, blocked on the FIFO
        zygote.kill(process, pid)
        assert process.returncode == -signal.SIGKILL
        zygote.wait_ended(pid, timeout=0)  # already gone: no wait at all
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
