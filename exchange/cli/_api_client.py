"""The client a user command speaks through, with the caller's credentials checked first.

``ibx dataset`` and ``ibx consent`` act as the identity of the caller's token
through :class:`exchange.client.ExchangeClient`: in-process on the data dir,
or over HTTPS with ``--exchange URL``. A command without any token stops here
with the message that names every way to give one, the same in both modes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from exchange.cli._context import Remote, cli_context
from exchange.error_table import AuthError

if TYPE_CHECKING:
    from exchange.client import ExchangeClient

__all__ = ["NO_CREDENTIALS", "user_client"]

logger = logging.getLogger(__name__)

NO_CREDENTIALS = (
    "a bearer token is required: IBX_TOKEN, --token-file FILE, --profile NAME (ibx login) "
    "or --token"
)


def user_client(
    ctx: typer.Context,
    token: str | None,
    *,
    exchange: str | None,
    ca_bundle: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
) -> ExchangeClient:
    """The API client of the running command, acting as the caller's token.

    Raises:
        AuthError: no token was given in any of the ways a command takes one.
        ConfigurationError: a token file or profile that cannot be used.
    """
    context = cli_context(ctx)
    if not context.bearer_token(token):
        raise AuthError(NO_CREDENTIALS)
    return context.client(token, Remote(exchange, ca_bundle, client_cert, client_key))
