"""Step 10 of the story: the auditor exports the ledger, verifies it offline, traces the
HE result, writes the report and lists the alerts.

The auditor trusts nothing the operator says: the export is checked against
the ledger key the auditor was handed (``ledger.vkey``), on the auditor's
own machine, with ``ibx audit verify``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from core.clock import utcnow
from exchange.demo.processes import DemoError

if TYPE_CHECKING:
    from pathlib import Path

    from exchange.demo.scene import Scene

__all__ = ["auditor_checks"]

TRACE_LINES = 40
"""At most this many lines of the trace tree are printed (the rest: ibx audit trace)."""


def _consortium_copy(scene: Scene, export: Path) -> None:
    """``ibx audit verify --fabric``: the export against the consortium's Fabric channel,
    through the auditor's own peer and Fabric identity; one line when the ledger is not
    shipped to a channel in this run.

    Raises:
        DemoError: the channel disagrees with the export, or could not be read.
    """
    say, fabric = scene.say, scene.consortium
    if fabric is None:
        say.fact(
            "the consortium ledger (a Hyperledger Fabric channel) is off in this run: set "
            "IBX_LEDGER_FABRIC_MODE and the IBX_LEDGER_FABRIC_* settings to ship the ledger "
            "and check it there (docs/fabric.md)"
        )
        return
    checked = scene.cli.as_actor(
        scene.auditor,
        "audit",
        "verify",
        "--export",
        str(export),
        "--ledger-vkey",
        str(scene.ledger_vkey),
        "--fabric",
        remote=False,
        ok=(0, 5),
        env=fabric.auditor_env(),
    )
    lines = checked.stdout.splitlines()
    found = [line for line in lines if line.startswith("FINDING")]
    verdict = lines[-1] if lines and lines[-1].startswith("fabric") else checked.message
    say.fact(
        f"ibx audit verify --fabric (channel {fabric.channel} read through the peer "
        f"{fabric.gateway}, as {fabric.msp_id}): {verdict}"
    )
    for line in found:
        say.detail(line)
    if checked.code == 0:
        say.detail(
            "the consortium's copy agrees: what the operator shipped is what the auditor was "
            "handed"
            + (", entry by entry" if fabric.mode == "full" else ", checkpoint by checkpoint")
        )
    if checked.code != 0:
        raise DemoError("the consortium's Fabric channel disagrees with the auditor's export")


def auditor_checks(scene: Scene) -> None:
    """10. ``ibx audit export``, ``verify``, ``trace``, ``report``, ``alerts``.

    Raises:
        DemoError: a command failed or printed something the story did not expect.
    """
    say, cli = scene.say, scene.cli
    auditor = scene.auditor
    export = auditor.home / "ledger-export.jsonl"
    ran = cli.as_actor(auditor, "audit", "export", "--out", str(export), admin=True)
    for line in ran.stdout.splitlines():
        if line.startswith("wrote "):
            wrote = line.replace(str(export), scene.shown(export))
            say.fact(f"ibx audit export (over HTTPS, as {auditor.name}): {wrote}")
        else:
            say.detail(line)
    verified = cli.as_actor(
        auditor,
        "audit",
        "verify",
        "--export",
        str(export),
        "--ledger-vkey",
        str(scene.ledger_vkey),
        remote=False,
        ok=(0, 5),
    )
    for line in verified.stdout.splitlines():
        say.fact(
            f"ibx audit verify (offline, under the ledger key it was handed): {line}"
            if line.startswith(("ok", "FINDING"))
            else f"    {line}"
        )
    if verified.code != 0:
        raise DemoError("ibx audit verify found something wrong with the demo's own ledger")
    _consortium_copy(scene, export)
    job = scene.jobs["he"]
    tree = cli.as_actor(auditor, "audit", "trace", job, "--export", str(export), remote=False)
    say.fact(f"ibx audit trace {job} (the HE mean): its lineage, each line from a ledger entry")
    lines = tree.stdout.rstrip().splitlines()
    for line in lines[:TRACE_LINES]:
        say.detail(line)
    if len(lines) > TRACE_LINES:
        say.detail(
            f"… {len(lines) - TRACE_LINES} more lines: ibx audit trace {job} --export {export}"
        )
    today = utcnow().date()
    period = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()
    cli.as_actor(
        auditor,
        "audit",
        "report",
        "--from",
        period[0],
        "--to",
        period[1],
        "--out",
        str(scene.report),
        "--force",
        "--export",
        str(export),
        remote=False,
    )
    say.fact(
        f"ibx audit report: {scene.shown(scene.report)} (one self-contained HTML file: decisions, "
        "denials by reason, data use per plant, key operations, certificates, alerts)"
    )
    alerts = cli.as_actor(auditor, "audit", "alerts", admin=True)
    listed = [line for line in alerts.stdout.splitlines() if line.strip()]
    say.fact(f"ibx audit alerts: {len(listed)} alert(s) on the ledger" + (":" if listed else ""))
    for line in listed:
        say.detail(line)
