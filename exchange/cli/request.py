"""``ibx request``: a sub-brain asks for a computation and reads its result.

Every command goes through the exchange's API (``POST /v1/requests``,
``/v1/jobs``, ``/v1/results``; see docs/pipeline.md): on the local data dir,
or at ``--exchange URL``. The command only shapes the request and checks that
it is well formed (:class:`exchange.pipeline.ComputeRequest`, the same check
the exchange makes); policy, consent, cohorts and the release step are the
exchange's, never this module's.

``submit`` sends an ``Idempotency-Key`` (a fresh one, printed on standard
error before anything is sent, unless ``--idempotency-key`` names one): a
retry with the same key and the same request gets the same job, never a
second one.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import typer

from consent import Operation, Purpose
from core.clock import parse_rfc3339, utcnow
from exchange.cli._api_client import user_client
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
)
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_table
from exchange.error_table import ExitCode, RemoteRefusalError
from exchange.pipeline.request import (
    ComputeRequest,
    EngineName,
    InvalidRequestError,
    Parameters,
    Reduce,
)

if TYPE_CHECKING:
    from exchange.client import ExchangeClient

__all__ = ["TERMINAL_STATES", "JobView", "app"]

app = typer.Typer(
    help="Compute requests (sub-brains): submit, follow, read results, cancel.",
    no_args_is_help=True,
)

TERMINAL_STATES = frozenset({"released", "refused", "failed", "cancelled"})
"""Job states that never change (docs/pipeline.md, Jobs)."""

IN_PROGRESS_WAIT_SECONDS = 10.0
"""How long a submission retried with its key waits for the first one to be answered."""

WAIT_GRACE_SECONDS = 15.0
"""How long ``--wait`` keeps polling past a job's deadline (the exchange ends it by then)."""

_JOB_ARGUMENT = typer.Argument(..., help="the job id (job_…)")
_PURPOSE_OPTION = typer.Option(None, "--purpose", help="what the result is for")
_OPERATION_OPTION = typer.Option(None, "--operation", help="what to compute")
_REDUCE_OPTION = typer.Option(
    None, "--reduce", help="none, sum, mean or last [default: none on HE, mean on MPC]"
)
_WAIT_OPTION = typer.Option(
    False, "--wait", help="poll until the job ends (at most until its deadline), then print"
)


