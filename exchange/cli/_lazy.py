"""A command group that imports each subcommand's module only when it runs.

``ibx --help`` lists every subcommand from the table below without importing
any of them; ``ibx ledger checkpoint`` imports ``exchange.cli.ledger`` and
what it needs, never TenSEAL, FastAPI or the policy engine. The help strings
here are checked against the modules' own by ``tests/exchange/test_startup.py``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import ClassVar

import typer
from typer import _click as click  # the click Typer is built on (vendored since typer 0.29)
from typer.core import TyperCommand, TyperGroup

__all__ = ["SUBCOMMANDS", "LazyGroup", "LazySubcommand"]


@dataclass(frozen=True)
class LazySubcommand:
    """Where a subcommand lives: ``module.attr`` is a Typer app or a command function."""

    name: str
    module: str
    attr: str
    help: str

    def load(self) -> click.Command:
        """Import the module and build the click command."""
        target = getattr(importlib.import_module(self.module), self.attr)
        if not isinstance(target, typer.Typer):
            single = typer.Typer()
            single.command(self.name)(target)
            target = single
        command = typer.main.get_command(target)
        command.name = self.name
        return command


SUBCOMMANDS: tuple[LazySubcommand, ...] = (
    LazySubcommand(
        "init",
        "exchange.cli.init",
        "init",
        "Create a deployment: database, master key, ledger key, record, two bootstrap officers.",
    ),
    LazySubcommand(
        "identity",
        "exchange.cli.identity",
        "app",
        "Create, list and revoke identities (on the server's data dir).",
    ),
    LazySubcommand(
        "ledger",
        "exchange.cli.ledger",
        "app",
        "The verifiable ledger: the server's data dir, or read over the API (--exchange).",
    ),
    LazySubcommand(
        "mpc",
        "exchange.cli.mpc",
        "app",
        "Engine tools for operators: HE, MPC, PSI on one machine, no policy or consent check.",
    ),
    LazySubcommand(
        "consent",
        "exchange.cli.consent",
        "app",
        "Enterprise-signed consents: keys, grants, revocations, checks, usage.",
    ),
    LazySubcommand(
        "dataset",
        "exchange.cli.dataset",
        "app",
        "Register and list datasets (metadata only; the data stays home).",
    ),
    LazySubcommand(
        "pki",
        "exchange.cli.pki",
        "app",
        "The edge certificate authority (on the server's data dir).",
    ),
    LazySubcommand(
        "policy",
        "exchange.cli.policy",
        "app",
        "The policy decision point: four-eyes policy changes and decisions.",
    ),
    LazySubcommand(
        "edge",
        "exchange.cli.edge",
        "app",
        "Edge terminals: bootstrap tokens, enrolment, renewal, sealed readings.",
    ),
    LazySubcommand(
        "request",
        "exchange.cli.request",
        "app",
        "Compute requests (sub-brains): submit, follow, read results, cancel.",
    ),
    LazySubcommand(
        "me",
        "exchange.cli.me",
        "app",
        "Who your token is (name, role, industry, expiry); rotate-token replaces it.",
    ),
    LazySubcommand(
        "audit",
        "exchange.cli.audit",
        "app",
        "Audit the ledger: export, verify, witness, trace, report and alerts.",
    ),
    LazySubcommand(
        "agent",
        "exchange.cli.agent",
        "agent",
        "Run an enterprise's data agent: verify each task on the ledger, then contribute.",
    ),
    LazySubcommand(
        "login",
        "exchange.cli.login",
        "login",
        "Store a profile (exchange URL, pinned CA, token) for later commands.",
    ),
    LazySubcommand(
        "status",
        "exchange.cli.status",
        "status",
        "Show the deployment (origin, ledger, policy, CA, parties); exit 1 if a check fails.",
    ),
    LazySubcommand(
        "completion",
        "exchange.cli.completion",
        "completion",
        "Print the shell completion script for bash, zsh or fish.",
    ),
    LazySubcommand(
        "serve",
        "exchange.cli.serve",
        "serve",
        "Run the exchange's HTTP API (and, with --edge-port, the edge TLS listener).",
    ),
    LazySubcommand(
        "backup",
        "exchange.cli.backup",
        "app",
        "Back up the deployment online: database, wrapped keys, configuration.",
    ),
    LazySubcommand(
        "restore",
        "exchange.cli.backup",
        "restore",
        "Restore a backup into an empty data dir; needs the master key it was taken under.",
    ),
)


class LazyGroup(TyperGroup):
    """The root group: subcommands from :data:`SUBCOMMANDS`, imported on first use."""

    _table: ClassVar[dict[str, LazySubcommand]] = {sub.name: sub for sub in SUBCOMMANDS}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Eagerly registered commands first, then the lazy ones in table order."""
        return [*super().list_commands(ctx), *(n for n in self._table if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command; while help is being listed, a stand-in carrying only its help."""
        if cmd_name in self.commands or cmd_name not in self._table:
            return super().get_command(ctx, cmd_name)
        sub = self._table[cmd_name]
        if self._listing:
            return TyperCommand(sub.name, help=sub.help, short_help=sub.help)
        command = sub.load()
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Help for the root without importing any subcommand."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
