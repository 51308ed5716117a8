"""``ibx mpc``: engine tools for operators — privacy compute on one machine, outside the pipeline.

These commands take every contributor's plaintext in one file on the
operator's machine, and their release terms from command-line flags: no
policy decision or consent check runs. They exist to exercise and measure
the engines (deployment checks, benchmarks, incident analysis). Computations
on enterprises' data go through the pipeline: ``ibx request submit`` asks the
exchange, which authorizes before use and asks the enterprises' data agents
(``ibx agent``); see ``docs/pipeline.md``.

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
from exchange.cli._progress import Progress
from mpc.errors import InvalidContributionError

__all__ = ["app"]

app = typer.Typer(
    help="Engine tools for operators: HE, MPC, PSI on one machine, no policy or consent check."
)

_INPUT = typer.Option(..., "--input", help="JSON object: contributor -> number or list")


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise typer.BadParameter(f"{path} must hold a non-empty JSON object")
    return data


def _load_pairs(path: Path, what: str) -> list[tuple[str, Any]]:
    """A JSON object as ``(name, value)`` pairs in file order: duplicates stay visible.

    Nested objects become lists of pairs too (``object_pairs_hook=list``);
    arrays stay lists. :class:`mpc.HeInputs` refuses a name given twice.
    """
    try:
        data = json.loads(path.read_text(), object_pairs_hook=list)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, list) or not data or not all(isinstance(p, tuple) for p in data):
        raise typer.BadParameter(f"{path} must hold a non-empty JSON object ({what})")
    return data


def _he_spec(  # noqa: PLR0917 - the job's parts, each from its own option
    job_id: str,
    operation: mpc.HeOperation,
    inputs: mpc.HeInputs,
    bound: float,
    bins: str | None,
    weights: Path | None,
) -> mpc.HeJobSpec:
    """The job spec from the options: bin edges for a histogram, a weights file for weights."""
    if (bins is not None) != (operation is mpc.HeOperation.HISTOGRAM):
        raise typer.BadParameter("--bins is needed by, and only by, --operation histogram")
    if (weights is not None) != (operation is mpc.HeOperation.WEIGHTED_SUM):
        raise typer.BadParameter("--weights is needed by, and only by, --operation weighted_sum")
    try:
        edges = () if bins is None else tuple(float(b) for b in bins.split(","))
        public = () if weights is None else mpc.weights_from_pairs(_load_pairs(weights, "weights"))
        return mpc.HeJobSpec(
            job_id, operation, length=inputs.length, bins=edges, weights=public, bound=bound
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


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


def _subject(dataset: str, fields: str, classification: str) -> mpc.ReleaseSubject:
    try:
        return mpc.ReleaseSubject(dataset, tuple(fields.split(",")), (), classification)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


_DATASET = typer.Option("cli-input", help="dataset the values come from (what the guard tracks)")
_FIELD = typer.Option("value", help="field(s) the values are, comma-separated")
_INDUSTRY = typer.Option("local", help="requester's industry: its sub-brains are one group")
_CLASSIFICATION = typer.Option("internal", help="the data's classification")


@app.command("he")
def he(  # noqa: PLR0917 - one parameter per command-line option
    ctx: typer.Context,
    operation: mpc.HeOperation = typer.Option(mpc.HeOperation.MEAN, help="what to compute"),  # noqa: B008
    input_file: Path = typer.Option(  # noqa: B008
        ...,
        "--input",
        help="JSON object, contributor -> a number or a list of numbers (the same length "
        "for all); for histogram a list of records; for linear_regression "
        '{"x": [[features...], ...], "y": [...]}',
    ),
    bins: str | None = typer.Option(
        None, help="histogram bin edges, comma-separated and increasing, e.g. 0,10,50,100"
    ),
    weights: Path | None = typer.Option(  # noqa: B008
        None, help="weighted_sum: JSON object, contributor -> public weight"
    ),
    min_cohort: int = typer.Option(5, help="the policy's minimum cohort"),
    dataset: str = _DATASET,
    field: str = _FIELD,
    industry: str = _INDUSTRY,
    classification: str = _CLASSIFICATION,
    dominance: list[str] = typer.Option(  # noqa: B008
        [], "--dominance", help="n:k rule the policy applies (HE cannot check it: refused)"
    ),
    epsilon: float | None = typer.Option(
        None, help="add Laplace noise (OpenDP) with this epsilon (sum and mean only)"
    ),
    bound: float = typer.Option(1e6, help="largest magnitude of a value (sets the sensitivity)"),
    budget: float | None = typer.Option(
        None, help="each contributor's total epsilon budget, charged across runs"
    ),
) -> None:
    """Run an HE job over the contributors in --input and print the released values.

    A contributor whose input is refused is left out; the job goes on if the
    cohort stays at or above the minimum. The requester is told how many
    were left out, never who or why (the approval row keeps that).
    """
    runtime = cli_context(ctx).runtime
    inputs = mpc.HeInputs.from_pairs(operation, _load_pairs(input_file, "contributor -> values"))
    subject = _subject(dataset, field, classification)
    policy = mpc.ReleasePolicy(
        min_cohort=min_cohort,
        dominance=_rules(dominance),
        dp=None if epsilon is None else mpc.DpPolicy(mpc.DpMechanism.LAPLACE, epsilon),
    )
    mpc.choose_engine(policy, mpc.Engine.HE)
    if epsilon is not None and operation not in (mpc.HeOperation.SUM, mpc.HeOperation.MEAN):
        raise typer.BadParameter("--epsilon applies to sum and mean")
    job_id = f"he-{uuid.uuid4().hex[:12]}"
    custodian = runtime.key_custodian
    job = custodian.create_job(_he_spec(job_id, operation, inputs, bound, bins, weights))
    left_out: dict[str, str] = {}
    progress = Progress.for_stderr()
    try:
        aggregator = mpc.HeAggregator(job)
        encryptor = mpc.HeContributor(job)
        contributions = list(inputs.contributions)
        with progress.counting("encrypting contributions", len(contributions)) as advance:
            for done, (who, given) in enumerate(contributions, start=1):
                try:
                    aggregator.add(encryptor.encrypt(who, given))
                except InvalidContributionError as exc:
                    left_out[who] = str(exc)
                advance(done, len(contributions))
        consents = tuple(
            mpc.ConsentTerms(f"cli/{who}", who, epsilon_budget=budget)
            for who in sorted(aggregator.contributors)
        )
        request = mpc.ReleaseRequest(
            job_id, "cli", mpc.industry_group(industry), subject, policy, consents
        )
        query = mpc.he_query(subject, job.spec, aggregator.contributors)
        runtime.release_guard.check_budget(request, query)
        with progress.working("release guard and key custodian: decrypting the sum once"):
            result = custodian.finish_job(request, aggregator.aggregate(), left_out=left_out)
    finally:
        custodian.end_job(job_id)  # idempotent: destroys the key if finish_job did not
    if left_out:
        typer.echo(f"left out: {len(left_out)} contributors", err=True)
    values = list(result.values)
    if epsilon is not None:
        # one contributor moves each value by at most 2·bound (over n for a mean)
        per_value = 2 * bound / (result.cohort if operation is mpc.HeOperation.MEAN else 1)
        noisy = runtime.release_guard.add_noise(
            request, query, values, sensitivity=per_value * inputs.length
        )
        values = list(noisy)
    typer.echo(
        json.dumps(
            {
                "job_id": job_id,
                "operation": result.operation.value,
                "cohort": result.cohort,
                "left_out": len(left_out),
                "values": [
                    precision.printed(v)
                    for precision, v in zip(
                        mpc.he_precisions(job.spec, values, cohort=result.cohort),
                        values,
                        strict=True,
                    )
                ],
                "epsilon": epsilon,
            }
        )
    )


def _rules(dominance: list[str]) -> tuple[mpc.DominanceRule, ...]:
    try:
        pairs = [rule.split(":") for rule in dominance]
        return tuple(mpc.DominanceRule(int(n), float(k)) for n, k in pairs)
    except (ValueError, IndexError) as exc:
        raise typer.BadParameter("--dominance takes n:k, e.g. 1:85") from exc


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
    dataset: str = _DATASET,
    field: str = _FIELD,
    industry: str = _INDUSTRY,
    classification: str = _CLASSIFICATION,
    coarsen_step: float | None = typer.Option(
        None, help="release min/max/median/quartiles rounded to this step"
    ),
    exact_order: bool = typer.Option(
        False, "--exact-order", help="the policy allows exact order statistics of this class"
    ),
    epsilon: float | None = typer.Option(
        None,
        help="release min/max/median/quartiles with differential privacy (OpenDP's quantile "
        "mechanism over a public grid), this epsilon per run",
    ),
    candidates: int = typer.Option(33, help="with --epsilon: the grid's number of candidates"),
    grid: str | None = typer.Option(
        None, help="with --epsilon: the grid's range LO:HI (default: -bound:bound)"
    ),
    budget: float | None = typer.Option(
        None, help="with --epsilon: each contributor's total epsilon budget, charged across runs"
    ),
    deadline: float = typer.Option(120.0, help="seconds before a silent party fails the job"),
    bound: float = typer.Option(
        mpc.DEFAULT_MPC_BOUND,
        help="largest magnitude of a value; sets the resolution, bound·1e-18 to bound·1e-17",
    ),
) -> None:
    """Run an MPC job on three local party processes and print what each side learns.

    --input maps each contributor to one number; a name given twice, a value
    that is not a finite number, or one beyond --bound refuses the whole
    input, naming the contributor.

    Min, max, median and quartiles are refused unless ``--epsilon`` (OpenDP's
    quantile mechanism: a grid candidate, never the exact value),
    ``--coarsen-step`` or ``--exact-order`` says how the policy lets them out.
    """
    rules = _rules(dominance)
    subject = _subject(dataset, field, classification)
    policy = _run_policy(
        min_cohort, rules, classification, coarsen_step, exact_order, epsilon, candidates, grid
    )
    pairs = _load_pairs(input_file, "contributor -> number")
    job_id = f"mpc-{uuid.uuid4().hex[:12]}"
    try:
        order_grid = () if policy.order_dp is None else policy.order_dp.grid(bound)
        spec = mpc.MpcJobSpec(
            job_id,
            tuple(stat),
            percentile_ranks=ranks,
            dominance=rules,
            min_cohort=min_cohort,
            bound=bound,
            order_candidates=order_grid,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    dep = _deployment(ctx)
    names = sorted({name for name, _ in pairs if isinstance(name, str)})
    consents = tuple(mpc.ConsentTerms(f"cli/{who}", who, epsilon_budget=budget) for who in names)
    request = mpc.ReleaseRequest(
        job_id, "cli", mpc.industry_group(industry), subject, policy, consents
    )
    guard = cli_context(ctx).runtime.release_guard
    # before any share is dealt: a refused exact order statistic never reaches the exchange
    guard.check_order_statistics(request, mpc.mpc_statistics(spec))
    progress = Progress.for_stderr()
    progress.step(f"dealing shares of {len(pairs)} contributors to {dep.parties} parties")
    dealer = mpc.ShareDealer.for_job(spec, dep.box_public_keys, dep.threshold)
    dealt = dealer.deal_all(pairs, with_rank_keys=ranks)
    guard.check_budget(request, mpc.mpc_query(subject, spec, names), bound=bound)
    stats = ", ".join(s.value for s in spec.statistics)
    with progress.working(f"{dep.parties} parties computing {stats} over mutual TLS"):
        result = mpc.MpcRunner(dep, mpc.RunnerConfig(deadline=deadline)).run(spec, dealt)
    guard.check_dominance(policy, result.dominance)
    left_out = dict(result.dropped)
    kept = frozenset(d.contributor for d in dealt) - set(left_out)
    query = mpc.mpc_query(subject, spec, kept)
    guard.approve(request, query, left_out=left_out)
    if left_out:
        typer.echo(f"left out: {len(left_out)} contributors", err=True)
    summary: dict[str, list[float]] = {}
    for name, values in result.statistics:
        ordered = mpc.MpcStatistic(name) in _ORDER_STATS
        summary[name] = list(guard.release_order_statistics(request, values) if ordered else values)
    if result.order_counts is not None:
        released = guard.release_dp_order_statistics(
            request, query, result.order_counts, bound=bound
        )
        order_names = [s.value for s in spec.statistics if s in _ORDER_STATS]
        summary.update(zip(order_names, (list(v) for v in released), strict=True))
    exact_order = policy.order_statistics is mpc.OrderRelease.EXACT
    printed = {
        name: [
            mpc.mpc_precision(
                mpc.MpcStatistic(name),
                v,
                bound=bound,
                cohort=result.cohort,
                exact_order=exact_order,
            ).printed(v)
            for v in values
        ]
        for name, values in summary.items()
    }
    typer.echo(
        json.dumps(
            {
                "job_id": job_id,
                "cohort": result.cohort,
                "left_out": len(left_out),
                "statistics": printed,
                "epsilon": epsilon,
            }
        )
    )
    for d in dealt:
        if d.rank_key is not None and d.contributor not in left_out:
            pct = d.rank_key.percentile(result.rank_tags)
            typer.echo(f"{d.contributor} sees: {pct:.1f}% of the others are below it")


def _run_policy(  # noqa: PLR0917 - the policy's parts, each from its own option
    min_cohort: int,
    rules: tuple[mpc.DominanceRule, ...],
    classification: str,
    coarsen_step: float | None,
    exact_order: bool,
    epsilon: float | None,
    candidates: int,
    grid: str | None,
) -> mpc.ReleasePolicy:
    """The release policy ``ibx mpc run``'s options describe (one way for order statistics)."""
    if sum([epsilon is not None, coarsen_step is not None, exact_order]) > 1:
        raise typer.BadParameter("choose one of --epsilon, --coarsen-step and --exact-order")
    if grid is not None and epsilon is None:
        raise typer.BadParameter("--grid applies to --epsilon")
    order = mpc.OrderRelease.REFUSE
    if epsilon is not None:
        order = mpc.OrderRelease.DP
    elif coarsen_step is not None:
        order = mpc.OrderRelease.COARSEN
    elif exact_order:
        order = mpc.OrderRelease.EXACT
    try:
        ends = (None, None) if grid is None else tuple(float(v) for v in grid.split(":"))
        if len(ends) != 2:
            raise ValueError("--grid takes LO:HI, e.g. 0:1000")
        return mpc.ReleasePolicy(
            min_cohort=min_cohort,
            dominance=rules,
            order_statistics=order,
            coarsen_step=coarsen_step,
            exact_order_classifications=frozenset({classification}) if exact_order else frozenset(),
            order_dp=None
            if epsilon is None
            else mpc.DpOrderPolicy(epsilon, candidates, lower=ends[0], upper=ends[1]),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


_ORDER_STATS = frozenset(
    {
        mpc.MpcStatistic.MIN,
        mpc.MpcStatistic.MAX,
        mpc.MpcStatistic.MEDIAN,
        mpc.MpcStatistic.QUARTILES,
    }
)


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
    progress = Progress.for_stderr()
    a = mpc.PsiParty(session, left.read_text().splitlines(), mode)
    b = mpc.PsiParty(session, right.read_text().splitlines(), mode)
    with progress.working("each side blinds its items (ECDH)"):
        to_b, to_a = a.blinded(), b.blinded()
    with progress.working("each side re-blinds the other's items"):
        back_to_a, back_to_b = b.reblind(to_b), a.reblind(to_a)
    for name, outcome in (("left", a.finish(back_to_a)), ("right", b.finish(back_to_b))):
        items = "" if outcome.items is None else f": {', '.join(outcome.items)}"
        typer.echo(f"{name} learns overlap size {outcome.size}{items}")