@dataclass(frozen=True)
class JobView:
    """The exchange's view of one job (``GET /v1/jobs/{id}``), as the CLI prints it."""

    job_id: str
    state: str
    reason: str | None
    requester: str
    operation: str
    engine: str
    created_at: str
    deadline: str
    updated_at: str
    participants: _Members
    contributed: _Members
    refused: _Members
    min_cohort: int | None
    decision_index: int | None
    result_index: int | None
    raw: Mapping[str, Any]
    """The body as the exchange sent it (printed as is with ``--json``)."""

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> JobView:
        """Read a job view; members the contract does not name are kept in ``raw`` only.

        Raises:
            ValueError: a member the CLI needs is missing.
        """
        try:
            return cls(
                job_id=str(body["job_id"]),
                state=str(body["state"]),
                reason=body.get("reason"),
                requester=str(body.get("requester", "")),
                operation=str(body.get("operation", "")),
                engine=str(body.get("engine", "")),
                created_at=str(body.get("created_at", "")),
                deadline=str(body.get("deadline", "")),
                updated_at=str(body.get("updated_at", "")),
                participants=_Members.read(body.get("participants")),
                contributed=_Members.read(body.get("contributed")),
                refused=_Members.read(body.get("refused")),
                min_cohort=body.get("min_cohort"),
                decision_index=body.get("decision_index"),
                result_index=body.get("result_index"),
                raw=dict(body),
            )
        except KeyError as exc:
            raise ValueError(f"the exchange's job view has no {exc.args[0]!r}") from exc

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (released, refused, failed or cancelled)."""
        return self.state in TERMINAL_STATES

    def lines(self) -> Iterator[str]:
        """The view as readable ``name  value`` lines."""
        yield from _aligned(
            (
                ("job", self.job_id),
                ("state", self.state + (f" ({self.reason})" if self.reason else "")),
                ("requester", self.requester),
                ("operation", f"{self.operation} on {self.engine}"),
                ("participants", str(self.participants)),
                ("contributed", str(self.contributed)),
                ("refused", str(self.refused)),
                ("min cohort", _or_dash(self.min_cohort)),
                ("decision", _ledger_index(self.decision_index)),
                ("result", _ledger_index(self.result_index)),
                ("created", self.created_at),
                ("deadline", self.deadline),
            )
        )


@dataclass(frozen=True)
class _Members:
    """How many enterprises (participants, contributed, refused), and their names if shown.

    The exchange may show a requester only counts (who refused is the enterprises'
    business) or the names; the CLI prints what it is given.
    """

    count: int
    names: tuple[str, ...] = ()

    @classmethod
    def read(cls, value: Any) -> _Members:
        if isinstance(value, bool):
            return cls(0)
        if isinstance(value, int):
            return cls(value)
        if not isinstance(value, list):
            return cls(0)
        names = tuple(
            str(item.get("enterprise") or item.get("name") or item)
            if isinstance(item, Mapping)
            else str(item)
            for item in value
        )
        return cls(len(names), names)

    def __str__(self) -> str:
        return f"{self.count}: {', '.join(self.names)}" if self.names else str(self.count)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _ledger_index(index: int | None) -> str:
    return "-" if index is None else f"ledger entry {index}"


def _aligned(rows: Sequence[tuple[str, str]]) -> Iterator[str]:
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        yield f"{name:<{width}}{value}"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _result_lines(body: Mapping[str, Any]) -> Iterator[str]:
    """A result (requester) or a share (participant) as readable lines."""
    rows: list[tuple[str, str]] = [("job", str(body.get("job_id", "")))]
    if "share" in body:  # a participant's own share of the result
        rows.append(("enterprise", str(body.get("enterprise", ""))))
        share = body.get("share")
        if isinstance(share, Mapping):
            for name, value in share.items():
                shown = value if not isinstance(value, list) else f"{len(value)} items"
                rows.append((str(name), str(shown)))
        yield from _aligned(rows)
        return
    rows.append(("operation", f"{body.get('operation', '')} on {body.get('engine', '')}"))
    rows.append(("cohort", _or_dash(body.get("cohort"))))
    values = body.get("values")
    if isinstance(values, Mapping):
        for name, numbers in values.items():
            shown = numbers if isinstance(numbers, list) else [numbers]
            rows.append((str(name), ", ".join(_number(n) for n in shown)))
    rows.append(("epsilon", _or_dash(body.get("epsilon"))))
    rows.append(("sha256", str(body.get("result_sha256", "-"))))
    rows.append(("result", _ledger_index(body.get("result_index"))))
    yield from _aligned(rows)


def _job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{suffix}"


def _result_path(job_id: str) -> str:
    return f"/v1/results/{quote(job_id, safe='')}"


def _bins(text: str | None) -> tuple[float, ...]:
    """``--bins 0,10,50`` as numbers.

    Raises:
        InvalidRequestError: an edge that is not a number.
    """
    if not text:
        return ()
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise InvalidRequestError(
            f"--bins must be numbers separated by commas, not {text!r}"
        ) from exc


def _request_from_file(path: Path) -> ComputeRequest:
    """A :class:`ComputeRequest` from a JSON file (``-``: standard input).

    Raises:
        InvalidRequestError: not JSON, or not a valid compute request.
        OSError: the file cannot be read.
    """
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{path}: not JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(obj, dict):
        raise InvalidRequestError(f"{path}: a compute request is a JSON object")
    return ComputeRequest.from_dict(obj)


def _usage(message: str) -> NoReturn:
    typer.echo(f"ibx: invalid input: {message}", err=True)
    raise typer.Exit(ExitCode.USAGE)


def _not_released(view: JobView) -> NoReturn:
    """One line naming the job's state; exit 3 when the release step refused it, else 1."""
    why = f": {view.reason}" if view.reason else ""
    typer.echo(f"ibx: not released: job {view.job_id} is {view.state}{why}", err=True)
    raise typer.Exit(ExitCode.DENIED if view.state == "refused" else ExitCode.ERROR)


