"""``ibx policy``: propose, test, diff, approve, activate, list, show and decide.

Every command acts as the identity of ``--token``/``IBX_TOKEN`` through the
exchange's API: on the local data dir in-process, or with ``--exchange URL``
over HTTPS (administrators add ``--client-cert``). Who may call which is the
active policy's decision (by default only security officers manage policy and
decide; auditors read versions); the domain rules stay in :mod:`policies`
(the proposer of a version neither approves nor activates it, and no version
may lock the officers out). Output and exit codes are the same in both modes.

``propose``, ``test``, ``approve`` and ``activate`` take ``--key KEYFILE``, the
officer's own Ed25519 key file (``ibx identity keygen``; the format of ``ibx
consent keygen``): each step is signed here as a duty (``policy.<step>`` on the
full version hash, for the exchange's ledger origin) and the exchange verifies
it against the key its ledger records for the officer. A refused duty exits 3.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import typer

from core.canonical import JsonValue, parse_json_object
from core.clock import format_rfc3339, parse_rfc3339
from core.duty import SignedDuty
from core.errors import CanonicalJsonError, IbxError
from exchange.cli._api_client import user_client
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
    Remote,
)
from exchange.cli._duties import sign_as_caller
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_records, emit_table
from exchange.client import ExchangeClient
from exchange.schemas.policies import (
    DecisionPublic,
    DiffPublic,
    DiffRowPublic,
    PolicyVersionPublic,
    TestReportPublic,
)
from policies import (
    CoverageReport,
    PolicyInputError,
    PolicySource,
    parse_requests_file,
)

__all__ = ["app"]

app = typer.Typer(help="The policy decision point: four-eyes policy changes and decisions.")


class ProposalMismatchError(IbxError):
    """The exchange stored a version whose hash is not that of the pack read here."""

    title = "proposal mismatch"


def _client(ctx: typer.Context, token: str | None, remote: Remote) -> ExchangeClient:
    return user_client(
        ctx,
        token,
        exchange=remote.exchange,
        ca_bundle=remote.ca_bundle,
        client_cert=remote.client_cert,
        client_key=remote.client_key,
    )


KEY_OPTION: Path = typer.Option(
    ...,
    "--key",
    help="your officer key file (Ed25519, mode 0600): the step is signed with it here",
)


def _sign_step(client: ExchangeClient, key_file: Path, step: str, version: str) -> SignedDuty:
    """The caller's signed duty for ``step`` on ``version`` (a full hash), for the
    exchange's origin.

    Raises:
        ConsentKeyError: the key file is missing, readable by others, or malformed.
        RemoteRefusalError: the exchange refused to say who the caller is.
        DutyError: the exchange did not name the caller or its origin.
    """
    return sign_as_caller(client, key_file, f"policy.{step}", version, {})


def _signed_step(client: ExchangeClient, key_file: Path, step: str, version: str) -> JsonValue:
    """Resolve ``version`` to its full hash, sign ``step`` on it and send it."""
    full = client.get(f"/v1/policies/{_ref(version)}").get("hash")
    if not isinstance(full, str):
        raise ProposalMismatchError("the exchange did not name the version's hash")
    duty = _sign_step(client, key_file, step, full)
    answer: JsonValue = client.post(f"/v1/policies/{_ref(full)}/{step}", {"duty": duty.to_dict()})
    return answer


def _ref(version: str) -> str:
    """The path segment of a version reference (the exchange checks what it names)."""
    return quote(version.strip().lower(), safe="")


def _short(version: str | None) -> str:
    return version[:16] if version else "-"


def _decision_line(decision: DecisionPublic) -> str:
    return f"{decision.effect.upper()}  " + "; ".join(decision.reasons)


@app.command("propose")
def propose(  # noqa: PLR0917 -- typer maps each option to a parameter
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="policy dir: model.conf, policy.csv, *.rego..."),  # noqa: B008
    key_file: Path = KEY_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Check a policy directory, send it, and have it stored as a proposed version; print its hash.

    The directory is checked here first (the same static checks) and again in
    full by the exchange, its Rego in the exchange's sandbox. The proposal is
    signed with --key (``policy.propose`` on the pack's version hash).
    """
    source = PolicySource.from_dir(directory)
    with _client(ctx, token, Remote(exchange, ca_bundle, client_cert, client_key)) as client:
        duty = _sign_step(client, key_file, "propose", source.hash)
        answer = client.post("/v1/policies", {**source.to_dict(), "duty": duty.to_dict()})
    version = PolicyVersionPublic.model_validate(answer)
    if version.hash != source.hash:
        raise ProposalMismatchError(
            f"the exchange stored version {version.hash[:12]}, not {source.hash[:12]} as read "
            f"from {directory}"
        )
    if as_json:
        emit_json(version.to_dict())
        return
    summary = ", ".join(f"{k} {v}" for k, v in version.summary.items())
    typer.echo(f"proposed {version.hash} by {version.proposed_by} ({summary})")


