"""``ibx policy``: propose, test, diff, approve, activate, list and decide.

Every command acts as the identity of ``--token``/``IBX_TOKEN``. Changing
policy (propose, test, diff, approve, activate) needs a security officer, and
the proposer of a version can neither approve nor activate it. ``list`` and
``decide`` are open to any identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from core.canonical import JsonValue, parse_json_object
from core.clock import format_rfc3339, parse_rfc3339
from core.errors import CanonicalJsonError
from exchange.cli._context import TOKEN_OPTION, cli_context
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_records, emit_table
from exchange.identities import Identity, IdentityError, Role
from policies import (
    CoverageReport,
    Decision,
    DiffRow,
    Officer,
    OfficerRequiredError,
    PolicyInputError,
    PolicyVersion,
    Subject,
    parse_requests_file,
)

__all__ = ["app"]

app = typer.Typer(help="The policy decision point: four-eyes policy changes and decisions.")


def _officer(identity: Identity) -> Officer:
    if identity.role is not Role.SECURITY_OFFICER:
        raise OfficerRequiredError(
            f"{identity.name} is {identity.role}; only a security officer may change policy"
        )
    return Officer(identity.name, identity.role.value)


@dataclass(frozen=True)
class VersionListing:
    """A policy version as ``policy list --json`` (and propose/approve/activate) print it."""

    version: PolicyVersion

    @property
    def tests(self) -> str:
        """``untested``, ``passed`` or ``failed``."""
        return {None: "untested", True: "passed", False: "failed"}[self.version.tests_passed]

    def to_dict(self) -> dict[str, JsonValue]:
        """Stable JSON fields (the full version hash)."""
        v = self.version
        return {
            "hash": v.hash,
            "state": str(v.state),
            "proposed_by": v.proposed_by,
            "proposed_at": format_rfc3339(v.proposed_at),
            "tests": self.tests,
            "tested_by": v.tested_by,
            "approved_by": v.approved_by,
            "activated_by": v.activated_by,
            "activated_at": format_rfc3339(v.activated_at) if v.activated_at else None,
            "summary": dict(v.summary),
        }


@dataclass(frozen=True)
class DiffListing:
    """One row of ``policy diff --json``: a sample request under the active and the candidate."""

    row: DiffRow

    def to_dict(self) -> dict[str, JsonValue]:
        """Stable JSON fields (``active`` is null when no version is active)."""
        return {
            "name": self.row.name,
            "changed": self.row.changed,
            "active": self.row.active.to_dict() if self.row.active is not None else None,
            "candidate": self.row.candidate.to_dict(),
        }


def _short(version: str | None) -> str:
    return version[:16] if version else "-"


def _decision_line(decision: Decision) -> str:
    return f"{decision.effect.value.upper()}  " + "; ".join(decision.reasons)


@app.command("propose")
def propose(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="policy dir: model.conf, policy.csv, *.rego..."),  # noqa: B008
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Check a policy directory and store it as a proposed version; print its hash."""
    context = cli_context(ctx)
    officer = _officer(context.acting_as(token))
    version = context.runtime.policy.propose(directory, officer=officer)
    if as_json:
        emit_json(VersionListing(version).to_dict())
        return
    summary = ", ".join(f"{k} {v}" for k, v in version.summary.items())
    typer.echo(f"proposed {version.hash} by {version.proposed_by} ({summary})")


