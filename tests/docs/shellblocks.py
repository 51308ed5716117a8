"""Run a Markdown document's ```console blocks as a test, comparing what they print.

The convention, written for people first and unambiguous for the test:

* Only fenced blocks opened with three backticks and ``console`` run; every
  other block (``sh``, ``text``, indented) is illustration and is not run.
* A line that starts with ``$ `` is a command, run by bash. A command whose
  line ends with a backslash continues on the next line (written indented,
  without ``$ ``), as a shell would read it. A ``# comment`` after a command
  is for people; bash ignores it.
* Every other line, up to the next ``$ `` line or the end of the block, is
  what the command prints: standard output and standard error together, as
  on a terminal. A command followed by no such line must print nothing.
* ``…`` in an output line stands for any run of characters on that line
  (tokens, hashes, times); a line that is only ``…`` stands for any number
  of lines, none included.
* A command must exit 0, unless the next command is ``echo $?``: then its
  status is printed and compared like any other output.
* A command that ends with ``&`` runs in the background (a server). Its
  output is not compared. The ports it is given with ``--port N`` and
  ``--edge-port N`` are replaced by free ports everywhere in the document
  (commands and output); the next command starts once they answer. It is
  ended, with everything else the document started, when the document is
  done.

Blocks run in order in one bash session (variables carry over), in a fresh
directory, with ``set -o pipefail``, standard input from ``/dev/null``, a
``HOME``, ``IBX_CONFIG_DIR`` and ``IBX_DATA_DIR`` inside that directory, no
other ``IBX_*`` variable from the caller, copies of the checkout's files
the test names as the document's inputs (the README reads ``policies/``),
the venv's ``bin`` first on ``PATH`` and unbuffered Python output (so lines
come in the order a terminal shows them). Nothing runs that the document
does not show, except one interpreter with the product imported that each
``ibx`` command is forked from (``tests/zygote.py``: the same entry point,
argv, environment, directory and standard streams, in a process of its own;
it saves the suite most of a second of imports per command).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests import zygote

PROMPT = "$ "
ELLIPSIS = "…"
FENCE = re.compile(r"^(```+|~~~+)\s*(\S*)")
PORT_OPTION = re.compile(r"--(?:edge-)?port[ =](\d+)")
HTTP_PORT = re.compile(r"--port[ =](\d+)")
COMMAND_TIMEOUT = 180.0
READY_TIMEOUT = 60.0


class DocError(AssertionError):
    """A documented command failed, hung, or printed something other than the doc shows."""


@dataclass(frozen=True)
class Command:
    """One ``$`` command of a console block and the output the document shows for it."""

    doc: str
    block: int
    line: int
    text: str
    expected: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError(f"{self.where}: empty command")

    @property
    def where(self) -> str:
        """``doc:line (block n)``, for messages."""
        return f"{self.doc}:{self.line} (console block {self.block})"

    @property
    def background(self) -> bool:
        """Whether the command ends with ``&`` (a server the document starts)."""
        stripped = self.text.rstrip()
        return stripped.endswith("&") and not stripped.endswith("&&")


def extract(markdown: str, doc: str = "<doc>") -> list[Command]:
    """The ``$`` commands of ``markdown``'s console blocks, in order, with their output.

    Raises:
        ValueError: a console block has output before its first command, or
            a continued command runs past the end of its block.
    """
    commands: list[Command] = []
    lines = markdown.splitlines()
    block = 0
    fence: str | None = None
    console = False
    current: list[str] = []
    start = 0
    expected: list[str] = []
    continued = False

    def finish() -> None:
        if current:
            commands.append(Command(doc, block, start, "\n".join(current), tuple(expected)))
        current.clear()
        expected.clear()

    for number, line in enumerate(lines, start=1):
        opened = FENCE.match(line)
        if fence is None:
            if opened:
                fence = opened.group(1)
                console = opened.group(2) == "console"
                block += console
            continue
        if line.strip() == fence or (opened and opened.group(1) == fence and not opened.group(2)):
            if continued:
                raise ValueError(f"{doc}:{number}: a command continues past its block's end")
            finish()
            fence = None
            continue
        if not console:
            continue
        if continued:
            current.append(line)
            continued = line.endswith("\\")
        elif line.startswith(PROMPT) or line == PROMPT.strip():
            finish()
            start = number
            current.append(line[len(PROMPT) :])
            continued = line.endswith("\\")
        elif not current:
            if line.strip():
                raise ValueError(f"{doc}:{number}: output before any command in its block")
        else:
            expected.append(line)
    return commands


def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split(ELLIPSIS)))


def mismatch(expected: tuple[str, ...], actual: list[str]) -> str | None:
    """Why ``actual`` lines are not what ``expected`` shows, or ``None`` when they are.

    Raises:
        Nothing: a mismatch is returned as a message.
    """
    want = [line.rstrip() for line in expected]
    got = [line.rstrip() for line in actual]
    while got and not got[-1]:
        got.pop()
    while want and not want[-1]:
        want.pop()

    def matches(i: int, j: int) -> int:
        """How far into ``got`` the best attempt got (``len(got) + 1`` means a full match)."""
        if i == len(want):
            return len(got) + 1 if j == len(got) else j
        if want[i] == ELLIPSIS:
            best = j
            for k in range(j, len(got) + 1):
                reached = matches(i + 1, k)
                if reached == len(got) + 1:
                    return reached
                best = max(best, reached)
            return best
        if j < len(got) and _line_pattern(want[i]).fullmatch(got[j]):
            return matches(i + 1, j + 1)
        return j

    reached = matches(0, 0)
    if reached == len(got) + 1:
        return None
    shown = "\n".join(f"    {line}" for line in want) or "    (nothing)"
    printed = "\n".join(f"    {line}" for line in got) or "    (nothing)"
    first = got[reached] if reached < len(got) else "(end of output)"
    return (
        f"first line that differs: {first!r}\n  the doc shows:\n{shown}\n  it printed:\n{printed}"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ports(commands: list[Command]) -> dict[str, str]:
    """A free port for every port a background command of the document is given."""
    found = [p for c in commands if c.background for p in PORT_OPTION.findall(c.text)]
    return {port: str(_free_port()) for port in dict.fromkeys(found)}


def _substitute(text: str, ports: dict[str, str]) -> str:
    for old, new in ports.items():
        text = re.sub(rf"(?<=:){old}\b|(?<=--port ){old}\b|(?<=--edge-port ){old}\b", new, text)
    return text


def environment(work: Path) -> dict[str, str]:
    """The documented environment: the caller's minus ``IBX_*``, homes inside ``work``.

    Raises:
        Nothing.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    home = work.parent / "home"
    home.mkdir(exist_ok=True)
    env.pop("XDG_CONFIG_HOME", None)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        HOME=str(home),
        IBX_CONFIG_DIR=str(home / ".config" / "ibx"),
        IBX_DATA_DIR=str(work / ".ibx"),
        PYTHONUNBUFFERED="1",
        LC_ALL="C.UTF-8",
        TERM="dumb",
    )
    return env


