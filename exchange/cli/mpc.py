"""``ibx mpc``: privacy compute on the local machine.

* ``ibx mpc he --operation mean --input values.json`` — an HE job: fresh keys
  from the key custodian, each contributor encrypts, the aggregator collects,
  the release guard approves the cohort, the custodian decrypts the sum once
  and destroys the key. Prints the released result.
* ``ibx mpc run --input values.json --stat mean --stat median --ranks`` — an
  MPC job on three local party processes talking TLS (the deployment lives in
  ``<data dir>/mpc``); prints the summary and each contributor's own rank.
* ``ibx mpc psi --left a.txt --right b.txt`` — ECDH-PSI between two lists.
* ``ibx mpc deploy`` — create the party directories, CA and keys.
* ``ibx mpc party ...`` — one compute party process (what ``run`` starts).

Input files for ``he`` and ``run`` are JSON objects mapping a contributor's
name to a number (or, for ``he``, a list of numbers).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import typer

import mpc
from core.clock import utcnow
from exchange.cli._context import cli_context
from mpc.errors import InvalidContributionError

__all__ = ["app"]

app = typer.Typer(help="Privacy compute: HE, MPC and PSI jobs on this machine.")

_INPUT = typer.Option(..., "--input", help="JSON object: contributor -> number or list")


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise typer.BadParameter(f"{path} must hold a non-empty JSON object")
    return data


def _deployment(ctx: typer.Context) -> mpc.MpcDeployment:
    base = cli_context(ctx).settings.data_dir / "mpc"
    if (base / "box_public_keys").is_file():
        return mpc.MpcDeployment.from_dir(base)
    return mpc.MpcDeployment.create(base, now=utcnow())


@app.command(
    "party",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def party(ctx: typer.Context) -> None:
    """Run one compute party (options: --index --parties --job --out [--dir])."""
    raise typer.Exit(mpc.run_party(list(ctx.args)))


@app.command("deploy")
def deploy(
    ctx: typer.Context, parties: int = typer.Option(3, help="number of compute parties")
) -> None:
    """Create the local MPC deployment: CA, party certificates and box keys."""
    base = cli_context(ctx).settings.data_dir / "mpc"
    dep = mpc.MpcDeployment.create(base, parties=parties, now=utcnow())
    typer.echo(f"{dep.parties} parties in {base}")


@app.command("he")
def he(  # noqa: PLR0917 - one parameter per command-line option
    ctx: typer.Context,
    operation: mpc.HeOperation = typer.Option(mpc.HeOperation.MEAN, help="what to compute"),  # noqa: B008
    input_file: Path = _INPUT,
    min_cohort: int = typer.Option(5, help="the policy's minimum cohort"),
    question: str = typer.Option("", help="question key for differencing [default: operation]"),
    epsilon: float | None = typer.Option(
        None, help="add Laplace noise (OpenDP) with this epsilon (sum and mean only)"
    ),
    bound: float = typer.Option(1e6, help="largest magnitude of a value (sets the sensitivity)"),
    budget: float | None = typer.Option(
        None, help="each contributor's total epsilon budget, charged across runs"
    ),
) -> None:
    """Run an HE job over the contributors in --input and print the released values.

    A contributor whose input is refused is reported and left out; the job
    goes on if the cohort stays at or above the minimum.
    """
    runtime = cli_context(ctx).runtime
    data = _load(input_file)
    vectors = {who: v if isinstance(v, list) else [v] for who, v in data.items()}
    length = len(next(iter(vectors.values())))
    if epsilon is not None and operation not in (mpc.HeOperation.SUM, mpc.HeOperation.MEAN):
        raise typer.BadParameter("--epsilon applies to sum and mean")
    job_id = f"he-{uuid.uuid4().hex[:12]}"
    custodian = runtime.key_custodian
    job = custodian.create_job(mpc.HeJobSpec(job_id, operation, length=length, bound=bound))
    dp = None if epsilon is None else mpc.DpPolicy(mpc.DpMechanism.LAPLACE, epsilon)
    try:
        aggregator = mpc.HeAggregator(job)
        encryptor = mpc.HeContributor(job)
        for who, values in vectors.items():
            try:
                aggregator.add(encryptor.encrypt(who, values))
            except InvalidContributionError as exc:
                typer.echo(f"dropped: {exc}", err=True)
        consents = tuple(
            mpc.ConsentTerms(f"cli/{who}", who, epsilon_budget=budget)
            for who in sorted(aggregator.contributors)
        )
        request = mpc.ReleaseRequest(
            job_id,
            "cli",
            question or operation.value,
            mpc.ReleasePolicy(min_cohort=min_cohort, dp=dp),
            consents,
        )
        runtime.release_guard.check_budget(request)
        result = custodian.finish_job(request, aggregator.aggregate())
    finally:
        custodian.end_job(job_id)  # idempotent: destroys the key if finish_job did not
    values = list(result.values)
    if dp is not None:
        # one contributor moves each value by at most 2·bound (over n for a mean)
        per_value = 2 * bound / (result.cohort if operation is mpc.HeOperation.MEAN else 1)
        noisy = runtime.release_guard.add_noise(request, values, sensitivity=per_value * length)
        values = list(noisy)
    typer.echo(
        json.dumps(
            {
                "job_id": job_id,
                "operation": result.operation.value,
                "cohort": result.cohort,
                "values": values,
                "epsilon": epsilon,
            }
        )
    )


@app.command("run")
def run(  # noqa: PLR0917 - one parameter per command-line option
    ctx: typer.Context,
    input_file: Path = _INPUT,
    stat: list[mpc.MpcStatistic] = typer.Option(  # noqa: B008
        [mpc.MpcStatistic.MEAN], "--stat", help="statistic to release (repeatable)"
    ),
    ranks: bool = typer.Option(False, "--ranks", help="give each contributor its own rank"),
    dominance: list[str] = typer.Option(  # noqa: B008
        [], "--dominance", help="n:k rule, e.g. 1:85 (repeatable)"
    ),
    min_cohort: int = typer.Option(3, help="the policy's minimum cohort"),
    question: str = typer.Option("", help="question key for differencing [default: the stats]"),
    deadline: float = typer.Option(120.0, help="seconds before a silent party fails the job"),
) -> None:
    """Run an MPC job on three local party processes and print what each side learns."""
    data = _load(input_file)
    try:
        rules = tuple(
            mpc.DominanceRule(int(r.split(":")[0]), float(r.split(":")[1])) for r in dominance
        )
    except (ValueError, IndexError) as exc:
        raise typer.BadParameter("--dominance takes n:k, e.g. 1:85") from exc
    dep = _deployment(ctx)
    job_id = f"mpc-{uuid.uuid4().hex[:12]}"
    spec = mpc.MpcJobSpec(
        job_id, tuple(stat), percentile_ranks=ranks, dominance=rules, min_cohort=min_cohort
    )
    dealer = mpc.ShareDealer(job_id, dep.box_public_keys, dep.threshold)
    dealt = [dealer.deal(who, value, with_rank_key=ranks) for who, value in data.items()]
    result = mpc.MpcRunner(dep, mpc.RunnerConfig(deadline=deadline)).run(spec, dealt)
    policy = mpc.ReleasePolicy(min_cohort=min_cohort, dominance=rules)
    guard = cli_context(ctx).runtime.release_guard
    guard.check_dominance(policy, result.dominance)
    kept = frozenset(d.contributor for d in dealt) - {who for who, _ in result.dropped}
    topic = question or "+".join(s.value for s in stat)
    guard.approve(mpc.ReleaseRequest(job_id, "cli", topic, policy), kept)
    for who, reason in result.dropped:
        typer.echo(f"dropped {who}: {reason}", err=True)
    summary = {name: list(values) for name, values in result.statistics}
    typer.echo(json.dumps({"job_id": job_id, "cohort": result.cohort, "statistics": summary}))
    dropped = dict(result.dropped)
    for d in dealt:
        if d.rank_key is not None and d.contributor not in dropped:
            pct = d.rank_key.percentile(result.rank_tags)
            typer.echo(f"{d.contributor} sees: {pct:.1f}% of the others are below it")


@app.command("psi")
def psi(
    left: Path = typer.Option(..., help="first enterprise's items, one per line"),  # noqa: B008
    right: Path = typer.Option(..., help="second enterprise's items, one per line"),  # noqa: B008
    intersection: bool = typer.Option(
        False, "--intersection", help="reveal the common items (both consents allow it)"
    ),
) -> None:
    """Private set intersection between two item lists; prints what each side learns."""
    mode = mpc.PsiMode.INTERSECTION if intersection else mpc.PsiMode.CARDINALITY
    session = uuid.uuid4().hex
    a = mpc.PsiParty(session, left.read_text().splitlines(), mode)
    b = mpc.PsiParty(session, right.read_text().splitlines(), mode)
    to_b, to_a = a.blinded(), b.blinded()
    back_to_a, back_to_b = b.reblind(to_b), a.reblind(to_a)
    for name, outcome in (("left", a.finish(back_to_a)), ("right", b.finish(back_to_b))):
        items = "" if outcome.items is None else f": {', '.join(outcome.items)}"
        typer.echo(f"{name} learns overlap size {outcome.size}{items}")
