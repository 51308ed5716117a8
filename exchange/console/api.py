"""The console calls the HTTPS API as the signed-in identity, in this process.

Every page reads and writes through :class:`ConsoleApi`: a request to the very
same ASGI application, with the session's bearer token and the browser's own
connection facts (client address for the lockout, the TLS client certificate
for an administrator's second factor). So a page passes the same access
table, decision point, consent checks and errors as ``curl`` with the token
would: the console can do nothing the token could not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import Message

__all__ = ["ApiRefusal", "ApiResponse", "ConsoleApi"]


class ApiRefusal(Exception):  # noqa: N818 -- what the page shows: the API's refusal
    """The API answered with a problem (RFC 9457): its status, title, detail and code."""

    def __init__(self, status: int, title: str, detail: str, code: str | None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code


@dataclass(frozen=True)
class ApiResponse:
    """An answer: status, content type and body."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def text(self) -> str:
        """The body as text."""
        return self.body.decode()


class ConsoleApi:
    """The API as one identity, over the browser's connection."""

    def __init__(self, request: Request, token: str) -> None:
        self._outer = request
        self._token = token

    async def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` (query from ``params``; None values left out) and return its JSON.

        Raises:
            ApiRefusal: the API refused (4xx/5xx problem).
        """
        return (await self.call("GET", path, params=params)).json()

    async def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """POST JSON to ``path`` and return the JSON answer (None for an empty one).

        Raises:
            ApiRefusal: the API refused.
        """
        answer = await self.call("POST", path, body=body)
        return answer.json() if answer.body else None

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        accept: str = "application/json",
    ) -> ApiResponse:
        """One request; any status below 400 is returned, a problem raised.

        Raises:
            ApiRefusal: the API refused.
        """
        query = urlencode(
            [(k, str(v)) for k, v in (params or {}).items() if v is not None], doseq=False
        )
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [
            (b"authorization", f"Bearer {self._token}".encode()),
            (b"accept", accept.encode()),
            (b"host", (self._outer.headers.get("host") or "ibx").encode()),
        ]
        if body is not None:
            headers.append((b"content-type", b"application/json"))
            headers.append((b"content-length", str(len(payload)).encode()))
        outer = self._outer.scope
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": outer.get("scheme", "https"),
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": outer.get("client"),
            "server": outer.get("server"),
            # the browser's TLS facts: its client certificate is the second factor
            "extensions": {"tls": (outer.get("extensions") or {}).get("tls", {})},
            "state": {},
        }
        status, content_type, content = await _call(self._outer.app, scope, payload)
        if status >= 400:
            raise _refusal(status, content_type, content)
        return ApiResponse(status, content_type, content)


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> tuple[int, str, bytes]:
    sent = False
    status = 500
    content_type = ""
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, content_type
        if message["type"] == "http.response.start":
            status = message["status"]
            for key, value in message.get("headers", []):
                if key.lower() == b"content-type":
                    content_type = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, content_type, b"".join(chunks)


def _refusal(status: int, content_type: str, content: bytes) -> ApiRefusal:
    title, detail, code = "error", content.decode(errors="replace")[:500], None
    if "json" in content_type:
        try:
            problem = json.loads(content)
        except ValueError:
            problem = {}
        if isinstance(problem, dict):
            title = str(problem.get("title", title))
            detail = str(problem.get("detail", detail))
            raw_code = problem.get("code") or problem.get("error_code")
            code = None if raw_code is None else str(raw_code)
    return ApiRefusal(status, title, detail, code)