def _healthy(port: str) -> bool:
    """Whether the API on ``port`` answers ``/healthz``: over TLS (``ibx serve``'s default)
    or over plain HTTP (``--plain-http``). A readiness probe only: the document's own
    commands are what pin the deployment's CA."""
    for scheme in ("https", "http"):
        try:
            answer = httpx.get(
                f"{scheme}://127.0.0.1:{port}/healthz",
                timeout=1,
                verify=False,  # a readiness probe: no data is exchanged
            )
        except httpx.TransportError:
            continue
        if answer.status_code == 200:
            return True
    return False


def _wait_ready(text: str, out: Path, command: Command) -> None:
    """Wait until the HTTP port answers ``/healthz`` and every other port accepts."""
    deadline = time.monotonic() + READY_TIMEOUT
    http = set(HTTP_PORT.findall(text))
    for port in PORT_OPTION.findall(text):
        while True:
            try:
                if port in http:
                    if _healthy(port):
                        break
                else:
                    with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
                        break
            except (httpx.TransportError, OSError):
                pass
            if time.monotonic() > deadline:
                log = out.read_text(errors="replace") if out.exists() else ""
                raise DocError(
                    f"{command.where}: `{command.text}` never answered on {port}:\n{log}"
                )
            time.sleep(0.1)