@app.command("test")
def test(  # noqa: PLR0917 -- typer maps each option to a parameter
    ctx: typer.Context,
    version: str = typer.Argument(..., help="version hash (or a prefix of 8+ hex digits)"),
    key_file: Path = KEY_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Run the version's Rego test_ rules and sample requests, report coverage (exit 1 on failure).

    Coverage: every deny rule must fire for some sample request (rules and lines
    never evaluated are listed).
    """
    with _client(ctx, token, Remote(exchange, ca_bundle, client_cert, client_key)) as client:
        answer = _signed_step(client, key_file, "test", version)
    report = TestReportPublic.model_validate(answer)
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
def diff(  # noqa: PLR0917 -- typer maps each option to a parameter
    ctx: typer.Context,
    version: str = typer.Argument(..., help="candidate version hash (or prefix)"),
    requests: Path | None = typer.Option(  # noqa: B008
        None, "--requests", help="JSON list of sample requests [default: the version's own]"
    ),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Dry run: show, request by request, where the candidate decides differently."""
    body: dict[str, JsonValue] = {}
    if requests is not None:
        body["requests"] = [sample.to_dict() for sample in parse_requests_file(requests)]
    with _client(ctx, token, Remote(exchange, ca_bundle, client_cert, client_key)) as client:
        answer = client.post(f"/v1/policies/{_ref(version)}/diff", body)
    rows = DiffPublic.model_validate(answer).rows
    if as_json:
        emit_records(rows)
        return
    changed = 0
    for row in rows:
        changed += row.changed
        typer.echo(_diff_line(row))
    typer.echo(f"{changed} of {len(rows)} decisions differ from the active version")


def _diff_line(row: DiffRowPublic) -> str:
    now = row.active.effect if row.active is not None else "(none active)"
    then = row.candidate.effect
    mark = "CHANGED" if row.changed else "same   "
    why = "; ".join(row.candidate.reasons)
    return f"{mark}  {row.name}: {now} -> {then}  ({why})"


@app.command("approve")
def approve(  # noqa: PLR0917 -- typer maps each option to a parameter
    ctx: typer.Context,
    version: str = typer.Argument(..., help="version hash (or prefix)"),
    key_file: Path = KEY_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Approve a tested version (a second security officer, not its proposer), signed with --key."""
    with _client(ctx, token, Remote(exchange, ca_bundle, client_cert, client_key)) as client:
        answer = _signed_step(client, key_file, "approve", version)
    result = PolicyVersionPublic.model_validate(answer)
    if as_json:
        emit_json(result.to_dict())
        return
    typer.echo(f"approved {result.hash} by {result.approved_by} (proposed by {result.proposed_by})")


@app.command("activate")
def activate(  # noqa: PLR0917 -- typer maps each option to a parameter
    ctx: typer.Context,
    version: str = typer.Argument(..., help="version hash (or prefix)"),
    key_file: Path = KEY_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Activate an approved version (a rollback: an earlier one), signed with --key."""
    with _client(ctx, token, Remote(exchange, ca_bundle, client_cert, client_key)) as client:
        answer = _signed_step(client, key_file, "activate", version)
    result = PolicyVersionPublic.model_validate(answer)
    if as_json:
        emit_json(result.to_dict())
        return
    typer.echo(f"activated {result.hash} by {result.activated_by}")


def _version_table(listings: Iterable[PolicyVersionPublic]) -> Table:
    return Table.build(
        ("version", "state", "proposed by", "tests", "approved by", "activated by", "proposed"),
        (
            (
                _short(item.hash),
                item.state,
                item.proposed_by,
                item.tests,
                item.approved_by or "-",
                item.activated_by or "-",
                f"{parse_rfc3339(item.proposed_at):%Y-%m-%d %H:%M}",
            )
            for item in listings
        ),
    )


@app.command("list")
def list_(  # noqa: PLR0917 -- typer maps each option to a parameter
    ctx: typer.Context,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """List versions: hash, state, proposer, tests, approver, activator, proposed at."""
    with _client(ctx, token, Remote(exchange, ca_bundle, client_cert, client_key)) as client:
        listings = [PolicyVersionPublic.model_validate(v) for v in client.pages("/v1/policies")]
    if as_json:
        emit_records(listings)
        return
    emit_table(_version_table(listings))


@app.command("show")
def show(  # noqa: PLR0917 -- typer maps each option to a parameter
    ctx: typer.Context,
    version: str = typer.Argument(..., help="version hash (or a prefix of 8+ hex digits)"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Show one version: the same fields as ``list``, the full hash."""
    with _client(ctx, token, Remote(exchange, ca_bundle, client_cert, client_key)) as client:
        answer = client.get(f"/v1/policies/{_ref(version)}")
    item = PolicyVersionPublic.model_validate(answer)
    if as_json:
        emit_json(item.to_dict())
        return
    summary = ", ".join(f"{k} {v}" for k, v in item.summary.items())
    for label, value in (
        ("version", item.hash),
        ("state", item.state),
        ("proposed", f"{item.proposed_at} by {item.proposed_by} ({summary})"),
        ("tests", item.tests + (f" (by {item.tested_by})" if item.tested_by else "")),
        ("approved by", item.approved_by or "-"),
        ("activated", f"{item.activated_at} by {item.activated_by}" if item.activated_by else "-"),
    ):
        typer.echo(f"{label}\t{value}")


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
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Ask the active policy; print ALLOW or DENY with the reasons (exit 3 on deny)."""
    try:
        attributes = parse_json_object(context_json, what="--context")
    except CanonicalJsonError as exc:
        raise PolicyInputError(str(exc)) from exc
    try:
        when = parse_rfc3339(at) if at is not None else None
    except ValueError as exc:
        raise PolicyInputError(f"--at: {exc}") from exc
    body: dict[str, JsonValue] = {
        "subject": subject,
        "action": action,
        "resource": resource,
        "context": attributes,
        "at": format_rfc3339(when) if when is not None else None,
    }
    with _client(ctx, token, Remote(exchange, ca_bundle, client_cert, client_key)) as client:
        answer = client.post("/v1/decisions", body)
    decision = DecisionPublic.model_validate(answer)
    if as_json:
        emit_json(decision.to_dict(), compact=True)
    else:
        typer.echo(_decision_line(decision))
        typer.echo(f"version {_short(decision.version)}")
    if not decision.allow:
        raise typer.Exit(3)
