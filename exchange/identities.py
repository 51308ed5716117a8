"""The identity registry: every actor, its role, its public key and its bearer token.

Tokens are 256 random bits (``ibx_`` + base64url), shown once and stored only
as SHA-256 hashes. Lookup is by the hash; the final comparison is constant
time. A token stops working the moment its identity is revoked, it expires,
or it is rotated (:meth:`IdentityRegistry.rotate_token`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import LargeBinary, Row, String, Table, bindparam, select
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import format_rfc3339, parse_rfc3339, utcnow
from core.db import Base, Database
from core.errors import IbxError
from core.events import Event, EventRecorder
from core.keys import Ed25519PublicKey

__all__ = ["Identity", "IdentityError", "IdentityRegistry", "IssuedIdentity", "Role", "Status"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
TOKEN_PREFIX = "ibx_"  # noqa: S105 -- a public prefix, not a secret


class IdentityError(IbxError):
    """A registry operation that cannot be done as asked.

    ::

        IdentityError
        ├── IdentityNotFoundError   no such identity
        └── IdentityConflictError   it exists already, or is already revoked
    """

    title = "identity error"


class IdentityNotFoundError(IdentityError):
    """No identity of that name (or no active one)."""

    title = "identity not found"


class IdentityConflictError(IdentityError):
    """The name is taken, or the identity is already in the state asked for."""

    title = "identity conflict"


class Role(enum.StrEnum):
    """The roles of DESIGN.md."""

    ENTERPRISE = "enterprise"
    SUBBRAIN = "subbrain"
    AUDITOR = "auditor"
    SECURITY_OFFICER = "security_officer"
    SYSADMIN = "sysadmin"
    EDGE_DEVICE = "edge_device"
    COMPUTE_NODE = "compute_node"
    WITNESS = "witness"


class Status(enum.StrEnum):
    """An identity is active until revoked; revocation is final."""

    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Identity:
    """A registered actor (never carries the token)."""

    name: str
    role: Role
    status: Status
    public_key: Ed25519PublicKey | None
    created_at: datetime
    token_expires_at: datetime
    industry: str | None = None


@dataclass(frozen=True, repr=False)
class IssuedIdentity:
    """A new identity and its bearer token, which exists only here, once."""

    identity: Identity
    token: str

    def __repr__(self) -> str:
        return f"IssuedIdentity(identity={self.identity!r}, token=<redacted>)"


class _IdentityRow(Base):
    __tablename__ = "exchange_identities"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    industry: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    token_expires_at: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[str] = mapped_column(String(40))

    def to_identity(self) -> Identity:
        return _identity_of(self)


def _identity_of(row: _IdentityRow | Row[Any]) -> Identity:
    """An :class:`Identity` from its ORM row or a Core row of the same columns."""
    return Identity(
        name=row.name,
        role=Role(row.role),
        status=Status(row.status),
        public_key=Ed25519PublicKey(row.public_key) if row.public_key else None,
        created_at=parse_rfc3339(row.created_at),
        token_expires_at=parse_rfc3339(row.token_expires_at),
        industry=row.industry,
    )


_BY_TOKEN_HASH = select(_IdentityRow.__table__).where(
    _IdentityRow.__table__.c.token_hash == bindparam("digest")
)
"""The identity of a token hash: read on every authenticated request, as one Core query."""

_BY_NAME = select(_IdentityRow.__table__).where(_IdentityRow.__table__.c.name == bindparam("name"))
"""One identity by name, as one Core query (the decide route reads its subject this way)."""

_T = cast(Table, _IdentityRow.__table__)
_KEYS_OF = select(_T.c.name, _T.c.role, _T.c.status, _T.c.public_key).where(
    _T.c.name.in_(bindparam("names", expanding=True))
)
"""Role, status and key of several identities by name (a consent check's enterprises)."""

_NAMES = (
    select(_IdentityRow.__table__.c.name)
    .where(
        _IdentityRow.__table__.c.industry == bindparam("industry"),
        _IdentityRow.__table__.c.role == bindparam("role"),
    )
    .order_by(_IdentityRow.__table__.c.name)
)
"""The names of one role in one industry (the catalog's industry filter), on its index."""


def hash_token(token: str) -> bytes:
    """SHA-256 of a bearer token (tokens are 256-bit random, so no slow hash is needed)."""
    return hashlib.sha256(token.encode()).digest()


class IdentityRegistry:
    """Create, list, revoke and authenticate identities; records changes on the ledger."""

    def __init__(self, db: Database, recorder: EventRecorder, *, token_ttl: timedelta) -> None:
        self._db = db
        self._recorder = recorder
        self._ttl = token_ttl

    def create(
        self,
        name: str,
        role: Role,
        *,
        public_key: Ed25519PublicKey | None = None,
        industry: str | None = None,
        actor: str = "sysadmin",
        now: datetime | None = None,
    ) -> IssuedIdentity:
        """Register ``name`` with ``role`` and issue its bearer token.

        Raises:
            IdentityError: the name is malformed or already taken.
        """
        if not _NAME.fullmatch(name):
            raise IdentityError(
                f"identity name {name!r} must be 1-128 letters, digits or . _ @ -, "
                "starting with a letter or digit"
            )
        if industry is not None and not _NAME.fullmatch(industry):
            raise IdentityError(f"industry {industry!r} must be a short slug, e.g. lithium-battery")
        when = now or utcnow()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = when + self._ttl
        with self._db.write() as session:
            if session.get(_IdentityRow, name) is not None:
                raise IdentityConflictError(f"identity {name!r} already exists")
            row = _IdentityRow(
                name=name,
                role=role.value,
                status=Status.ACTIVE.value,
                public_key=public_key.raw if public_key else None,
                industry=industry,
                token_hash=hash_token(token),
                token_expires_at=format_rfc3339(expires),
                created_at=format_rfc3339(when),
            )
            session.add(row)
            session.flush()
            self._recorder.record(
                Event(
                    "identity.create",
                    actor,
                    {
                        "name": name,
                        "role": role.value,
                        "industry": industry,
                        "public_key": public_key.to_base64() if public_key else None,
                        "token_expires_at": format_rfc3339(expires),
                    },
                ),
                session=session,
            )
            identity = row.to_identity()
        logger.info("created identity %s (%s)", name, role.value)
        return IssuedIdentity(identity, token)

    def get(self, name: str) -> Identity:
        """The identity called ``name``.

        Raises:
            IdentityError: no such identity.
        """
        rows = self._db.fetch(_BY_NAME, {"name": name})  # one statement: no ORM session
        if not rows:
            raise IdentityNotFoundError(f"no identity named {name!r}")
        return _identity_of(rows[0])

    def active_keys(self, names: Collection[str], *, role: Role) -> dict[str, Ed25519PublicKey]:
        """The public keys of those of ``names`` that are active identities of ``role``
        with a key, in one query."""
        if not names:
            return {}
        rows = self._db.fetch(_KEYS_OF, {"names": sorted(set(names))})
        return {
            row.name: Ed25519PublicKey(row.public_key)
            for row in rows
            if row.public_key and row.role == role.value and row.status == Status.ACTIVE.value
        }

    def list(self, *, role: Role | None = None) -> list[Identity]:
        """Every identity, by name."""
        with self._db.read() as session:
            query = select(_IdentityRow).order_by(_IdentityRow.name)
            if role is not None:
                query = query.where(_IdentityRow.role == role.value)
            return [row.to_identity() for row in session.execute(query).scalars()]

    def names(self, *, role: Role, industry: str) -> tuple[str, ...]:
        """The names of every identity of ``role`` in ``industry`` (any status), by name;
        one query on the industry index."""
        rows = self._db.fetch(_NAMES, {"industry": industry, "role": role.value})
        return tuple(str(row.name) for row in rows)

    def revoke(self, name: str, *, actor: str = "sysadmin") -> Identity:
        """Revoke ``name``: its token stops working at once.

        Raises:
            IdentityError: no such identity, or already revoked.
        """
        with self._db.write() as session:
            row = session.get(_IdentityRow, name)
            if row is None:
                raise IdentityNotFoundError(f"no identity named {name!r}")
            if row.status == Status.REVOKED.value:
                raise IdentityConflictError(f"identity {name!r} is already revoked")
            row.status = Status.REVOKED.value
            session.flush()
            self._recorder.record(
                Event("identity.revoke", actor, {"name": name, "role": row.role}),
                session=session,
            )
            identity = row.to_identity()
        logger.info("revoked identity %s", name)
        return identity

    def rotate_token(self, name: str, *, actor: str, now: datetime | None = None) -> IssuedIdentity:
        """Replace the bearer token of ``name``: the old one stops working at once.

        The new token is valid for the configured lifetime from ``now``; it is
        returned once and stored only as its hash. The rotation is recorded on
        the ledger (never the token).

        Raises:
            IdentityNotFoundError: no active identity of that name.
        """
        when = now or utcnow()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = when + self._ttl
        with self._db.write() as session:
            row = session.get(_IdentityRow, name)
            if row is None or row.status != Status.ACTIVE.value:
                raise IdentityNotFoundError(f"no active identity named {name!r}")
            row.token_hash = hash_token(token)
            row.token_expires_at = format_rfc3339(expires)
            session.flush()
            self._recorder.record(
                Event(
                    "identity.token_rotate",
                    actor,
                    {
                        "name": name,
                        "role": row.role,
                        "token_expires_at": format_rfc3339(expires),
                    },
                ),
                session=session,
            )
            identity = row.to_identity()
        logger.info("rotated the token of %s", name)
        return IssuedIdentity(identity, token)

    def set_public_key(self, name: str, public_key: Ed25519PublicKey, *, actor: str) -> Identity:
        """Register (or rotate) the Ed25519 public key of ``name``.

        Raises:
            IdentityError: no such identity, or it is revoked.
        """
        with self._db.write() as session:
            row = session.get(_IdentityRow, name)
            if row is None or row.status != Status.ACTIVE.value:
                raise IdentityNotFoundError(f"no active identity named {name!r}")
            row.public_key = public_key.raw
            session.flush()
            self._recorder.record(
                Event(
                    "identity.public_key",
                    actor,
                    {"name": name, "public_key": public_key.to_base64()},
                ),
                session=session,
            )
            return row.to_identity()

    def authenticate(self, token: str, *, now: datetime | None = None) -> Identity | None:
        """The active identity holding ``token``, or None (unknown, expired or revoked)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = hash_token(token)
        rows = self._db.fetch(_BY_TOKEN_HASH, {"digest": digest})  # every request pays it
        if not rows or not hmac.compare_digest(rows[0].token_hash, digest):
            return None
        identity = _identity_of(rows[0])
        if identity.status is not Status.ACTIVE:
            return None
        if (now or utcnow()) >= identity.token_expires_at:
            return None
        return identity