def _wait(client: ExchangeClient, view: JobView) -> JobView:
    """Poll the job until it ends, at most until its deadline (plus a grace); then its view."""
    try:
        deadline = parse_rfc3339(view.deadline)
        budget = (deadline - utcnow()).total_seconds() + WAIT_GRACE_SECONDS
    except ValueError:
        budget = 3600 + WAIT_GRACE_SECONDS
    stop = time.monotonic() + max(budget, 1.0)
    pause = 0.2
    while not view.terminal:
        if time.monotonic() >= stop:
            typer.echo(
                f"ibx: job {view.job_id} is still {view.state} after its deadline "
                f"{view.deadline}: ask the exchange's operator",
                err=True,
            )
            raise typer.Exit(ExitCode.ERROR)
        time.sleep(pause)
        pause = min(pause * 1.5, 2.0)
        view = JobView.from_dict(client.get(_job_path(view.job_id)))
    return view


def _print_result(client: ExchangeClient, job_id: str, *, as_json: bool) -> None:
    """Read and print the job's result; a job not released exits non-zero naming its state."""
    try:
        body = client.get(_result_path(job_id))
    except RemoteRefusalError as exc:
        if exc.status != 409:
            raise
        try:
            view = JobView.from_dict(client.get(_job_path(job_id)))
        except RemoteRefusalError:
            raise exc from None
        _not_released(view)
    if as_json:
        emit_json(body)
        return
    for line in _result_lines(body):
        typer.echo(line)


def _post_request(client: ExchangeClient, request: ComputeRequest, key: str) -> Any:
    """``POST /v1/requests`` with the key; while the exchange still works on the same key's
    first request (409 ``request in progress``), ask again for a few seconds.

    Raises:
        RemoteRefusalError: refused, or the first request still runs after the wait.
    """
    stop = time.monotonic() + IN_PROGRESS_WAIT_SECONDS
    while True:
        try:
            return client.post("/v1/requests", request.to_dict(), headers={"Idempotency-Key": key})
        except RemoteRefusalError as exc:
            if exc.status != 409 or time.monotonic() >= stop:
                raise
        time.sleep(0.2)


def _finish(client: ExchangeClient, view: JobView, *, wait: bool, as_json: bool) -> None:
    """Print the view; with ``wait``, follow the job to its end and print its result."""
    if not wait:
        if as_json:
            emit_json(dict(view.raw))
        else:
            for line in view.lines():
                typer.echo(line)
        return
    view = _wait(client, view)
    if view.state != "released":
        if as_json:
            emit_json(dict(view.raw))
        _not_released(view)
    _print_result(client, view.job_id, as_json=as_json)


