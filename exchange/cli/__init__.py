"""The ``ibx`` command line.

Server-side administration on the data dir: ``serve``, ``identity``, ``ledger``
(later ``pki``). Commands a user runs on their own behalf take ``--token``
(or ``IBX_TOKEN``) and act as that identity.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from core.errors import IbxError
from exchange.cli._context import CliContext
from exchange.cli._lazy import LazyGroup
from exchange.cli.completion import COMPLETE_VAR

__all__ = ["app", "main"]

app = typer.Typer(
    name="ibx",
    help="ibx: authorize-before-use data exchange and privacy compute.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=LazyGroup,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"ibx {version('ibx')}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(  # noqa: B008
        None,
        "--data-dir",
        envvar="IBX_DATA_DIR",
        help="where the database, keys and party dirs live [default: ./.ibx]",
        show_default=False,
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log to stderr"),
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="print the version and exit",
    ),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = CliContext(data_dir=data_dir)


def main() -> None:
    """Entry point of the ``ibx`` console script: one-line errors, non-zero exits."""
    if os.environ.get(COMPLETE_VAR):  # a completion script asking for candidates
        from typer._completion_classes import completion_init

        completion_init()
    try:
        result = app(prog_name="ibx", complete_var=COMPLETE_VAR, standalone_mode=False)
    except IbxError as exc:
        typer.echo(f"ibx: {exc.title}: {exc}", err=True)
        sys.exit(1)
    except ValueError as exc:  # e.g. settings validation
        first = str(exc).strip().splitlines()
        typer.echo(f"ibx: invalid input: {' '.join(first[:3])}", err=True)
        sys.exit(2)
    except OverflowError:  # e.g. --days or --ttl beyond what a date or duration holds
        typer.echo("ibx: invalid input: a number or date is out of range", err=True)
        sys.exit(2)
    except OSError as exc:  # a file that cannot be read or written, a refused connection
        where = f" {exc.filename}" if exc.filename else ""
        typer.echo(f"ibx: cannot use{where}: {exc.strerror or type(exc).__name__}", err=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("ibx: aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        if _is_http_error(exc):  # --exchange/--server unreachable, bad URL, TLS failure
            typer.echo(f"ibx: cannot reach the server: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)
        code = getattr(exc, "exit_code", None)
        show = getattr(exc, "show", None)
        if code is not None and callable(show):
            show()
            sys.exit(code)
        raise
    sys.exit(result if isinstance(result, int) else 0)


def _is_http_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an httpx transport or status error (without importing httpx)."""
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, httpx.HTTPError)
