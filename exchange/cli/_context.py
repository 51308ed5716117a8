"""State shared by CLI commands: settings from the root options, a lazily built runtime."""

from __future__ import annotations

import os
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
    token_file: Path | None = None
    profile: str | None = None
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
        """The deployment in the data dir (``ibx init`` must have created it)."""
        from exchange.runtime import Runtime

        return Runtime(self.settings)

    def initialised_runtime(self) -> Runtime:
        """The deployment, created first if the data dir holds none (``serve --init``).

        Raises:
            ConfigurationError: as :meth:`exchange.runtime.Runtime.initialise`.
        """
        from exchange.runtime import Runtime

        runtime = Runtime.open_or_initialise(self.settings)
        self.__dict__["runtime"] = runtime  # what the cached ``runtime`` property returns
        return runtime

    def bearer_token(self, token: str | None) -> str | None:
        """The caller's token: ``--token``/``IBX_TOKEN``, else ``--token-file``, else the profile.

        Raises:
            ConfigurationError: the token file or profile is unreadable by policy
                (others can read it), missing or malformed.
        """
        if token:
            return token
        from exchange.cli._profiles import ProfileStore, read_token_file

        if self.token_file is not None:
            return read_token_file(self.token_file)
        if self.profile is not None:
            return ProfileStore.from_environment(os.environ).load(self.profile).token
        return None

    def acting_as(self, token: str | None) -> Identity:
        """The identity of the caller's token (see :meth:`bearer_token`).

        Raises:
            AuthError: missing, unknown, expired or revoked token.
            ConfigurationError: a token file or profile that cannot be used.
        """
        from exchange.credentials import authenticate_token

        return authenticate_token(self.runtime, self.bearer_token(token))


def cli_context(ctx: typer.Context) -> CliContext:
    """The :class:`CliContext` of the running command."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj
