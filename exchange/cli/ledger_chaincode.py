"""``ibx ledger chaincode`` and ``ibx ledger chaincode-package``: the ledger's Fabric chaincode.

Each consortium organisation runs the chaincode as a service next to its peer
(Fabric's chaincode-as-a-service: the peer dials it) and installs the package
that says where it listens. docs/fabric.md walks through both.
"""

from __future__ import annotations

from pathlib import Path

import typer

from exchange.cli._output import JSON_OPTION, emit_json
from exchange.error_table import ExitCode

__all__ = ["chaincode", "chaincode_package"]

_ADDRESS_OPTION = typer.Option(
    ..., "--address", help="HOST:PORT the chaincode service listens on (the peer dials it)"
)
_ID_OPTION = typer.Option(
    ...,
    "--id",
    envvar="CHAINCODE_ID",
    help="the installed package id, LABEL:HASH (printed by chaincode-package and peer lifecycle)",
)
_VKEY_OPTION = typer.Option(
    None,
    "--ledger-vkey",
    help="pin a ledger's checkpoint verifier key (repeatable): logs with other keys are refused",
    exists=True,
    dir_okay=False,
    readable=True,
)
_TLS_CERT_OPTION = typer.Option(
    None, "--tls-cert", help="PEM server certificate (with --tls-key: the peer connects over TLS)"
)
_TLS_KEY_OPTION = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert")
_CLIENT_CA_OPTION = typer.Option(
    None, "--client-ca", help="PEM CA of the peer's client certificate (mutual TLS)"
)
_LABEL_OPTION = typer.Option("ibx-ledger", "--label", help="the package label")
_OUT_OPTION = typer.Option(..., "--out", help="the package file to write (.tar.gz)")
_PACKAGE_TLS_OPTION = typer.Option(
    None,
    "--root-cert",
    help="PEM CA of the chaincode service's TLS certificate: the peer then dials over TLS",
)
_CLIENT_AUTH_OPTION = typer.Option(
    False,
    "--client-auth",
    help="the service demands the peer's client certificate (its --client-ca); each peer's "
    "ccaas builder fills in its own key and certificate (client_key, client_cert)",
)
_FORCE_OPTION = typer.Option(False, "--force", help="replace the file if it exists")


def chaincode(  # noqa: PLR0917 -- one parameter per CLI option
    address: str = _ADDRESS_OPTION,
    chaincode_id: str = _ID_OPTION,
    ledger_vkey: list[Path] | None = _VKEY_OPTION,
    tls_cert: Path | None = _TLS_CERT_OPTION,
    tls_key: Path | None = _TLS_KEY_OPTION,
    client_ca: Path | None = _CLIENT_CA_OPTION,
) -> None:
    """Run the ledger chaincode as a service until stopped (SIGTERM or Ctrl-C).

    The peer connects to it; it checks that every batch continues its log and
    that every anchored checkpoint is signed and consistent.
    """
    from ledger.fabric.chaincode import ChaincodeServiceConfig, ChaincodeServiceError, run_service

    if (tls_cert is None) != (tls_key is None):
        typer.echo("ibx: --tls-cert and --tls-key go together", err=True)
        raise typer.Exit(ExitCode.USAGE)
    try:
        config = ChaincodeServiceConfig.from_files(
            address=address,
            chaincode_id=chaincode_id,
            pinned_vkeys=list(ledger_vkey or []),
            tls_cert=tls_cert,
            tls_key=tls_key,
            client_ca=client_ca,
        )
    except ValueError as exc:
        typer.echo(f"ibx: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from exc
    try:
        run_service(config)
    except ChaincodeServiceError as exc:
        typer.echo(f"ibx: {exc}", err=True)
        raise typer.Exit(ExitCode.ERROR) from exc


def chaincode_package(  # noqa: PLR0917 -- one parameter per CLI option
    address: str = _ADDRESS_OPTION,
    label: str = _LABEL_OPTION,
    out: Path = _OUT_OPTION,
    root_cert: Path | None = _PACKAGE_TLS_OPTION,
    client_auth: bool = _CLIENT_AUTH_OPTION,
    force: bool = _FORCE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the chaincode-as-a-service package and print its package id.

    The package holds metadata.json and connection.json; the same options give the
    same bytes, so every organisation computes the same package id.
    """
    from ledger.fabric.packaging import build_package

    if out.exists() and not force:
        typer.echo(f"ibx: {out} exists; pass --force to replace it", err=True)
        raise typer.Exit(ExitCode.USAGE)
    try:
        package = build_package(
            address=address,
            label=label,
            root_cert=None if root_cert is None else root_cert.read_text(),
            client_auth=client_auth,
        )
    except (OSError, ValueError) as exc:
        typer.echo(f"ibx: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from exc
    out.write_bytes(package.data)
    if as_json:
        emit_json({"file": str(out), "label": label, "package_id": package.package_id})
        return
    typer.echo(f"wrote {out}")
    typer.echo(f"package id {package.package_id}")
