"""``ibx serve``: the exchange over HTTP (uvicorn)."""

from __future__ import annotations

import asyncio

import typer
import uvicorn

from exchange.app import create_app
from exchange.cli._context import cli_context
from exchange.edge_server import edge_server_config, serve_together

__all__ = ["serve"]


def serve(  # noqa: PLR0917 - one parameter per command-line option
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="HTTP port"),
    edge_port: int | None = typer.Option(
        None,
        "--edge-port",
        min=0,
        max=65535,
        help="also listen with mutual TLS for edge devices (EST, readings) on this port",
    ),
    edge_names: list[str] = typer.Option(  # noqa: B008
        [],
        "--edge-name",
        help="a DNS name or IP devices use to reach the edge port (repeatable; "
        "localhost and 127.0.0.1 are always included)",
    ),
    init: bool = typer.Option(
        False, "--init", help="initialise the data dir first if it holds no deployment yet"
    ),
) -> None:
    """Run the exchange's HTTP API (and, with --edge-port, the edge TLS listener)."""
    context = cli_context(ctx)
    runtime = context.initialised_runtime() if init else context.runtime
    app = create_app(runtime=runtime, edge_port=edge_port)
    if edge_port is None:
        uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
        return
    main_server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="info", server_header=False)
    )
    edge_server = uvicorn.Server(
        edge_server_config(
            runtime,
            host=host,
            port=edge_port,
            hosts=("localhost", "127.0.0.1", *edge_names),
        )
    )
    asyncio.run(serve_together([main_server, edge_server]))
