"""The README's 5-minute tour runs exactly as written and prints what it shows."""

from __future__ import annotations

from pathlib import Path

from tests.docs.shellblocks import run_document

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    """Every ``$`` command of the tour, in a fresh directory against its own server."""
    commands = run_document(README, tmp_path, inputs=("policies",))
    run = " ".join(c.text for c in commands)
    for step in ("ibx init", "ibx serve", "ibx mpc he", "ibx mpc run", "ibx mpc psi"):
        assert step in run, f"the tour no longer runs {step}"


def test_readme_starts_with_the_two_setup_commands() -> None:
    """The first block of the README is ``make demo`` then ``make test``."""
    lines = [line.strip() for line in README.read_text(encoding="utf-8").splitlines()]
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]
