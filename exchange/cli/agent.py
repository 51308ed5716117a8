"""``ibx agent``: an enterprise's data agent, run on the enterprise's own machine.

Thin: the options become an :class:`exchange.agent.DataAgent` (see
``exchange/agent/`` and docs/pipeline.md, "The data agent's protocol").
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from exchange.cli._api_client import user_client
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
    cli_context,
)

if TYPE_CHECKING:
    from exchange.agent import DataAgent
    from exchange.agent.verify import WitnessQuorum

__all__ = ["agent"]


def agent(
    ctx: typer.Context,
    *,
    enterprise: str = typer.Option(..., "--enterprise", help="the enterprise this agent serves"),
    key: Path = typer.Option(  # noqa: B008
        ..., "--key", help="the enterprise key file (ibx consent keygen); signs every answer"
    ),
    source: str = typer.Option(
        ...,
        "--source",
        help="a CSV file, an SQLAlchemy URL (with --table), or 'edge' for the sealed edge readings",
    ),
    ledger_vkey: Path = typer.Option(  # noqa: B008
        ...,
        "--ledger-vkey",
        help="file holding the ledger's verifier key (C2SP vkey), obtained out of band: "
        "every checkpoint must be signed by it",
    ),
    table: str | None = typer.Option(None, "--table", help="the table of an SQL source"),
    column: list[str] = typer.Option(  # noqa: B008
        [], "--column", help="FIELD=COLUMN: read a dataset field from another column (repeatable)"
    ),
    state: Path | None = typer.Option(  # noqa: B008
        None,
        "--state",
        help="state dir: journal, last checkpoint, rank tags [default: ./ibx-agent-ENTERPRISE]",
        show_default=False,
    ),
    edge_ca: Path | None = typer.Option(  # noqa: B008
        None,
        "--edge-ca",
        help="with --source edge: the pinned CA bundle device signatures must chain to "
        "[default: --ca-bundle]",
        show_default=False,
    ),
    witness: list[str] = typer.Option(  # noqa: B008
        [],
        "--witness",
        help="a witness's cosignature verifier key (C2SP vkey, type 0x04), or a file holding "
        "it (repeatable)",
    ),
    witness_quorum: int = typer.Option(
        0,
        "--witness-quorum",
        min=0,
        help="trust only checkpoints cosigned by this many of the --witness keys (0: off)",
    ),
    once: bool = typer.Option(False, "--once", help="handle the tasks listed now, then exit"),
    poll: int = typer.Option(
        20, "--poll", min=0, max=30, help="seconds the exchange may hold each long poll"
    ),
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Run an enterprise's data agent: verify each task on the ledger, then contribute.

    Before it reads any data for a task, the agent verifies the ledger's
    checkpoint with --ledger-vkey and its consistency with the checkpoint it
    kept, the decision's inclusion proof, and its own signed consent; any
    failure is a refusal signed with --key and sent back with the reason.
    With --witness-quorum K, only a checkpoint cosigned by K of the --witness
    keys is trusted (the newest witnessed one when the latest lacks them);
    a task beyond every such checkpoint waits (one line, nothing read) until
    a witness cosigns one covering it, or is dropped at its deadline.
    One line per event; never data values. A ledger inconsistent with the
    kept checkpoint raises an alarm (stderr, <state>/ledger-alarm, evidence
    kept): every task is refused until an operator removes the alarm file.
    Exit 0 when stopped by SIGTERM/SIGINT; --once exits 5 while the alarm stands.
    """
    from consent import EnterpriseKey
    from exchange.agent import (
        AgentConfig,
        AgentState,
        EdgeSource,
        assemble_agent,
        open_source,
        parse_column_options,
    )
    from ledger import CheckpointError, NoteVerifier

    try:
        ledger_key = NoteVerifier.from_vkey(ledger_vkey.read_text())
    except CheckpointError as exc:
        raise typer.BadParameter(f"{ledger_vkey}: not a ledger verifier key ({exc})") from exc
    quorum = _witness_quorum(witness, witness_quorum)
    try:
        columns = parse_column_options(column)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    signer = EnterpriseKey.load(key).signer
    agent_state = AgentState.open(state or Path(f"ibx-agent-{enterprise}"))
    context = cli_context(ctx)
    client = user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    )
    with client:
        me = str(client.get("/v1/me")["name"])
        if me != enterprise:
            raise typer.BadParameter(
                f"--enterprise {enterprise}: the token is {me}'s; an agent acts for its own "
                "enterprise only"
            )

        def say(line: str) -> None:
            typer.echo(f"ibx agent {enterprise}: {line}")

        def warn(line: str) -> None:
            typer.echo(f"ibx agent {enterprise}: {line}", err=True)

        def edge() -> EdgeSource:
            pem = _edge_bundle(context.profile, edge_ca or ca_bundle)
            from cryptography import x509

            try:
                trust = x509.load_pem_x509_certificates(pem)
            except ValueError as exc:
                raise typer.BadParameter(f"--edge-ca: no PEM certificates ({exc})") from exc
            return EdgeSource(
                client,
                enterprise,
                signer.seed(),
                trust,
                skipped=lambda batch, why: warn(f"edge batch {batch} not used: {why}"),
            )

        try:
            data = open_source(source, table=table, edge=edge)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        runner = assemble_agent(
            client,
            enterprise=enterprise,
            signer=signer,
            ledger_key=ledger_key,
            source=data,
            state=agent_state,
            columns=columns,
            say=say,
            warn=warn,
            config=AgentConfig(wait=poll),
            witnesses=quorum,
        )
        if once:
            code = runner.run_once()
            if code:
                warn("the ledger alarm stands: every task was refused")
            raise typer.Exit(code)
        say(f"serving {data.description} from {client.where}; state in {agent_state.root}")
        _run_until_signalled(runner)
        say("stopped")


def _witness_quorum(values: list[str], quorum: int) -> WitnessQuorum:
    """The witness quorum of ``--witness`` (vkeys or files) and ``--witness-quorum``."""
    from exchange.agent.verify import WitnessQuorum
    from ledger import CheckpointError, CosignatureVerifier

    witnesses = []
    for value in values:
        path = Path(value)
        text = path.read_text() if path.is_file() else value
        try:
            witnesses.append(CosignatureVerifier.from_vkey(text))
        except CheckpointError as exc:
            raise typer.BadParameter(f"--witness {value}: {exc}") from exc
    try:
        return WitnessQuorum.of(witnesses, quorum)
    except ValueError as exc:
        raise typer.BadParameter(f"--witness-quorum: {exc}") from exc


def _run_until_signalled(runner: DataAgent) -> None:
    """Run the loop until SIGTERM or SIGINT; an idle long poll is interrupted at once."""
    from exchange.agent import AgentStopped

    def stop(signum: int, _frame: FrameType | None) -> None:
        runner.stop()
        if runner.idle:
            raise AgentStopped

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        runner.run()
    except AgentStopped:
        pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _edge_bundle(profile: str | None, bundle: Path | None) -> bytes:
    """The CA bundle edge batches must chain to: ``--edge-ca``/``--ca-bundle``, else the
    profile's pinned bundle; never one fetched from the exchange."""
    if bundle is not None:
        return bundle.read_bytes()
    if profile is not None:
        import os

        from exchange.cli._profiles import ProfileStore

        pem = ProfileStore.from_environment(os.environ).load(profile).ca_bundle_pem
        if pem:
            return pem.encode()
    raise typer.BadParameter(
        "--source edge needs the deployment's CA bundle, pinned: --edge-ca or --ca-bundle "
        "(ibx pki ca-bundle on the exchange, handed over out of band)"
    )
