"""``make demo``: a lithium-battery industry cluster, told step by step.

Everyone acts as in production, each with their own files in ``./.ibx-demo``
(:mod:`exchange.demo.scene`): ``ibx init`` makes the deployment and its two
bootstrap security officers; one ``ibx serve`` runs the API and the edge
listener; the officers, the five plants, the edge terminal, the sub-brain,
the witness and the auditor each run ``ibx`` commands with their own key
files and tokens, over HTTPS; every plant runs its own ``ibx agent``. The
narrator prints one line per fact and the ledger entry behind it.

Run it again and it starts over: ``.ibx-demo`` is wiped first, and every
process it starts is stopped when it ends, fails or is interrupted.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from exchange.cli._progress import Progress
from exchange.demo import audit_acts, console, setup_acts, use_acts
from exchange.demo.consortium import Consortium
from exchange.demo.launcher import check_stop, preload, request_stop, stop_running
from exchange.demo.narration import LedgerView, Narrator
from exchange.demo.processes import Background, Cli, DemoError
from exchange.demo.scene import Scene

__all__ = ["STEPS", "main"]

STEPS: list[tuple[str, Callable[[Scene], None]]] = [
    ("ibx init: the deployment and its two bootstrap security officers", setup_acts.deploy),
    (
        "Two officers put the policy pack in force (four eyes, signed duties); "
        "the auditor and the witness are registered",
        setup_acts.officers_and_policy,
    ),
    (
        "Five lithium-battery plants register their data, sign consents, start their agents",
        setup_acts.plants_join,
    ),
    ("An edge terminal enrols and uploads its plant's monthly readings", setup_acts.edge_readings),
    ("The witness cosigns the ledger", functools.partial(setup_acts.witness_round, first=True)),
    (
        "The sub-brain computes: HE mean, MPC benchmarking, PSI supplier match",
        use_acts.subbrain_computes,
    ),
    ("Two requests denied: raw data, and a cohort too small", use_acts.denials),
    ("A plant revokes its consent and is left out of the next job", use_acts.revocation),
    ("The witness cosigns again", functools.partial(setup_acts.witness_round, first=False)),
    ("The auditor exports, verifies, traces, reports", audit_acts.auditor_checks),
]


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGINT: stop the story (and, in ``finally``, every process it started)."""
    del signum, frame
    request_stop()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Tell the whole story on a fresh ``./.ibx-demo``; 0 when every step went as told."""
    del argv
    work = Path(".ibx-demo").resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(mode=0o700)
    preload()
    say = Narrator()
    consortium = Consortium.from_environment(os.environ)
    cli = Cli(work, work / "data")
    if consortium is not None:
        cli.deployment_env = consortium.operator_env()
    scene = Scene(work, cli, say, LedgerView(work / "data"), Background(), consortium=consortium)
    previous = {
        signum: signal.signal(signum, _stop)
        for signum in (signal.SIGTERM, signal.SIGINT)
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    progress = Progress.for_stderr()  # on a terminal: which step runs, and for how long
    started = time.perf_counter()
    number = 0
    serving = False
    try:
        for number, (title, step) in enumerate(STEPS, start=1):
            check_stop()
            say.step(number, title)
            with progress.working(f"step {number}/{len(STEPS)}"):
                step(scene)
        if _on_terminal():  # a reader at the keyboard: the console stays open for them
            serving = True
            _closing(scene, time.perf_counter() - started, serving=True)
            console.wait_until_stopped(scene.background)
    except DemoError as exc:
        print(f"demo: step {number} failed: {exc}", file=sys.stderr)
        print(f"demo: the logs are in {work} (serve.log, plants/*/agent.log)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if serving:
            print("demo: stopped; the exchange and the agents are stopped", file=sys.stderr)
            return 0
        print("demo: interrupted; its processes are stopped", file=sys.stderr)
        return 130
    finally:
        stop_running()
        scene.background.stop_all()
        scene.ledger.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _closing(scene, time.perf_counter() - started, serving=False)
    return 0


def _on_terminal() -> bool:
    """Whether a person runs the demo (stdin is a terminal), not a test or CI."""
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return False


def _closing(scene: Scene, seconds: float, *, serving: bool) -> None:
    say, shown = scene.say, scene.shown
    export = scene.auditor.home / "ledger-export.jsonl"
    if serving:
        say.say(
            f"\n== demo finished in {seconds:.1f} s; the exchange and the plants' agents keep "
            "running for the console (Ctrl-C stops them all)"
        )
    else:
        say.say(f"\n== demo finished in {seconds:.1f} s; every process it started is stopped")
    say.say("The same story in a browser, the web console (docs/console.md):")
    for line in console.sign_in_lines(scene.work, scene.cli.exchange, shown):
        say.say(line)
    if not serving:
        say.say(
            f"  {'serve it again':<22}make console (serves {shown(scene.data_dir)} on the same URL)"
        )
    say.say("What to look at next:")
    for label, text in (
        ("the audit report", f"{shown(scene.report)} (open it in a browser: nothing is fetched)"),
        (
            "the auditor's export",
            f"{shown(export)}: ibx audit verify --export {shown(export)} "
            f"--ledger-vkey {shown(scene.ledger_vkey)}",
        ),
        (
            "the data dir",
            f"{shown(scene.data_dir)}: ibx --data-dir {shown(scene.data_dir)} status "
            "(or ledger verify, identity list, policy list)",
        ),
        *(
            ()
            if scene.consortium is None
            else (
                (
                    "the Fabric channel",
                    f"ibx audit verify --export {shown(export)} --fabric "
                    f"(channel {scene.consortium.channel}, log {scene.consortium.origin})",
                ),
            )
        ),
        ("every command run", shown(scene.work / "commands.log")),
        (
            "the logs",
            f"{shown(scene.work / 'serve.log')}, {shown(scene.work / 'plants')}/*/agent.log",
        ),
    ):
        say.say(f"  {label:<22}{text}")


if __name__ == "__main__":
    sys.exit(main())
