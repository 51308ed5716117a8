"""``ibx serve``: the exchange over HTTP (uvicorn)."""

from __future__ import annotations

import typer
import uvicorn

from exchange.app import create_app
from exchange.cli._context import cli_context

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="HTTP port"),
) -> None:
    """Run the exchange's HTTP API."""
    context = cli_context(ctx)
    app = create_app(runtime=context.runtime)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
