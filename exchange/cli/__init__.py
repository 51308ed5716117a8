"""The ``ibx`` command line.

Server-side administration on the data dir: ``serve``, ``identity``, ``ledger``
(later ``pki``). Commands a user runs on their own behalf take ``--token``
(or ``IBX_TOKEN``) and act as that identity.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from pathlib import Path

import typer

from core.errors import IbxError
from exchange.cli._context import CliContext
from exchange.cli._lazy import LazyGroup
from exchange.cli.completion import COMPLETE_VAR
from exchange.error_table import ExitCode, exit_code_for

__all__ = ["app", "main"]

app = typer.Typer(
    name="ibx",
    help="ibx: authorize-before-use data exchange and privacy compute.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=LazyGroup,
    epilog=(
        "Exit codes: 0 ok, 1 error, 2 usage, 3 denied, 4 not authenticated, "
        "5 verification failed, 6 partial, 130 interrupted (docs/cli.md)."
    ),
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
    token_file: Path | None = typer.Option(  # noqa: B008
        None,
        "--token-file",
        envvar="IBX_TOKEN_FILE",
        help="read the bearer token from this file (mode 0600), not from argv",
        show_default=False,
    ),
    profile: str | None = typer.Option(
        None,
        "--profile",
        envvar="IBX_PROFILE",
        help="use the token of this profile (ibx login)",
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
    ctx.obj = CliContext(data_dir=data_dir, token_file=token_file, profile=profile)


def _skip_httpx_command_line() -> None:
    """Keep httpx from importing its own command-line tool, which ibx never runs.

    ``import httpx`` imports ``httpx._main`` (its ``httpx`` console script), which
    loads Rich and Pygments: about 70 modules and 70 ms on every remote command.
    A stand-in module takes its place in this process.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main")

    def unavailable(*_args: object, **_kwargs: object) -> None:
        raise SystemExit("httpx's command line is not part of ibx")

    stand_in.main = unavailable  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in


def main() -> None:
    """Entry point of the ``ibx`` console script: one-line errors, non-zero exits."""
    _skip_httpx_command_line()
    if os.environ.get(COMPLETE_VAR):  # a completion script asking for candidates
        from typer._completion_classes import completion_init

        completion_init()
    try:
        result = app(prog_name="ibx", complete_var=COMPLETE_VAR, standalone_mode=False)
    except IbxError as exc:
        typer.echo(f"ibx: {exc.title}: {exc}", err=True)
        sys.exit(exit_code_for(exc))
    except ValueError as exc:  # e.g. settings validation
        typer.echo(f"ibx: invalid input: {_one_line(exc)}", err=True)
        sys.exit(ExitCode.USAGE)
    except OverflowError:  # e.g. --days or --ttl beyond what a date or duration holds
        typer.echo("ibx: invalid input: a number or date is out of range", err=True)
        sys.exit(ExitCode.USAGE)
    except OSError as exc:  # a file that cannot be read or written, a refused connection
        where = f" {exc.filename}" if exc.filename else ""
        typer.echo(f"ibx: cannot use{where}: {exc.strerror or type(exc).__name__}", err=True)
        sys.exit(ExitCode.ERROR)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("ibx: aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        if _is_http_error(exc):  # --exchange/--server unreachable, bad URL, TLS failure
            typer.echo(f"ibx: cannot reach the server: {_http_hint(exc)}", err=True)
            sys.exit(ExitCode.ERROR)
        code = getattr(exc, "exit_code", None)
        show = getattr(exc, "show", None)
        if code is not None and callable(show):
            _show_usage_error(exc)
            sys.exit(code)
        raise
    sys.exit(result if isinstance(result, int) else 0)


def _is_http_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an httpx transport or status error (without importing httpx)."""
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, httpx.HTTPError)


ROOT_OPTIONS = ("--data-dir", "--token-file", "--profile", "--verbose", "-v", "--version")
"""Options of ``ibx`` itself, which go before the command."""


def _show_usage_error(exc: Exception) -> None:
    """Click's usage message, plus where a root option belongs when one was misplaced."""
    show = getattr(exc, "show", None)
    assert callable(show)
    show()
    option = getattr(exc, "option_name", None)
    if option in ROOT_OPTIONS:
        typer.echo(
            f"hint: {option} is an option of ibx itself: put it before the command, "
            f"e.g. ibx {option} ... ledger verify",
            err=True,
        )


def _one_line(exc: ValueError) -> str:
    """A validation error in one line, naming the IBX_* variable, without library URLs."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for error in errors():
            field = ".".join(str(p) for p in error.get("loc", ()))
            name = f"IBX_{field.upper()}" if field else "settings"
            parts.append(f"{name}: {error.get('msg', 'invalid')}")
        if parts:
            return "; ".join(parts)
    return " ".join(str(exc).strip().splitlines()[:3])


def _request_url(exc: BaseException) -> str:
    """The URL an httpx error was about, if it knows it."""
    try:
        return str(getattr(exc, "request").url)  # noqa: B009 - the property raises when unset
    except (AttributeError, RuntimeError):
        return ""


def _http_hint(exc: BaseException) -> str:
    """What went wrong reaching a server, and what to try."""
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if "wrong version number" in lowered or "record layer failure" in lowered:
        return (
            f"{text} — this port does not speak TLS (an API started with ibx serve "
            "--plain-http?): use http:// for it; the exchange's API and edge ports speak https://"
        )
    if "remoteprotocolerror" in lowered or "server disconnected" in lowered:
        if _request_url(exc).startswith("https://"):
            return (
                f"{text} — the exchange closed the TLS connection: it refuses a --client-cert "
                "its CA did not issue (ibx identity cert NAME --out DIR on the server)"
            )
        return (
            f"{text} — the server expects TLS here: use https:// and --ca-bundle (ibx serve "
            "prints the bundle's path; ibx pki ca-bundle on the server)"
        )
    if "mismatch" in lowered and "certificate" in lowered:
        return (
            f"{text} — the exchange's certificate does not name this host: use a name it was "
            "issued for, or restart ibx serve with --tls-name HOST"
        )
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        return (
            f"{text} — the exchange's certificate is not trusted here: pass --ca-bundle FILE "
            "(ibx serve prints its path; ibx pki ca-bundle on the server) or use a profile "
            "(ibx login --ca-fingerprint)"
        )
    if "alert" in lowered and ("unknown ca" in lowered or "bad certificate" in lowered):
        return (
            f"{text} — the exchange refused the client certificate: --client-cert must be "
            "one its CA issued (ibx identity cert NAME --out DIR on the server)"
        )
    if "connection refused" in lowered or "connecterror" in lowered:
        return f"{text} — nothing listens there: is ibx serve running, on that host and port?"
    return text
