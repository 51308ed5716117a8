"""Entry point of one compute party process (``python -m mpc._party_main`` or ``ibx mpc party``).

This is the only place that imports ``mpyc.runtime``: its import runs MPyC's
``setup()``, which parses ``sys.argv``, so the options are put there first,
from this entry point's own arguments. The party runs in its own working
directory (``.config/`` holds its TLS files and its box key), opens only its
own sealed shares, computes, and writes public outputs to ``--out``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mpc._program import PartyOutcome, compute
from mpc.mpc_spec import MpcJobSpec
from mpc.sharing import SealedShare, open_envelopes

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibx mpc party", description=__doc__)
    parser.add_argument("--index", type=int, required=True, help="this party's index, from 0")
    parser.add_argument(
        "--parties", required=True, help="host:port of every party, comma-separated, in order"
    )
    parser.add_argument("--job", type=Path, required=True, help="job file (spec + envelopes)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the outcome")
    parser.add_argument("--dir", type=Path, default=None, help="working directory [default: .]")
    parser.add_argument(
        "--unsafe-no-tls", action="store_true", help="plain TCP between parties (tests only)"
    )
    parser.add_argument(
        "--runner-pid", type=int, default=None, help="die when this parent process dies"
    )
    return parser


_PR_SET_PDEATHSIG = 1


def _die_with_runner(runner_pid: int | None) -> None:
    """Take the signals the runner held while starting us; die when it dies (Linux).

    Raises:
        SystemExit: the runner is already gone.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    if runner_pid is None:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != runner_pid:  # it died before the request took effect
        raise SystemExit(1)


def _write(path: Path, outcome: PartyOutcome) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(outcome, sort_keys=True))
    tmp.replace(path)


def _peak_rss() -> int:
    """This process's peak resident set (VmHWM; unlike ru_maxrss, reset by exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run(args: argparse.Namespace) -> PartyOutcome:
    """Open shares, start MPyC with TLS, compute, and return the outcome."""
    if args.dir is not None:
        os.chdir(args.dir)
    job = json.loads(args.job.read_text())
    spec = MpcJobSpec.from_dict(job["spec"])
    envelopes = [SealedShare.from_dict(e) for e in job["envelopes"]]
    private_key = (Path(".config") / f"party_{args.index}.box").read_bytes()
    inputs, refused = open_envelopes(spec, args.index, private_key, envelopes)
    del private_key
    mpyc_argv = [sys.argv[0] if sys.argv else "ibx-mpc-party", "-I", str(args.index)]
    for address in args.parties.split(","):
        mpyc_argv += ["-P", address]
    if args.unsafe_no_tls:
        logger.warning("party %d runs WITHOUT TLS between parties (--unsafe-no-tls)", args.index)
    else:
        mpyc_argv.append("--ssl")
    mpyc_argv += ["--log-level", "warning"]
    sys.argv = mpyc_argv
    from mpyc.runtime import mpc as rt  # noqa: PLC0415 - parses sys.argv: only here

    async def _main() -> PartyOutcome:
        await rt.start()
        outcome = await compute(rt, spec, inputs, refused)
        sent: Any = sum(
            p.protocol.nbytes_sent for p in rt.parties if p.pid != rt.pid and p.protocol
        )
        outcome["bytes_sent"] = int(sent)
        await rt.shutdown()
        outcome["peak_rss_bytes"] = _peak_rss()
        return outcome

    result: PartyOutcome = rt.run(_main())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run one party; exit 0 with the outcome written, 1 with an error written."""
    args = _parser().parse_args(argv)
    _die_with_runner(args.runner_pid)
    try:
        outcome = run(args)
    except Exception as exc:
        _write(args.out, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _write(args.out, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
