"""``Idempotency-Key`` for the POSTs that change state: a retry replays, it never acts twice.

A client that sends ``Idempotency-Key: K`` with a POST to a write route (one
whose rule in :data:`exchange.access.ROUTES` is ``write``: registering a
dataset, submitting a consent or a revocation, creating an edge bootstrap
token, proposing/testing/approving/activating a policy, revoking a
certificate, rotating a token) gets, for every retry with the same key and the
same body within :data:`TTL`, the first answer again (status and body, marked
``Idempotent-Replayed: true``) and the action is not repeated. The same key
with another body is refused (422 problem); a retry while the first request
still runs gets 409. The header is ignored on other routes.

An entry is kept per (caller, key, method, path). The caller is a
domain-separated SHA-256 of the ``Authorization`` header, so the table holds
neither tokens nor anything a token can be found from; the body is kept as its
SHA-256 only. Only successful (2xx) answers are kept: an error acted on
nothing (the exchange's writes are transactions), so its retry runs again.
A key is claimed (written) only for a token that authenticates; a caller who
is nobody writes nothing here and meets the access check's 401.

Stored answers are encrypted with the deployment's master key (AES-256-GCM,
bound to the entry): some carry a one-time secret (a rotated bearer token, an
edge bootstrap token) that the client would otherwise lose with a lost
response, and none of them may lie in the clear in the database. A replay goes
only to the holder of the same ``Authorization`` header, who received (or was
owed) that very answer; replay does not re-run authorization, so a rotated
token's holder can still fetch the new token it was issued.

Guarantee: at most once, except that a process that dies between the action's
commit and storing its answer leaves a pending entry, which a retry may take
over after :data:`PENDING_TIMEOUT`.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, LargeBinary, String, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.clock import format_rfc3339, utcnow
from core.db import Base, Database
from core.keys import MasterKey
from exchange.access import ROUTES
from exchange.errors import problem
from exchange.route_match import route_template

__all__ = [
    "HEADER",
    "MAX_KEY_LENGTH",
    "PENDING_TIMEOUT",
    "REPLAYED_HEADER",
    "TTL",
    "Claim",
    "ClaimOutcome",
    "Idempotency",
    "IdempotencyStore",
]

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
"""A key is 1-255 visible ASCII characters (a UUID is 36)."""
TTL = timedelta(hours=24)
"""How long an answer is kept for replay."""
PENDING_TIMEOUT = timedelta(minutes=5)
"""After this, a request that never finished (its process died) no longer holds its key."""

_KEY_HEADER = HEADER.lower().encode()
_PURGE_EVERY_S = 60.0


class _IdempotencyRow(Base):
    __tablename__ = "exchange_idempotency"

    entry: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(128), nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[str] = mapped_column(String(40), index=True)


class ClaimOutcome(enum.Enum):
    """What a request with a key may do."""

    ACT = "act"
    """First of its key (or the earlier one expired): run it, then store the answer."""
    REPLAY = "replay"
    """Answered before with the same body: send that answer again."""
    MISMATCH = "mismatch"
    """The key was used with another body."""
    IN_PROGRESS = "in_progress"
    """The first request with this key has not finished."""


@dataclass(frozen=True, repr=False)
class Claim:
    """The outcome of claiming a key, and for a replay the stored answer."""

    outcome: ClaimOutcome
    status: int | None = None
    content_type: str | None = None
    body: bytes = b""

    def __repr__(self) -> str:  # the body may hold a one-time secret
        return f"Claim({self.outcome.value}, status={self.status})"


def entry_id(authorization: bytes, key: str, method: str, path: str) -> bytes:
    """The entry's primary key: SHA-256 over the caller's header hash, key, method, path
    (length-prefixed, so no two tuples collide)."""
    caller = hashlib.sha256(b"ibx/idempotency/caller/v1\x00" + authorization).digest()
    digest = hashlib.sha256(b"ibx/idempotency/entry/v1\x00" + caller)
    for part in (key.encode(), method.encode(), path.encode()):
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.digest()


class IdempotencyStore:
    """The ``exchange_idempotency`` table: claim a key, complete or release it."""

    def __init__(self, db: Database, master: MasterKey) -> None:
        self._db = db
        self._master = master
        self._purged_at = 0.0
        self._purge_lock = threading.Lock()

    @staticmethod
    def _aad(entry: bytes) -> bytes:
        return b"ibx/idempotency/answer/v1\x00" + entry

    def _judge(
        self, entry: bytes, row: _IdempotencyRow | None, request_hash: bytes, when: datetime
    ) -> Claim | None:
        """What a live entry means for this request; None when there is none to honour
        (absent, expired, or pending past :data:`PENDING_TIMEOUT`: its process died)."""
        if row is None or row.created_at < format_rfc3339(when - TTL):
            return None
        if row.request_hash != request_hash:
            return Claim(ClaimOutcome.MISMATCH)
        if row.status is None:
            if row.created_at < format_rfc3339(when - PENDING_TIMEOUT):
                return None
            return Claim(ClaimOutcome.IN_PROGRESS)
        body = self._master.decrypt(row.body or b"", aad=self._aad(entry))
        return Claim(ClaimOutcome.REPLAY, row.status, row.content_type, body)

    def find(
        self, entry: bytes, request_hash: bytes, *, now: datetime | None = None
    ) -> Claim | None:
        """The live entry's meaning for this request (a read; nothing is claimed).

        Raises:
            KeyDecryptionError: a stored answer does not open under the master key.
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        with self._db.read() as session:
            row = session.get(_IdempotencyRow, entry)
            return self._judge(entry, row, request_hash, now or utcnow())

    def claim(self, entry: bytes, request_hash: bytes, *, now: datetime | None = None) -> Claim:
        """Claim ``entry`` for a request whose body hashes to ``request_hash``.

        Raises:
            KeyDecryptionError: a stored answer does not open under the master key.
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        when = now or utcnow()
        self._purge(when)
        try:
            with self._db.write() as session:
                row = session.get(_IdempotencyRow, entry)
                judged = self._judge(entry, row, request_hash, when)
                if judged is not None:
                    return judged
                if row is None:
                    session.add(
                        _IdempotencyRow(
                            entry=entry,
                            request_hash=request_hash,
                            created_at=format_rfc3339(when),
                        )
                    )
                else:  # expired, or abandoned by a process that died: start afresh
                    row.request_hash = request_hash
                    row.status = None
                    row.content_type = None
                    row.body = None
                    row.created_at = format_rfc3339(when)
                return Claim(ClaimOutcome.ACT)
        except IntegrityError:  # another replica inserted the same key first
            return Claim(ClaimOutcome.IN_PROGRESS)

    def complete(self, entry: bytes, status: int, content_type: str | None, body: bytes) -> None:
        """Store the answer of the request that claimed ``entry`` (encrypted).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        sealed = self._master.encrypt(body, aad=self._aad(entry))
        with self._db.write() as session:
            row = session.get(_IdempotencyRow, entry)
            if row is None:
                return
            row.status = status
            row.content_type = content_type[:128] if content_type else None
            row.body = sealed

    def release(self, entry: bytes) -> None:
        """Forget ``entry``: its request failed, so a retry should act.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        with self._db.write() as session:
            session.execute(delete(_IdempotencyRow).where(_IdempotencyRow.entry == entry))

    def _purge(self, now: datetime) -> None:
        """Delete expired entries, at most once a minute per process."""
        with self._purge_lock:
            if time.monotonic() - self._purged_at < _PURGE_EVERY_S:
                return
            self._purged_at = time.monotonic()
        with self._db.write() as session:
            session.execute(
                delete(_IdempotencyRow).where(
                    _IdempotencyRow.created_at < format_rfc3339(now - TTL)
                )
            )


def _key_of(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == _KEY_HEADER:
            return bytes(value)
    return None


def _authorization(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            return bytes(value)
    return None


def _well_formed(key: bytes) -> str | None:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or any(not 0x21 <= b <= 0x7E for b in key):
        return None
    return key.decode("ascii")


class Idempotency:
    """ASGI middleware: ``Idempotency-Key`` for every POST to a write route.

    It sits inside the body limit (the body it hashes is bounded) and needs no
    code in any route: the rule in :data:`ROUTES` whose template the path
    matches says whether it writes.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: IdempotencyStore,
        authenticate: Callable[[str], object | None],
    ) -> None:
        """``authenticate(token)`` is None for a token that is not a live identity's."""
        self._app = app
        self._store = store
        self._authenticate = authenticate

    def _decide(self, entry: bytes, request_hash: bytes, authorization: bytes) -> Claim | None:
        """A live entry's meaning, else a new claim for an authenticated caller, else None
        (the request goes on unremembered: the access check answers 401, and nothing was
        written for a caller who is nobody)."""
        found = self._store.find(entry, request_hash)
        if found is not None:
            return found
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or self._authenticate(token.strip()) is None:
            return None
        return self._store.claim(entry, request_hash)

    @staticmethod
    def _is_write(scope: Scope) -> bool:
        template = route_template(scope)
        access = ROUTES.get(("POST", template)) if template is not None else None
        return access is not None and access.write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self._app(scope, receive, send)
            return
        raw_key = _key_of(scope)
        authorization = _authorization(scope)
        if raw_key is None or authorization is None or not self._is_write(scope):
            await self._app(scope, receive, send)
            return
        key = _well_formed(raw_key)
        if key is None:
            await problem(
                400,
                "invalid request",
                f"{HEADER} must be 1-{MAX_KEY_LENGTH} visible ASCII characters",
            )(scope, receive, send)
            return
        body = await _read_body(receive)
        entry = entry_id(authorization, key, "POST", scope.get("path", ""))
        claim = await run_in_threadpool(
            self._decide, entry, hashlib.sha256(body).digest(), authorization
        )
        if claim is None:
            await self._app(scope, _replay_receive(body, receive), send)
            return
        if claim.outcome is ClaimOutcome.MISMATCH:
            await problem(
                422,
                "idempotency key reused",
                f"this {HEADER} was used with a different request body; "
                "a new request needs a new key",
            )(scope, receive, send)
            return
        if claim.outcome is ClaimOutcome.IN_PROGRESS:
            await problem(
                409,
                "request in progress",
                f"a request with this {HEADER} is still being processed; retry later",
            )(scope, receive, send)
            return
        if claim.outcome is ClaimOutcome.REPLAY:
            replay = Response(
                claim.body,
                status_code=claim.status or 200,
                media_type=claim.content_type,
                headers={REPLAYED_HEADER: "true"},
            )
            await replay(scope, _replay_receive(b"", receive), send)
            return
        await self._act(scope, _replay_receive(body, receive), send, entry)

    async def _act(self, scope: Scope, receive: Receive, send: Send, entry: bytes) -> None:
        """Run the request; store (or release) its answer *before* the client sees it.

        The answer is held until its last body chunk, stored, and only then
        sent: a client that retries the moment it has the answer finds it
        stored (a replay), never "in progress".
        """
        status = 0
        content_type: str | None = None
        held: list[Message] = []
        settled = False

        async def settle() -> None:
            nonlocal settled
            settled = True
            if 200 <= status < 300:
                parts = (m.get("body", b"") for m in held if m["type"] == "http.response.body")
                body = b"".join(parts)
                await run_in_threadpool(self._store.complete, entry, status, content_type, body)
            else:
                await run_in_threadpool(self._store.release, entry)
            for message in held:
                await send(message)
            held.clear()

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if settled:
                await send(message)
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await settle()

        try:
            await self._app(scope, receive, capture)
        except BaseException:
            if not settled:
                await run_in_threadpool(self._store.release, entry)
            raise
        if not settled:
            await settle()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay_receive(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
