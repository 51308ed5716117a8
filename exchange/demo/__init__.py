"""``make demo``: the end-to-end scenario on the embedded defaults.

Each capability adds one step module (``exchange/demo/<name>.py`` with
``run(scene)``) and one line to :data:`STEPS`. Steps share a :class:`Scene`:
the runtime on a fresh data dir and the identities created so far.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from exchange.cli._progress import Progress
from exchange.demo import (
    api_step,
    consent_step,
    edge_step,
    ledger_step,
    mpc_step,
    pipeline_step,
    policy_step,
)
from exchange.identities import IssuedIdentity
from exchange.runtime import Runtime
from exchange.settings import Settings

__all__ = ["STEPS", "Scene", "main"]


@dataclass
class Scene:
    """What the demo steps share."""

    runtime: Runtime
    work_dir: Path
    identities: dict[str, IssuedIdentity] = field(default_factory=dict)

    def say(self, text: str = "") -> None:
        """Print a line of the demo's story."""
        print(text, flush=True)

    def heading(self, text: str) -> None:
        """Print a step heading."""
        print(f"\n== {text}", flush=True)


STEPS: list[tuple[str, Callable[[Scene], None]]] = [
    ("ledger: record events, checkpoint, inclusion proof", ledger_step.run),
    ("policy: four-eyes activation of the baseline pack, two decisions", policy_step.run),
    ("consent: enterprise-signed grants, a revocation, checks before and after", consent_step.run),
    ("the API: every duty over HTTPS, authorized by the policy decision point", api_step.run),
    (
        "the engines alone (operator tools, no policy or consent): HE mean, MPC round, PSI",
        mpc_step.run,
    ),
    (
        "the pipeline: ibx serve, an ibx agent per enterprise, HE/MPC/PSI requests, refusals",
        pipeline_step.run,
    ),
    ("edge: EST enrolment, sealed upload over mutual TLS, revocation", edge_step.run),
]


def main(argv: list[str] | None = None) -> int:
    """Run every step on a fresh data dir (``./.ibx-demo``)."""
    del argv
    work = Path(".ibx-demo").resolve()
    if work.exists():
        shutil.rmtree(work)
    runtime = Runtime.initialise(
        Settings(data_dir=work / "data", ledger_origin="demo.ibx.localhost/ledger")
    )
    scene = Scene(runtime=runtime, work_dir=work)
    started = time.perf_counter()
    progress = Progress.for_stderr()  # on a terminal: which step runs, and for how long
    for number, (title, step) in enumerate(STEPS, start=1):
        scene.heading(title)
        with progress.working(f"step {number}/{len(STEPS)}: {title.split(':')[0]}"):
            step(scene)
    scene.heading(f"demo finished in {time.perf_counter() - started:.1f} s; data in {work}")
    runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
