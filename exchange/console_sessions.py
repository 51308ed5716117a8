"""The web console's sessions: a signed-in browser, tied to an identity's token.

Signing in presents the identity's bearer token (administrators also their
client certificate, the second factor). The console keeps the token for the
session, **encrypted twice: under a key derived from the session id (which only the
browser holds; the table keeps its hash) and under the master key**, so neither the
database nor the database with the master key opens a live session's token; it calls
the HTTPS API with it
for every page (:mod:`exchange.console.api`): the console can do nothing the
token could not. The browser holds only a random session id in a
``__Host-`` cookie (HttpOnly, Secure, SameSite=Strict); the table keys the
session by its SHA-256, never the id itself. A session ends after
``IBX_CONSOLE_IDLE_SECONDS`` without a request, after
``IBX_CONSOLE_SESSION_HOURS`` in all, at sign-out, and as soon as the API
refuses its token (revoked or rotated). An administrator's session is bound
to the certificate it signed in with: a request over another connection
without it is sent back to sign in.

This module is the console's only door to identities and the database; the
``exchange.console`` package itself may not import the runtime or any
service (import-linter), so every page goes through the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import LargeBinary, String, delete
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import format_rfc3339, parse_rfc3339, utcnow
from core.db import Base
from exchange.errors import AuthError

if TYPE_CHECKING:
    from exchange.identities import Identity
    from exchange.runtime import Runtime

__all__ = ["ConsoleSession", "ConsoleSessions", "SecondFactorRequiredError"]

_TOKEN_AAD = b"ibx/console/session-token/v1"
_CSRF_LABEL = b"ibx/console/csrf/v1"
_SEAL_LABEL = b"ibx/console/session-seal/v1"

CONSOLE_ROLES = frozenset({"security_officer", "auditor", "enterprise", "subbrain"})
"""The identities that have pages in the console (docs/console.md)."""
ADMIN_ROLES = frozenset({"security_officer", "auditor", "sysadmin", "witness"})
"""Roles that sign in with their client certificate too."""


class SecondFactorRequiredError(AuthError):
    """An administrator signed in without the client certificate issued for them."""


class _SessionRow(Base):
    __tablename__ = "exchange_console_sessions"

    id_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    identity: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(40))
    token: Mapped[bytes] = mapped_column(LargeBinary)
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))
    last_seen: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str] = mapped_column(String(40), index=True)


@dataclass(frozen=True, repr=False)
class ConsoleSession:
    """A live session: who, their role, the token the console calls the API with, and
    the CSRF token every form of this session carries."""

    session_id: str
    identity: str
    role: str
    token: str
    csrf: str

    def __repr__(self) -> str:  # never print the token or the ids
        return f"ConsoleSession({self.identity!r}, {self.role})"

    def csrf_matches(self, presented: str | None) -> bool:
        """Whether ``presented`` is this session's CSRF token (constant time)."""
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


def _id_hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def _csrf(session_id: str) -> str:
    """The session's CSRF token: an HMAC of its secret id (so it needs no storage)."""
    return hmac.new(session_id.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def _session_key(session_id: str) -> bytes:
    """The key only the cookie's holder can derive (the table keeps the id's hash)."""
    return hmac.new(session_id.encode(), _SEAL_LABEL, hashlib.sha256).digest()


def _seal(session_id: str, plaintext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(_session_key(session_id)).encrypt(nonce, plaintext, _SEAL_LABEL)


def _open(session_id: str, sealed: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(_session_key(session_id)).decrypt(sealed[:12], sealed[12:], _SEAL_LABEL)


def _fingerprint(der: bytes | None) -> bytes | None:
    return None if der is None else hashlib.sha256(der).digest()


class ConsoleSessions:
    """The ``exchange_console_sessions`` table."""

    def __init__(self, runtime: Runtime, *, idle: timedelta, lifetime: timedelta) -> None:
        self._runtime = runtime
        self.idle = idle
        self.lifetime = lifetime

    def open(
        self, token: str, *, certificate: bytes | None, source: str, now: datetime | None = None
    ) -> ConsoleSession:
        """Sign in with ``token`` (and, for administrators, the TLS client ``certificate``
        in DER): a new session. A failed attempt counts towards the source's lockout,
        as a failed API call does.

        Raises:
            AuthLockedOutError: the source is locked out (too many failures).
            AuthError: the token is unknown, expired or revoked, or its identity has no
                console pages.
            SecondFactorRequiredError: an administrator without their client certificate.
        """
        from exchange.credentials import authenticate_token

        at = now or utcnow()
        guard = self._runtime.auth_guard
        guard.check(source, now=at)
        try:
            identity = authenticate_token(self._runtime, token)
        except AuthError:
            guard.failed(source, now=at)
            raise
        role = str(identity.role)
        if role not in CONSOLE_ROLES:  # first: a witness needs no certificate to learn this
            raise AuthError(f"the console has no pages for the {role} role; use the CLI")
        if role in ADMIN_ROLES and not self._second_factor(certificate, identity):
            raise SecondFactorRequiredError(
                "administrators sign in with their client certificate too "
                "(ibx identity cert issues it); none valid was presented"
            )
        session_id = secrets.token_urlsafe(32)
        stamp = format_rfc3339(at)
        row = _SessionRow(
            id_hash=_id_hash(session_id),
            identity=identity.name,
            role=role,
            token=self._runtime.master_key.encrypt(
                _seal(session_id, token.strip().encode()), aad=_TOKEN_AAD + _id_hash(session_id)
            ),
            certificate=_fingerprint(certificate) if role in ADMIN_ROLES else None,
            created_at=stamp,
            last_seen=stamp,
            expires_at=format_rfc3339(at + self.lifetime),
        )
        with self._runtime.db.write() as s:
            s.add(row)
            idle_since = format_rfc3339(at - self.idle)
            s.execute(
                delete(_SessionRow).where(
                    (_SessionRow.expires_at < stamp) | (_SessionRow.last_seen < idle_since)
                )
            )
        return ConsoleSession(session_id, identity.name, role, token.strip(), _csrf(session_id))

    def _second_factor(self, certificate: bytes | None, identity: Identity) -> bool:
        return certificate is not None and self._runtime.admin_certificates.belongs_to(
            certificate, identity.name, identity=identity
        )

    def resume(
        self, session_id: str | None, *, certificate: bytes | None, now: datetime | None = None
    ) -> ConsoleSession | None:
        """The live session of this cookie, its idle clock restarted; None when there is
        none, it expired (idle or in all), or an administrator's certificate is missing
        or another one."""
        if not session_id or len(session_id) > 100:
            return None
        at = now or utcnow()
        key = _id_hash(session_id)
        with self._runtime.db.write() as s:
            row = s.get(_SessionRow, key)
            if row is None:
                return None
            expired = parse_rfc3339(row.expires_at) <= at or (
                parse_rfc3339(row.last_seen) + self.idle <= at
            )
            if expired:
                s.delete(row)
                return None
            if row.certificate is not None and not hmac.compare_digest(
                row.certificate, _fingerprint(certificate) or b""
            ):
                return None
            row.last_seen = format_rfc3339(at)
            sealed = self._runtime.master_key.decrypt(row.token, aad=_TOKEN_AAD + key)
            token = _open(session_id, sealed).decode()
            return ConsoleSession(session_id, row.identity, row.role, token, _csrf(session_id))

    def close(self, session_id: str | None) -> None:
        """End the session (sign-out, or the API refused its token)."""
        if not session_id:
            return
        with self._runtime.db.write() as s:
            s.execute(delete(_SessionRow).where(_SessionRow.id_hash == _id_hash(session_id)))