@app.command("submit")
def submit(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    purpose: Purpose | None = _PURPOSE_OPTION,
    operation: Operation | None = _OPERATION_OPTION,
    field: list[str] = typer.Option(  # noqa: B008
        [], "--field", help="a field the operation reads (repeatable; regression: target first)"
    ),
    dataset: list[str] = typer.Option(  # noqa: B008
        [], "--dataset", help="a dataset id (repeatable); or --industry"
    ),
    industry: str | None = typer.Option(
        None, "--industry", help="every dataset of this industry's enterprises with the fields"
    ),
    engine: EngineName = typer.Option(  # noqa: B008
        EngineName.AUTO, "--engine", help="he, mpc, psi or auto (from the operation and policy)"
    ),
    length: int = typer.Option(1, "--length", help="HE: values per enterprise and field"),
    reduce: Reduce | None = _REDUCE_OPTION,
    bound: float = typer.Option(1e6, "--bound", help="largest magnitude of a value"),
    bins: str | None = typer.Option(None, "--bins", help="histogram edges, e.g. 0,10,50"),
    epsilon: float | None = typer.Option(None, "--epsilon", help="differential privacy"),
    deadline: int = typer.Option(
        120, "--deadline", help="seconds until the job is released, refused or failed (≤ 3600)"
    ),
    request_file: Path | None = typer.Option(  # noqa: B008
        None, "--request", help="a ComputeRequest JSON file (- for stdin) instead of the options"
    ),
    idempotency_key: str | None = typer.Option(
        None,
        "--idempotency-key",
        help="retry a submission with the key it printed [default: a fresh key]",
    ),
    wait: bool = _WAIT_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Ask for a computation; prints the job (with --wait, its result)."""
    shaped = (purpose, operation, industry, bins, epsilon, reduce)
    if request_file is not None:
        if any(v is not None for v in shaped) or field or dataset:
            _usage("--request FILE takes the whole request: give no other request option")
        try:
            request = _request_from_file(request_file)
        except InvalidRequestError as exc:
            _usage(str(exc))
    else:
        if purpose is None or operation is None or not field:
            _usage("--purpose, --operation and at least one --field are needed (or --request)")
        try:
            request = ComputeRequest(
                purpose=purpose,
                operation=operation,
                fields=tuple(field),
                datasets=tuple(dataset),
                industry=industry,
                engine=engine,
                parameters=Parameters(
                    length=length,
                    reduce=reduce,
                    bound=bound,
                    bins=_bins(bins),
                    epsilon=epsilon,
                    deadline_seconds=deadline,
                ),
            )
        except InvalidRequestError as exc:
            _usage(str(exc))
    key = idempotency_key or secrets.token_urlsafe(18)
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        if idempotency_key is None:  # before sending: a lost answer is retried with it
            typer.echo(f"idempotency key {key} (retry with --idempotency-key {key})", err=True)
        view = JobView.from_dict(_post_request(client, request, key))
        _finish(client, view, wait=wait, as_json=as_json)


@app.command("status")
def status(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    job_id: str = _JOB_ARGUMENT,
    wait: bool = _WAIT_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Show a job: state, participants, contributions, ledger entries (with --wait, its result)."""
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        view = JobView.from_dict(client.get(_job_path(job_id)))
        _finish(client, view, wait=wait, as_json=as_json)


@app.command("result")
def result(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    job_id: str = _JOB_ARGUMENT,
    wait: bool = _WAIT_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Print a released job's result (a participant: its own share); else name its state."""
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        if wait:
            view = _wait(client, JobView.from_dict(client.get(_job_path(job_id))))
            if view.state != "released":
                _not_released(view)
        _print_result(client, job_id, as_json=as_json)


@app.command("cancel")
def cancel(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    job_id: str = _JOB_ARGUMENT,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Cancel your job (a job that has ended stays as it is: exit 1)."""
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        view = JobView.from_dict(client.post(_job_path(job_id, "/cancel")))
    if as_json:
        emit_json(dict(view.raw))
        return
    typer.echo(f"cancelled {view.job_id} ({view.state})")


@app.command("list")
def list_(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """List jobs (yours; an auditor's: all): id, state, operation, engine, cohort, created."""
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        views = [JobView.from_dict(item) for item in client.pages("/v1/jobs")]
    if as_json:
        emit_json([dict(v.raw) for v in views])
        return
    emit_table(
        Table.build(
            ("job", "state", "operation", "engine", "participants", "created"),
            (
                (v.job_id, v.state, v.operation, v.engine, str(v.participants.count), v.created_at)
                for v in views
            ),
        )
    )
