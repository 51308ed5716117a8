"""State shared by CLI commands: settings from the root options, a lazily built runtime."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from exchange.client import ExchangeClient
    from exchange.identities import Identity
    from exchange.runtime import Runtime
    from exchange.settings import Settings

__all__ = [
    "CA_BUNDLE_OPTION",
    "CLIENT_CERT_OPTION",
    "CLIENT_KEY_OPTION",
    "EXCHANGE_OPTION",
    "TOKEN_OPTION",
    "CliContext",
    "Remote",
    "cli_context",
]

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
    help="URL of a running exchange, https://HOST:PORT (default: the local data dir)",
    show_default=False,
)
CA_BUNDLE_OPTION = typer.Option(
    None,
    "--ca-bundle",
    envvar="IBX_CA_BUNDLE",
    help="PEM file of the CA that issued the exchange's TLS certificate (with --exchange)",
    show_default=False,
)
CLIENT_CERT_OPTION = typer.Option(
    None,
    "--client-cert",
    envvar="IBX_CLIENT_CERT",
    help="administrators: PEM client certificate (second factor; with --exchange)",
    show_default=False,
)
CLIENT_KEY_OPTION = typer.Option(
    None,
    "--client-key",
    envvar="IBX_CLIENT_KEY",
    help="the client certificate's private key (PEM; default: in the certificate file)",
    show_default=False,
)


@dataclass(frozen=True)
class Remote:
    """Where and how a user command reaches the exchange (None fields: the defaults)."""

    exchange: str | None = None
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


def _take_secrets() -> dict[str, str]:
    from exchange.secret_env import take_secret_environment

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

    def client(self, token: str | None, remote: Remote | None = None) -> ExchangeClient:
        """The API client a user command speaks through: ``--exchange URL`` (or the
        profile's exchange), else this data dir's exchange in-process. Same routes,
        same authorization, same errors either way.

        Raises:
            ConfigurationError: a token file or profile that cannot be used.
        """
        from exchange.client import ExchangeClient

        remote = remote or Remote()
        bearer = self.bearer_token(token)
        url, ca = remote.exchange, remote.ca_bundle
        cert, key = remote.client_cert, remote.client_key
        ca_text: str | None = None
        if url is None and self.profile is not None:
            from exchange.cli._profiles import ProfileStore

            profile = ProfileStore.from_environment(os.environ).load(self.profile)
            url, ca_text = profile.exchange, profile.ca_bundle_pem
            if cert is None and profile.client_cert is not None:
                cert = Path(profile.client_cert)
                key = Path(profile.client_key) if profile.client_key else None
        if url is None:
            return ExchangeClient.local(self.runtime, token=bearer)
        return ExchangeClient.remote(
            url,
            token=bearer,
            ca_bundle=ca if ca is not None else ca_text,
            client_cert=cert,
            client_key=key,
        )


def cli_context(ctx: typer.Context) -> CliContext:
    """The :class:`CliContext` of the running command."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj
