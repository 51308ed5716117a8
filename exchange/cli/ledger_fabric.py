"""``ibx ledger ship``, ``ibx ledger follow`` and ``verify --fabric``: the ledger on its Fabric
channel (``IBX_LEDGER_FABRIC_*``, docs/fabric.md).

Server-side commands: they read the data dir's ledger and reach the channel with
the exchange's own Fabric client identity. ``ibx serve`` ships on its own; ``ship``
is for a deployment that ships from a separate process, or to catch up by hand.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING

import typer

from core.errors import ConfigurationError
from exchange.cli._context import cli_context
from exchange.cli._output import JSON_OPTION, emit_json
from exchange.error_table import ExitCode

if TYPE_CHECKING:
    from exchange.runtime import Runtime
    from ledger.fabric import FabricConfig, LedgerEvent
    from ledger.fabric.compare import FabricComparison
    from ledger.fabric.shipper import FabricShipper, ShipReport

__all__ = ["fabric_comparison", "follow", "ship"]

_ONCE_OPTION = typer.Option(
    False, "--once", help="ship what is pending now and exit [default: keep shipping]"
)
_FROM_BLOCK_OPTION = typer.Option(
    None, "--from-block", min=0, help="the first block to read events from [default: the next]"
)
_COUNT_OPTION = typer.Option(
    None, "--count", min=1, help="stop after this many events [default: run until stopped]"
)
_PERIOD = 1.0
"""Seconds between passes of ``ibx ledger ship`` without --once."""


def _fail(message: str, code: ExitCode) -> typer.Exit:
    typer.echo(f"ibx: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


def fabric_settings(runtime: Runtime) -> FabricConfig:
    """The Fabric settings of the data dir's deployment.

    Raises:
        typer.Exit: shipping is off, or the settings are incomplete (usage, one line).
    """
    try:
        config = runtime.fabric_config
    except ConfigurationError as exc:
        raise _fail(str(exc), ExitCode.USAGE) from exc
    if config is None:
        raise _fail(
            "the ledger is not shipped to Fabric: set IBX_LEDGER_FABRIC_MODE=full or anchor "
            "and the IBX_LEDGER_FABRIC_* settings (docs/fabric.md)",
            ExitCode.USAGE,
        )
    return config


def _shipper(runtime: Runtime) -> FabricShipper:
    from ledger.fabric import FabricError

    fabric_settings(runtime)
    try:
        shipper = runtime.fabric_shipper
    except FabricError as exc:
        raise _fail(str(exc), ExitCode.USAGE) from exc
    assert shipper is not None
    return shipper


def _summary(report: ShipReport) -> str:
    verb = "shipped" if report.mode == "full" else "anchored"
    return (
        f"{verb} {report.shipped} entries in {report.transactions} transactions; "
        f"channel size {report.channel_size} of SQL size {report.sql_size}"
    )


def _pass(shipper: FabricShipper) -> ShipReport:
    """One pass; integrity failures exit 5, Fabric failures exit 1.

    Raises:
        typer.Exit: the channel disagrees with SQL, or the chaincode refused.
    """
    from ledger import LedgerIntegrityError
    from ledger.fabric import FabricError

    try:
        return shipper.ship()
    except LedgerIntegrityError as exc:
        raise _fail(f"ledger ship refused: {exc}", ExitCode.VERIFICATION_FAILED) from exc
    except FabricError as exc:
        raise _fail(f"ledger ship failed: {exc}", ExitCode.ERROR) from exc


def ship(
    ctx: typer.Context,
    once: bool = _ONCE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Ship the ledger to its Fabric channel: entries (full mode) or the signed head (anchor).

    With --once: ship what is pending now, then exit.

    Without: keep shipping every second until stopped (refused while ibx serve ships).

    Exit 1 when Fabric is unreachable or refuses, 5 when the channel disagrees with SQL.
    """
    runtime = cli_context(ctx).runtime
    shipper = _shipper(runtime)
    ctx.call_on_close(shipper.channel.close)
    if once:
        report = _pass(shipper)
        if report.error is not None:
            raise _fail(
                f"ledger ship stopped: {report.error} ({_summary(report)}; the rest stays in "
                "the SQL log and ships on the next pass)",
                ExitCode.ERROR,
            )
        if as_json:
            emit_json(report.to_dict())
        else:
            typer.echo(_summary(report))
        return
    from exchange.fabric_shipping import FabricShipping

    lock = FabricShipping(runtime, _PERIOD)
    if not lock.take_lock():
        raise _fail(
            f"another process (ibx serve) ships {runtime.data_dir}'s ledger already; "
            "use --once to ship by hand",
            ExitCode.ERROR,
        )
    try:
        _keep_shipping(shipper, as_json=as_json)
    finally:
        lock.stop()


