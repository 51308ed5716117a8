"""One client for every user command: the same HTTP API, local or remote.

``ExchangeClient.remote(url, ...)`` speaks HTTPS to a running exchange;
``ExchangeClient.local(runtime, ...)`` runs the very same ASGI application in
this process (the one-machine default on a data dir). Either way a command
goes through the same routes, the same access table and decision point, the
same errors: a problem+json answer becomes :class:`RemoteRefusalError` with
the server's title, detail and error code, so the CLI prints and exits the
same in both modes.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from exchange.error_table import RemoteRefusalError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message

    from exchange.runtime import Runtime

__all__ = ["DEFAULT_TIMEOUT", "ExchangeClient", "InProcessTransport", "tls_context"]

DEFAULT_TIMEOUT = 60.0
"""Seconds to wait for an answer (policy tests run in a sandbox and take seconds)."""


class InProcessTransport(httpx.BaseTransport):
    """An httpx transport that calls an ASGI app in this process, marked as local.

    The scope carries the ``ibx.local`` extension: the caller holds the data dir
    and its master key, which stands for an administrator's second factor.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Run one request through the app and return its complete response."""
        import asyncio  # only the local mode runs an event loop here

        body = request.read()
        status, headers, content = asyncio.run(self._call(request, body))
        return httpx.Response(status, headers=headers, content=content, request=request)

    async def _call(
        self, request: httpx.Request, body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        from exchange.auth import LOCAL_EXTENSION

        url = request.url
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": url.path,
            "raw_path": url.raw_path.split(b"?", 1)[0],
            "query_string": url.query,
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": ("127.0.0.1", 0),
            "server": ("ibx.local", 80),
            "extensions": {LOCAL_EXTENSION: True},
        }
        sent = False
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)
        return status, headers, b"".join(chunks)


def tls_context(
    ca_bundle: Path | str | None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> ssl.SSLContext | bool:
    """What httpx verifies the server with: only the given CA bundle (a path or PEM
    text), else the system's trust store; and the client certificate administrators
    present."""
    if ca_bundle is None and client_cert is None:
        return True
    if ca_bundle is None:
        context = ssl.create_default_context()  # the system's trust store
    else:  # only the pinned CA: a system-trusted certificate for another name proves nothing
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname checked, peer verified
        if isinstance(ca_bundle, Path):
            context.load_verify_locations(cafile=str(ca_bundle))
        else:
            context.load_verify_locations(cadata=ca_bundle)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return context


class ExchangeClient:
    """Calls the exchange's API as one identity; refusals raise :class:`RemoteRefusalError`."""

    def __init__(self, http: httpx.Client, *, where: str) -> None:
        self._http = http
        self.where = where
        """The exchange URL, or ``local`` for the in-process mode."""

    @classmethod
    def remote(
        cls,
        url: str,
        *,
        token: str | None,
        ca_bundle: Path | str | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ExchangeClient:
        """A client of the exchange at ``url`` (``https://``; ``http://`` for loopback tests)."""
        http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=_auth_headers(token),
            verify=tls_context(ca_bundle, client_cert, client_key),
            timeout=timeout,
        )
        return cls(http, where=url)

    @classmethod
    def local(cls, runtime: Runtime, *, token: str | None) -> ExchangeClient:
        """A client of the exchange on ``runtime``'s data dir, in this process."""
        from exchange.app import create_app

        app = create_app(runtime=runtime)
        http = httpx.Client(
            base_url="http://ibx.local",
            headers=_auth_headers(token),
            transport=InProcessTransport(app),
        )
        return cls(http, where="local")

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; a 4xx/5xx answer raises.

        Raises:
            RemoteRefusalError: the exchange refused (its status, title, detail and code).
            httpx.HTTPError: it could not be reached.
        """
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        response = self._http.request(
            method, path, params=clean, json=json, content=content, headers=headers
        )
        if response.status_code >= 400:
            raise refusal(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        """``GET path`` with query ``params``; the JSON body."""
        return self.call("GET", path, params=params).json()

    def post(self, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None) -> Any:
        """``POST path`` with a JSON body; the JSON answer (None when empty)."""
        response = self.call("POST", path, json=body, headers=headers)
        return response.json() if response.content else None

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, following ``next_cursor`` to the end."""
        cursor: str | None = None
        while True:
            page = self.get(path, **params, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def refusal(response: httpx.Response) -> RemoteRefusalError:
    """The error an HTTP error response stands for (problem+json, or plain text)."""
    title = None
    detail = response.reason_phrase or f"HTTP {response.status_code}"
    code = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        title = body.get("title") if isinstance(body.get("title"), str) else None
        if isinstance(body.get("detail"), str):
            detail = body["detail"]
        elif title:
            detail = title
        code = body.get("code") if isinstance(body.get("code"), str) else None
    return RemoteRefusalError(detail, status=response.status_code, title=title, code=code)
