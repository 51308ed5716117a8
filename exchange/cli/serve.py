"""``ibx serve``: the exchange's API over TLS (uvicorn), and optionally the edge listener."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer
import uvicorn

from exchange.access_log import log_requests
from exchange.app import create_app
from exchange.cli._context import cli_context
from exchange.edge_server import edge_server_config, serve_together
from exchange.server_tls import api_listener, api_server_config, check_listener
from exchange.workers import PreBoundServer, bind_listeners, run_workers

__all__ = ["serve"]

logger = logging.getLogger(__name__)


def serve(  # noqa: PLR0917 - one parameter per command-line option
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="HTTPS port of the API"),
    tls_names: list[str] = typer.Option(  # noqa: B008
        [],
        "--tls-name",
        help="a DNS name or IP clients use to reach the API, put in its certificate "
        "(repeatable; localhost, 127.0.0.1 and ::1 are always included)",
    ),
    tls_cert: Path | None = typer.Option(  # noqa: B008
        None,
        "--tls-cert",
        help="PEM certificate chain for the API (default: issued by the deployment CA)",
        dir_okay=False,
    ),
    tls_key: Path | None = typer.Option(  # noqa: B008
        None,
        "--tls-key",
        help="the --tls-cert private key (PEM; default: in the certificate file)",
        dir_okay=False,
    ),
    plain_http: bool = typer.Option(
        False,
        "--plain-http",
        help="serve the API over plain HTTP instead of TLS (loopback hosts only)",
    ),
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
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        max=64,
        help="processes serving the API on the port (about one per core); each keeps its "
        "own failed-authentication count",
    ),
) -> None:
    """Run the exchange's HTTP API (and, with --edge-port, the edge TLS listener).

    The API speaks TLS 1.2/1.3 with a certificate from the deployment CA (created
    on first start if the deployment has none) or from --tls-cert/--tls-key; it
    prints the URL and the CA bundle clients pass as --ca-bundle.
    """
    check_listener(host=host, tls_cert=tls_cert, tls_key=tls_key, plain_http=plain_http)
    context = cli_context(ctx)
    runtime = context.initialised_runtime() if init else context.runtime
    listener = api_listener(
        runtime,
        host=host,
        port=port,
        names=tls_names,
        tls_cert=tls_cert,
        tls_key=tls_key,
        plain_http=plain_http,
    )
    runtime.auth_guard  # noqa: B018 - built once, before requests arrive on several threads
    app = create_app(runtime=runtime, edge_port=edge_port)
    log_requests()  # one line per request: method, path template, status, time, caller
    if listener.ca_created:
        typer.echo(
            "ibx: created the deployment CA (it certifies this API, edge devices and "
            "administrators; ibx pki fingerprint prints its root for users)",
            err=True,
        )
    typer.echo(f"ibx: {listener.describe()}", err=True)
    logger.info("%s", listener.describe())
    api_config = api_server_config(app, listener, host=host, port=port)
    edge_config = None
    if edge_port is not None:
        edge_config = edge_server_config(
            runtime, host=host, port=edge_port, hosts=("localhost", "127.0.0.1", *edge_names)
        )
    if workers == 1:
        servers = [uvicorn.Server(api_config)]
        if edge_config is not None:
            servers.append(uvicorn.Server(edge_config))
        _run(servers)
        return
    api_sockets = bind_listeners(host, port, workers)
    edge_sockets = None
    if edge_port is not None:  # one worker: the edge upload quota is held in its memory
        edge_sockets = bind_listeners(host, edge_port, 1, served_by=0)

    def work(index: int) -> None:
        sock = api_sockets.for_worker(index)
        assert sock is not None
        servers: list[uvicorn.Server] = [PreBoundServer(api_config, sock)]
        edge_sock = edge_sockets.for_worker(index) if edge_sockets is not None else None
        if edge_config is not None and edge_sock is not None:
            servers.append(PreBoundServer(edge_config, edge_sock))
        _run(servers)

    typer.echo(f"ibx: {workers} worker processes", err=True)
    listeners = [api_sockets] if edge_sockets is None else [api_sockets, edge_sockets]
    status = run_workers(workers, work, listeners=listeners, before_fork=runtime.db.dispose)
    raise typer.Exit(status)


def _run(servers: list[uvicorn.Server]) -> None:
    """Run the servers on one event loop (the one uvicorn picks: uvloop when installed)."""
    if len(servers) == 1:
        servers[0].run()
        return
    with asyncio.Runner(loop_factory=servers[0].config.get_loop_factory()) as runner:
        runner.run(serve_together(servers))