def _keep_shipping(shipper: FabricShipper, *, as_json: bool) -> None:
    down = False
    while True:
        report = _pass(shipper)
        if report.error is not None:
            if not down:
                typer.echo(f"ibx: Fabric is unavailable, retrying: {report.error}", err=True)
            down = True
        elif report.transactions or down:
            down = False
            if as_json:
                emit_json(report.to_dict(), compact=True)
            else:
                typer.echo(_summary(report))
        time.sleep(_PERIOD * (5 if down else 1))


def fabric_comparison(runtime: Runtime) -> FabricComparison:
    """Compare the channel with the data dir's SQL log (``ibx ledger verify --fabric``).

    Raises:
        typer.Exit: shipping is off or misconfigured (2), the channel could not be read (1).
    """
    import ledger
    from ledger.fabric import FabricError
    from ledger.fabric.compare import compare
    from ledger.fabric.gateway import open_channel

    config = fabric_settings(runtime)
    try:
        channel = open_channel(config, runtime.settings.ledger_origin)
    except FabricError as exc:
        raise _fail(str(exc), ExitCode.USAGE) from exc
    try:
        verdict = compare(runtime.ledger, ledger.SqlLedgerBackend(runtime.db), channel, config.mode)
    except FabricError as exc:
        raise _fail(
            f"ledger verify --fabric could not read the channel: {exc}", ExitCode.ERROR
        ) from exc
    finally:
        channel.close()
    return _rolled_back(runtime, config, verdict)


def _rolled_back(
    runtime: Runtime, config: FabricConfig, verdict: FabricComparison
) -> FabricComparison:
    """The verdict, failed if the channel is smaller than this deployment's shipper last
    saw it committed (a rollback of the channel's state: a comparison alone reads it as
    lag)."""
    from dataclasses import replace

    from ledger.fabric.compare import Disagreement, DisagreementKind
    from ledger.fabric.outbox import FabricOutbox, OutboxKey

    if not verdict.ok:
        return verdict
    key = OutboxKey(
        config.channel, config.chaincode, runtime.settings.ledger_origin, str(config.mode)
    )
    seen = FabricOutbox(runtime.db).status(key)
    if seen is None or verdict.channel_size >= seen.shipped_size:
        return verdict
    return replace(
        verdict,
        ok=False,
        disagreement=Disagreement(
            DisagreementKind.ROLLBACK,
            f"the channel's log {key.log} is at size {verdict.channel_size} but held "
            f"{seen.shipped_size} when this deployment last saw it committed: the channel's "
            f"state was rolled back",
        ),
    )


def fabric_line(comparison: FabricComparison) -> str:
    """``fabric full: channel size S agrees (lag L)``."""
    return (
        f"fabric {comparison.mode}: channel size {comparison.channel_size} agrees "
        f"(lag {comparison.lag})"
    )


def _event_line(event: LedgerEvent) -> str:
    kind = event.name.rpartition(".")[2]
    root = base64.b64encode(event.root).decode()
    return f"block {event.block} {kind} {event.start}..{event.size} root {root}"


def follow(
    ctx: typer.Context,
    from_block: int | None = _FROM_BLOCK_OPTION,
    count: int | None = _COUNT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the ledger's chaincode events as the channel commits them.

    One line per event: 'block B appended START..SIZE root R' (or created, anchored).

    With --json: one JSON object per event, one per line.
    """
    from ledger.fabric import FabricError
    from ledger.fabric.gateway import open_channel

    runtime = cli_context(ctx).runtime
    config = fabric_settings(runtime)
    try:
        channel = open_channel(config, runtime.settings.ledger_origin)
    except FabricError as exc:
        raise _fail(str(exc), ExitCode.USAGE) from exc
    seen = 0
    try:
        for event in channel.events(from_block):
            if as_json:
                emit_json(
                    {
                        "block": event.block,
                        "tx_id": event.tx_id,
                        "event": event.name,
                        "log": event.log,
                        "start": event.start,
                        "size": event.size,
                        "root": base64.b64encode(event.root).decode(),
                    },
                    compact=True,
                )
            else:
                typer.echo(_event_line(event))
            seen += 1
            if count is not None and seen >= count:
                break
    except FabricError as exc:
        raise _fail(f"ledger follow failed: {exc}", ExitCode.ERROR) from exc
    finally:
        channel.close()