def run_document(path: Path, tmp: Path, inputs: tuple[str, ...] = ()) -> list[Command]:
    """Run every console block of ``path`` in ``tmp/work``; returns the commands run.

    ``inputs`` are paths relative to ``path``'s checkout (e.g. ``policies``)
    that the document reads as if run from the checkout; they are copied into
    ``tmp/work`` first, so nothing the document does touches the checkout.

    Raises:
        DocError: a command failed, hung, or printed other than the doc shows,
            or a process it started outlived the document.
    """
    root = path.resolve().parent
    while not (root / "pyproject.toml").exists() and root != root.parent:
        root = root.parent
    doc = str(path.resolve().relative_to(root))
    commands = extract(path.read_text(encoding="utf-8"), doc)
    if not commands:
        raise DocError(f"{doc}: no console block to run")
    (tmp / "work").mkdir()
    for name in inputs:
        shutil.copytree(root / name, tmp / "work" / name)
    return run_commands(commands, tmp)


def run_commands(commands: list[Command], tmp: Path) -> list[Command]:
    """Run ``commands`` (from :func:`extract`) as the module docstring says.

    Raises:
        DocError: a command failed, hung, or printed other than the doc shows,
            or a process it started outlived the document.
    """
    work, run = tmp / "work", tmp / "run"
    work.mkdir(exist_ok=True)
    run.mkdir()
    ports = _ports(commands)
    env = environment(work)
    sockets = Path(tempfile.mkdtemp(prefix="ibx-doc-"))  # short: a socket path has 107 bytes
    socket_path = sockets / "ibx.sock"
    zygote.stand_in(run / "bin", socket_path)
    env["PATH"] = f"{run / 'bin'}{os.pathsep}{env['PATH']}"
    with (run / "bash.log").open("wb") as log:
        bash = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=work,
            env=env,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    assert bash.stdin is not None
    try:
        if zygote.supported() and any("ibx" in command.text for command in commands):
            bash.stdin.write(zygote.start_command(socket_path, run / "zygote.log").encode())
        bash.stdin.write(b"set -o pipefail\n__ibx_status() { return $1; }\n__rc=0\n")
        for index, command in enumerate(commands):
            text = _substitute(command.text, ports)
            out, rc = run / f"{index}.out", run / f"{index}.rc"
            script = (
                f"__ibx_status $__rc\n{{ {text}\n}} </dev/null >{out} 2>&1\n"
                f"__rc=$?\necho $__rc >{rc}.tmp && mv {rc}.tmp {rc}\n"
            )
            bash.stdin.write(script.encode())
            bash.stdin.flush()
            deadline = time.monotonic() + COMMAND_TIMEOUT
            while not rc.exists():
                if bash.poll() is not None or time.monotonic() > deadline:
                    printed = out.read_text(errors="replace") if out.exists() else ""
                    why = "ended the shell" if bash.poll() is not None else "did not finish"
                    raise DocError(f"{command.where}: `{text}` {why}:\n{printed}")
                time.sleep(0.02)
            status = int(rc.read_text())
            if command.background:
                _wait_ready(text, out, command)
                continue
            follower = commands[index + 1].text.strip() if index + 1 < len(commands) else ""
            printed = out.read_text(encoding="utf-8", errors="replace")
            if status != 0 and follower != "echo $?":
                raise DocError(f"{command.where}: `{text}` exited {status}:\n{printed}")
            expected = tuple(_substitute(line, ports) for line in command.expected)
            differs = mismatch(expected, printed.splitlines())
            if differs is not None:
                if command.text.strip() == "echo $?" and index:
                    text = f"{commands[index - 1].text}` then `{text}"
                raise DocError(
                    f"{command.where}: `{text}` printed other than the doc shows; {differs}"
                )
    finally:
        try:
            _end(bash)
        finally:
            shutil.rmtree(sockets, ignore_errors=True)
    return commands


def _end(bash: subprocess.Popen[bytes]) -> None:
    """End the document's shell, its background jobs and anything else it started.

    Raises:
        DocError: a process of the document's session survived SIGKILL.
    """
    if bash.stdin is not None and bash.poll() is None:
        try:
            bash.stdin.write(b"kill $(jobs -p) 2>/dev/null; wait\nexit 0\n")
            bash.stdin.close()
        except BrokenPipeError:
            pass
    with contextlib.suppress(subprocess.TimeoutExpired):
        bash.wait(timeout=30)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(bash.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(bash.pid, 0)
            except ProcessLookupError:
                break
            bash.poll()
            time.sleep(0.05)
        else:
            continue
        break
    bash.wait(timeout=10)
    try:
        os.killpg(bash.pid, 0)
    except ProcessLookupError:
        return
    raise DocError("a process started by the document outlived it")
