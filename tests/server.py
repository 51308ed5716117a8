"""Start a real ``ibx serve`` process on a free port for end-to-end tests.

``running_exchange(data_dir)`` serves the API over TLS, as ``ibx serve``
does by default, and yields an :class:`ExchangeUrl`: the base URL (a ``str``,
so ``f"{base}/v1/me"`` works) that also carries the CA bundle clients verify
the server with. ``tls=False`` runs ``ibx serve --plain-http`` on loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests import zygote

CA_BUNDLE_NAME = "ca-bundle.pem"  # exchange.deployment_ca.CA_BUNDLE_NAME, without importing it


TEST_AUTH_LIMITS = {"IBX_AUTH_MAX_FAILURES": "100000"}
"""Test servers' lockout threshold: out of reach, unless a test sets its own."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ExchangeUrl(str):
    """The base URL of a running exchange, plus what a client needs to trust it."""

    ca_bundle: Path | None
    """The deployment CA's chain (None for plain HTTP)."""
    log_path: Path | None
    """Where the server's stderr goes."""

    def __new__(cls, url: str, ca_bundle: Path | None, log_path: Path | None = None) -> ExchangeUrl:
        made = super().__new__(cls, url)
        made.ca_bundle = ca_bundle
        made.log_path = log_path
        return made

    def log(self) -> str:
        """What the server has written to stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    @property
    def url(self) -> str:
        """The base URL as a plain string."""
        return str.__str__(self)

    def verify(self, client_cert: Path | None = None) -> ssl.SSLContext | bool:
        """What httpx's ``verify=`` takes to trust this exchange (and present ``client_cert``,
        a PEM file holding the certificate chain and, beside it, NAME.key)."""
        if self.ca_bundle is None:
            return True
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        if client_cert is not None:
            context.load_cert_chain(client_cert, client_cert.with_suffix(".key"))
        return context

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client of this exchange (``client_cert=`` for an administrator)."""
        client_cert = kwargs.pop("client_cert", None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.url, verify=self.verify(client_cert), headers=headers, **kwargs
        )

    def cli_args(self) -> list[str]:
        """``--exchange URL [--ca-bundle FILE]`` for a user command."""
        args = ["--exchange", self.url]
        if self.ca_bundle is not None:
            args += ["--ca-bundle", str(self.ca_bundle)]
        return args


@contextlib.contextmanager
def running_exchange(
    data_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    tls: bool = True,
    ca_bundle: Path | None = None,
    fork: bool = True,
) -> Iterator[ExchangeUrl]:
    """Run ``ibx --data-dir DIR serve --init`` until the block ends; yields the base URL.

    With ``tls`` (the default) the API speaks HTTPS with a certificate from the
    deployment CA (created on first start), verified with its bundle in the data
    dir, or with ``ca_bundle`` (e.g. for ``--tls-cert``); ``tls=False`` passes
    ``--plain-http``. The server's stderr goes to a file (:meth:`ExchangeUrl.log`).

    The server is forked from the test process's preloaded interpreter
    (:func:`tests.zygote.shared`: the real entry point and process, without a
    new interpreter's seconds of imports); ``fork=False`` starts a new
    interpreter (``python -m exchange.cli``), for a test of a fresh start.

    Every test runs from 127.0.0.1, so the failed-authentication lockout is set
    out of reach (:data:`TEST_AUTH_LIMITS`) unless ``env`` sets it: a test of
    401s must not meet a 429 (``tests/exchange/test_lockout.py`` tests that).
    """
    port = free_port()
    scheme = "https" if tls else "http"
    log_dir = Path(tempfile.mkdtemp(prefix="ibx-serve-"))
    log_path = log_dir / "stderr.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [
            *(zygote.ibx_argv() if fork else [sys.executable, "-m", "exchange.cli"]),
            "--data-dir",
            str(data_dir),
            "serve",
            "--init",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *([] if tls else ["--plain-http"]),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        env={**os.environ, **TEST_AUTH_LIMITS, **(env or {})},
    )
    bundle = (ca_bundle or Path(data_dir).resolve() / CA_BUNDLE_NAME) if tls else None
    base = ExchangeUrl(f"{scheme}://127.0.0.1:{port}", bundle, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ibx serve exited early: {base.log()}")
            try:
                if base.ca_bundle is None or base.ca_bundle.is_file():
                    answer = httpx.get(f"{base}/healthz", timeout=1, verify=base.verify())
                    if answer.status_code == 200:
                        break
            except (httpx.TransportError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("ibx serve did not come up within 60 s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
        shutil.rmtree(log_dir, ignore_errors=True)
