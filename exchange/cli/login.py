"""``ibx login``: store a profile (exchange URL, pinned CA, token, an administrator's client
certificate paths) so no command needs ``--token``.

Trust is bootstrapped as ``step ca bootstrap`` does it: an administrator
reads the root's fingerprint on the server (``ibx pki fingerprint``) and
hands it to users out of band; ``ibx login --ca-fingerprint`` fetches the CA
bundle, refuses it unless its root has that SHA-256, and pins it. The token
is read from ``--token-file``, or from standard input (a prompt that does not
echo on a terminal) — never from the command line, where ``ps`` shows it.
"""

from __future__ import annotations

import getpass
import hmac
import os
import sys
from pathlib import Path

import typer

from core.errors import ConfigurationError
from exchange.cli._profiles import DEFAULT_PROFILE, Profile, ProfileStore, read_token_file

__all__ = ["login"]

_TIMEOUT = 10.0


def _root_fingerprint(bundle_pem: bytes) -> str:
    """SHA-256 (hex) of the self-signed certificate in ``bundle_pem``.

    Raises:
        ConfigurationError: no certificate, or no self-signed root among them.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        certs = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError as exc:
        raise ConfigurationError(f"the exchange's CA bundle is not PEM: {exc}") from exc
    roots = [c for c in certs if c.subject == c.issuer]
    if len(roots) != 1:
        raise ConfigurationError("the exchange's CA bundle has no single self-signed root")
    return roots[0].fingerprint(hashes.SHA256()).hex()


def _fetch_bundle(exchange: str) -> bytes:
    import httpx

    # Not verified yet: what is fetched is accepted only if it matches the pin.
    with httpx.Client(verify=False, timeout=_TIMEOUT) as client:  # noqa: S501
        response = client.get(f"{exchange.rstrip('/')}/v1/pki/ca")
    if response.status_code != 200:
        raise ConfigurationError(
            f"{exchange} answered {response.status_code} for its CA bundle (/v1/pki/ca); "
            "is the edge CA initialised (ibx pki init)?"
        )
    return response.content


def _read_token(token_file: Path | None) -> str:
    if token_file is not None:
        return read_token_file(token_file)
    typed = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = typed.strip()
    if not token:
        raise ConfigurationError("no token given (use --token-file FILE or type it when asked)")
    return token


def login(  # noqa: PLR0917 -- one parameter per command-line option
    exchange: str = typer.Option(..., "--exchange", help="the exchange's URL"),
    ca_fingerprint: str | None = typer.Option(
        None,
        "--ca-fingerprint",
        help="SHA-256 of the exchange's root certificate (ibx pki fingerprint on the server)",
    ),
    ca_bundle: Path | None = typer.Option(  # noqa: B008
        None,
        "--ca-bundle",
        help="a CA bundle obtained out of band, instead of --ca-fingerprint",
        exists=True,
        dir_okay=False,
    ),
    token_file: Path | None = typer.Option(  # noqa: B008
        None, "--token-file", help="read the token from this file (mode 0600)"
    ),
    profile: str = typer.Option(DEFAULT_PROFILE, "--profile", help="name of the profile"),
    client_cert: Path | None = typer.Option(  # noqa: B008
        None,
        "--client-cert",
        help="administrators: your client certificate (PEM; ibx identity create --cert-out)",
        exists=True,
        dir_okay=False,
    ),
    client_key: Path | None = typer.Option(  # noqa: B008
        None,
        "--client-key",
        help="its private key (PEM, mode 0600; default: in the certificate file)",
        exists=True,
        dir_okay=False,
    ),
) -> None:
    """Store a profile (exchange URL, pinned CA, token) for later commands."""
    if (ca_fingerprint is None) == (ca_bundle is None):
        raise typer.BadParameter("give exactly one of --ca-fingerprint and --ca-bundle")
    if client_key is not None and client_cert is None:
        raise typer.BadParameter("--client-key goes with --client-cert")
    if ca_bundle is not None:
        bundle = ca_bundle.read_bytes()
        pinned = _root_fingerprint(bundle)
    else:
        assert ca_fingerprint is not None
        wanted = ca_fingerprint.replace(":", "").strip().lower()
        bundle = _fetch_bundle(exchange)
        pinned = _root_fingerprint(bundle)
        if not hmac.compare_digest(pinned, wanted):
            raise ConfigurationError(
                f"the CA bundle {exchange} served has root fingerprint {pinned}, "
                f"not {wanted}: refusing to trust it"
            )
    token = _read_token(token_file)
    store = ProfileStore.from_environment(os.environ)
    path = store.save(
        Profile(
            name=profile,
            exchange=exchange.rstrip("/"),
            token=token,
            ca_bundle_pem=bundle.decode("ascii"),
            ca_fingerprint=pinned,
            client_cert=str(client_cert.resolve()) if client_cert else None,
            client_key=str(client_key.resolve()) if client_key else None,
        )
    )
    typer.echo(f"profile {profile!r} saved in {path} (CA root {pinned[:16]}…)")