@app.command("test")
def test(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="version hash (or a prefix of 8+ hex digits)"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Run the version's Rego test_ rules and sample requests, report coverage (exit 1 on failure).

    Coverage: every deny rule must fire for some sample request (rules and lines
    never evaluated are listed).
    """
    context = cli_context(ctx)
    officer = _officer(context.acting_as(token))
    report = context.runtime.policy.test(version, officer=officer)
    if as_json:
        emit_json(report.to_dict())
        if not report.passed:
            raise typer.Exit(1)
        return
    for result in report.results:
        mark = "PASS" if result.passed else "FAIL"
        typer.echo(f"{mark}  {result.name}" + (f"  ({result.message})" if result.message else ""))
    if report.coverage is not None:
        for line in _coverage_lines(CoverageReport.from_dict(report.coverage)):
            typer.echo(line)
    passed = sum(1 for r in report.results if r.passed)
    typer.echo(
        f"{passed}/{len(report.results)} passed" + (f"; {report.error}" if report.error else "")
    )
    if not report.passed:
        raise typer.Exit(1)


def _coverage_lines(coverage: CoverageReport) -> list[str]:
    """Like ``opa test --coverage``: totals, then every rule never fired, located."""
    fired, total = coverage.deny_rules
    seen, measured = coverage.lines
    lines = [
        f"coverage: deny rules {fired}/{total}, lines {seen}/{measured} "
        f"({coverage.requests} sample requests reached Rego)"
    ]
    lines += [f"NOT COVERED  {rule.describe()}" for rule in coverage.rules if not rule.fired]
    return lines


@app.command("diff")
def diff(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="candidate version hash (or prefix)"),
    requests: Path | None = typer.Option(  # noqa: B008
        None, "--requests", help="JSON list of sample requests [default: the version's own]"
    ),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Dry run: show, request by request, where the candidate decides differently."""
    context = cli_context(ctx)
    officer = _officer(context.acting_as(token))
    point = context.runtime.policy
    if requests is not None:
        samples = parse_requests_file(requests)
        rows = point.diff(
            version,
            officer=officer,
            requests=[s.request for s in samples],
            names=[s.name for s in samples],
        )
    else:
        rows = point.diff(version, officer=officer)
    if as_json:
        emit_records(DiffListing(row) for row in rows)
        return
    changed = 0
    for row in rows:
        changed += row.changed
        typer.echo(_diff_line(row))
    typer.echo(f"{changed} of {len(rows)} decisions differ from the active version")


def _diff_line(row: DiffRow) -> str:
    now = row.active.effect.value if row.active is not None else "(none active)"
    then = row.candidate.effect.value
    mark = "CHANGED" if row.changed else "same   "
    why = "; ".join(row.candidate.reasons)
    return f"{mark}  {row.name}: {now} -> {then}  ({why})"


@app.command("approve")
def approve(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="version hash (or prefix)"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Approve a tested version (a second security officer, not its proposer)."""
    context = cli_context(ctx)
    officer = _officer(context.acting_as(token))
    result = context.runtime.policy.approve(version, officer=officer)
    if as_json:
        emit_json(VersionListing(result).to_dict())
        return
    typer.echo(f"approved {result.hash} by {officer.name} (proposed by {result.proposed_by})")


@app.command("activate")
def activate(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="version hash (or prefix)"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Activate an approved version; activating an earlier one is a rollback."""
    context = cli_context(ctx)
    officer = _officer(context.acting_as(token))
    result = context.runtime.policy.activate(version, officer=officer)
    if as_json:
        emit_json(VersionListing(result).to_dict())
        return
    typer.echo(f"activated {result.hash} by {officer.name}")


@app.command("list")
def list_(
    ctx: typer.Context, as_json: bool = JSON_OPTION, token: str | None = TOKEN_OPTION
) -> None:
    """List versions: hash, state, proposer, tests, approver, activator, proposed at."""
    context = cli_context(ctx)
    context.acting_as(token)
    listings = [VersionListing(v) for v in context.runtime.policy.versions()]
    if as_json:
        emit_records(listings)
        return
    emit_table(
        Table.build(
            ("version", "state", "proposed by", "tests", "approved by", "activated by", "proposed"),
            (
                (
                    _short(item.version.hash),
                    str(item.version.state),
                    item.version.proposed_by,
                    item.tests,
                    item.version.approved_by or "-",
                    item.version.activated_by or "-",
                    f"{item.version.proposed_at:%Y-%m-%d %H:%M}",
                )
                for item in listings
            ),
        )
    )


@app.command("decide")
def decide(  # noqa: PLR0917 -- typer maps each option to a parameter
    ctx: typer.Context,
    subject: str = typer.Option(..., "--subject", help="identity name of the requester"),
    action: str = typer.Option(..., "--action", help="e.g. compute, raw_export, ledger_read"),
    resource: str = typer.Option(..., "--resource", help="kind:id, e.g. dataset:cell-energy"),
    context_json: str = typer.Option(
        "{}", "--context", help='attributes as JSON, e.g. {"domain": "lithium-battery", ...}'
    ),
    at: str | None = typer.Option(
        None,
        "--at",
        help="RFC 3339 time for a what-if (default: now); decisions the exchange records "
        "always use its own clock",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the decision as JSON"),
    token: str | None = TOKEN_OPTION,
) -> None:
    """Ask the active policy; print ALLOW or DENY with the reasons (exit 3 on deny)."""
    context = cli_context(ctx)
    context.acting_as(token)
    try:
        attributes = parse_json_object(context_json, what="--context")
    except CanonicalJsonError as exc:
        raise PolicyInputError(str(exc)) from exc
    try:
        when = parse_rfc3339(at) if at is not None else None
    except ValueError as exc:
        raise PolicyInputError(f"--at: {exc}") from exc
    try:
        identity = context.runtime.identities.get(subject)
    except IdentityError as exc:
        raise PolicyInputError(f"--subject: {exc}") from exc
    who = Subject(identity.name, identity.role.value, identity.industry)
    decision = context.runtime.policy.decide(who, action, resource, attributes, at=when)
    if as_json:
        emit_json(decision.to_dict(), compact=True)
    else:
        typer.echo(_decision_line(decision))
        typer.echo(f"version {_short(decision.version)}")
    if not decision.allow:
        raise typer.Exit(3)
