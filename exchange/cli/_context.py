"""State shared by CLI commands: settings from the root options, a lazily built runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from exchange.identities import Identity
    from exchange.runtime import Runtime
    from exchange.settings import Settings

__all__ = ["EXCHANGE_OPTION", "TOKEN_OPTION", "CliContext", "cli_context"]

TOKEN_OPTION = typer.Option(
    None,
    "--token",
    envvar="IBX_TOKEN",
    help="act as the identity of this bearer token",
    show_default=False,
)
EXCHANGE_OPTION = typer.Option(
    None,
    "--exchange",
    envvar="IBX_EXCHANGE",
    help="URL of a running exchange (default: local data dir)",
    show_default=False,
)


def _take_secrets() -> dict[str, str]:
    from exchange.settings import take_secret_environment

    return take_secret_environment()


@dataclass
class CliContext:
    """Built once per invocation by the root callback."""

    data_dir: Path | None
    _overrides: dict[str, object] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=_take_secrets, repr=False)
    """Secret IBX_* variables, taken out of the environment when the root command starts."""

    @cached_property
    def settings(self) -> Settings:
        """Settings from IBX_* variables, with --data-dir taking precedence."""
        from exchange.settings import Settings

        if self.data_dir is not None:
            return Settings.from_environment(self.secrets, data_dir=self.data_dir)
        return Settings.from_environment(self.secrets)

    @cached_property
    def runtime(self) -> Runtime:
        """The runtime on the data dir (opens the database, runs migrations)."""
        from exchange.runtime import Runtime

        return Runtime(self.settings)

    def acting_as(self, token: str | None) -> Identity:
        """The identity of ``--token``/``IBX_TOKEN``.

        Raises:
            AuthError: missing, unknown, expired or revoked token.
        """
        from exchange.auth import authenticate_token

        return authenticate_token(self.runtime, token)


def cli_context(ctx: typer.Context) -> CliContext:
    """The :class:`CliContext` of the running command."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj
