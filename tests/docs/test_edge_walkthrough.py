"""docs/edge.md's walkthrough runs exactly as written and prints what it shows."""

from __future__ import annotations

from pathlib import Path

from tests.docs.shellblocks import run_document

EDGE = Path(__file__).resolve().parents[2] / "docs" / "edge.md"
README = EDGE.parents[1] / "README.md"


def test_edge_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """Init, enrol, renew, upload, pull, revoke, CRL and OCSP against its own server."""
    commands = run_document(EDGE, tmp_path)
    run = " ".join(c.text for c in commands)
    for step in ("ibx init", "ibx serve", "ibx edge enroll", "ibx pki revoke", "openssl ocsp"):
        assert step in run, f"the walkthrough no longer runs {step}"


def _names(doc: Path) -> set[str]:
    """The identities a doc creates (every ``--name X`` and bootstrap ``--officer X``)."""
    text = doc.read_text(encoding="utf-8")
    return {
        part.split()[0] for option in ("--name ", "--officer ") for part in text.split(option)[1:]
    }


def test_edge_walkthrough_names_nobody_the_tour_names() -> None:
    """The walkthrough's identities (officer, enterprise) are not the README tour's."""
    edge, tour = _names(EDGE), _names(README)
    assert "edge-officer" in edge and "officer-a" in tour
    assert not edge & tour, f"both docs create {sorted(edge & tour)}"
