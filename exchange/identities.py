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
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import LargeBinary, Row, String, Table, bindparam, select
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import format_rfc3339, parse_rfc3339, utcnow
from core.db import Base, Database
from core.duty import SignedDuty, check_duty
from core.errors import IbxError
from core.events import Event
from core.keys import Ed25519PublicKey
from exchange.identity_entries import (
    IdentityCreateEntry,
    IdentityRevokeEntry,
    PublicKeyEntry,
    TokenRotateEntry,
)

if TYPE_CHECKING:
    import ledger
    from exchange.duty_keys import LedgerDutyKeys

__all__ = [
    "ADMINISTRATIVE_ROLES",
    "BOOTSTRAP_ACTOR",
    "Identity",
    "IdentityError",
    "IdentityRegistry",
    "IssuedIdentity",
    "Role",
    "Status",
]

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


ADMINISTRATIVE_ROLES: Final = frozenset(
    {Role.SECURITY_OFFICER, Role.AUDITOR, Role.WITNESS, Role.SYSADMIN}
)
"""Roles that carry a ledgered Ed25519 key and are registered (and revoked) only with a
security officer's signed duty; the two bootstrap officers of ``ibx init`` excepted."""

BOOTSTRAP_ACTOR: Final = "ibx-init"
"""The actor of the bootstrap officers' registrations."""


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
    """Create, list, revoke and authenticate identities; records changes on the ledger.

    Administrative identities (:data:`ADMINISTRATIVE_ROLES`) carry an Ed25519
    key and are registered and revoked only with a security officer's signed
    duty, verified against the officer's ledgered key (:attr:`duty_keys`).
    """

    def __init__(self, db: Database, log: ledger.Ledger, *, token_ttl: timedelta) -> None:
        self._db = db
        self._recorder = log
        self._ledger = log
        self._ttl = token_ttl

    @cached_property
    def duty_keys(self) -> LedgerDutyKeys:
        """Officers' (and every administrator's) keys as the ledger records them."""
        from exchange.duty_keys import LedgerDutyKeys

        return LedgerDutyKeys(self, self._ledger)

    @property
    def origin(self) -> str:
        """The ledger origin every duty must name."""
        return self._ledger.config.origin

    def _check_name(self, name: str, industry: str | None) -> None:
        if not _NAME.fullmatch(name):
            raise IdentityError(
                f"identity name {name!r} must be 1-128 letters, digits or . _ @ -, "
                "starting with a letter or digit"
            )
        if industry is not None and not _NAME.fullmatch(industry):
            raise IdentityError(f"industry {industry!r} must be a short slug, e.g. lithium-battery")

    def create(
        self,
        name: str,
        role: Role,
        *,
        public_key: Ed25519PublicKey | None = None,
        industry: str | None = None,
        actor: str = "sysadmin",
        now: datetime | None = None,
        duty: SignedDuty | None = None,
    ) -> IssuedIdentity:
        """Register ``name`` with ``role`` and issue its bearer token.

        An administrative identity needs ``public_key`` and ``duty``: an
        ``identity.create`` on ``name`` with details ``{"role", "public_key"}``
        signed by an active security officer, checked against the officer's
        ledgered key before anything is written; the officer is the entry's
        actor and the duty goes into its payload.

        Raises:
            IdentityError: the name is malformed or already taken; an administrator
                without a key or a duty, or a duty for another identity.
            DutyError: the duty is not a valid officer's signature on this act.
        """
        self._check_name(name, industry)
        when = now or utcnow()
        entry_duty = None
        if role in ADMINISTRATIVE_ROLES:
            actor = self._check_registration(name, role, public_key, duty, now=when)
            entry_duty = duty.to_dict() if duty is not None else None
        elif duty is not None:
            raise IdentityError(
                f"{role} identities are registered without an officer's duty; "
                "only administrators' registrations are signed"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = when + self._ttl
        with self._db.write() as session:
            if session.get(_IdentityRow, name) is not None:
                raise IdentityConflictError(f"identity {name!r} already exists")
            row = self._row(name, role, public_key, industry, token, expires, when)
            session.add(row)
            session.flush()
            entry = IdentityCreateEntry(
                name=name,
                role=role.value,
                industry=industry,
                public_key=public_key.to_base64() if public_key else None,
                token_expires_at=format_rfc3339(expires),
                duty=entry_duty,
            )
            self._recorder.record(
                Event(entry.TYPE, actor, entry.to_payload(), subjects=(name,)), session=session
            )
            identity = row.to_identity()
        logger.info("created identity %s (%s)", name, role.value)
        return IssuedIdentity(identity, token)

    def _check_registration(
        self,
        name: str,
        role: Role,
        public_key: Ed25519PublicKey | None,
        duty: SignedDuty | None,
        *,
        now: datetime,
    ) -> str:
        """The officer whose duty registers administrator ``name``.

        Raises:
            IdentityError: no key or no duty, or details that name another role or key.
            DutyError: not a valid officer's duty for this registration.
        """
        if public_key is None:
            raise IdentityError(
                f"{role} identities carry an Ed25519 public key (ibx identity keygen; --public-key)"
            )
        if duty is None:
            raise IdentityError(
                f"registering a {role} needs an identity.create duty signed by a security "
                "officer (ibx identity create ... --key OFFICER_KEYFILE)"
            )
        officer = check_duty(
            duty,
            keys=self.duty_keys,
            origin=self.origin,
            action="identity.create",
            subject=name,
            role=Role.SECURITY_OFFICER.value,
            now=now,
        )
        expected = {"role": role.value, "public_key": public_key.to_base64()}
        if dict(duty.duty.details) != expected:
            raise IdentityError(
                f"{officer}'s duty registers {name} with {dict(duty.duty.details)}, "
                f"not role {role.value} and key {public_key.fingerprint()[:16]}"
            )
        return officer

    def _row(  # noqa: PLR0917 -- one column each
        self,
        name: str,
        role: Role,
        public_key: Ed25519PublicKey | None,
        industry: str | None,
        token: str,
        expires: datetime,
        when: datetime,
    ) -> _IdentityRow:
        return _IdentityRow(
            name=name,
            role=role.value,
            status=Status.ACTIVE.value,
            public_key=public_key.raw if public_key else None,
            industry=industry,
            token_hash=hash_token(token),
            token_expires_at=format_rfc3339(expires),
            created_at=format_rfc3339(when),
        )

    def bootstrap_officers(
        self, officers: Sequence[tuple[str, Ed25519PublicKey]], *, now: datetime | None = None
    ) -> list[IssuedIdentity]:
        """Register the deployment's first security officers, without a duty (``ibx init``).

        Their ``identity.create`` entries carry ``"bootstrap": true``; they must
        be the registry's first identities (an auditor checks they are the first
        identity entries on the ledger), so this is refused once any identity exists.

        Raises:
            IdentityError: a malformed or repeated name, fewer than two officers or the
                same key twice.
            IdentityConflictError: the registry already holds identities.
        """
        names = [name for name, _ in officers]
        if len(officers) < 2 or len(set(names)) != len(names):
            raise IdentityError("bootstrap needs at least two officers of distinct names")
        if len({key.raw for _, key in officers}) != len(officers):
            raise IdentityError("each bootstrap officer holds a key of their own")
        for name in names:
            self._check_name(name, None)
        when = now or utcnow()
        expires = when + self._ttl
        issued: list[IssuedIdentity] = []
        with self._db.write() as session:
            if session.execute(select(_IdentityRow.name).limit(1)).first() is not None:
                raise IdentityConflictError(
                    "the registry already holds identities: bootstrap officers are only "
                    "registered at ibx init (an officer registers the others)"
                )
            events = []
            for name, key in officers:
                token = TOKEN_PREFIX + secrets.token_urlsafe(32)
                row = self._row(name, Role.SECURITY_OFFICER, key, None, token, expires, when)
                session.add(row)
                issued.append(IssuedIdentity(row.to_identity(), token))
                entry = IdentityCreateEntry(
                    name=name,
                    role=Role.SECURITY_OFFICER.value,
                    industry=None,
                    public_key=key.to_base64(),
                    token_expires_at=format_rfc3339(expires),
                    bootstrap=True,
                )
                events.append(
                    Event(entry.TYPE, BOOTSTRAP_ACTOR, entry.to_payload(), subjects=(name,))
                )
            session.flush()
            self._recorder.record_batch(events, session=session)
        logger.info("registered the bootstrap officers %s", ", ".join(names))
        return issued

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

    def revoke(
        self,
        name: str,
        *,
        actor: str = "sysadmin",
        duty: SignedDuty | None = None,
        now: datetime | None = None,
    ) -> Identity:
        """Revoke ``name``: its token stops working at once.

        An administrative identity is revoked only with an ``identity.revoke``
        duty on ``name`` (details ``{"role"}``) signed by an active security
        officer, who becomes the entry's actor; the last active security officer
        cannot be revoked (nobody could register another).

        Raises:
            IdentityError: no such identity, already revoked, an administrator without
                a valid duty, or the last security officer.
            DutyError: the duty is not a valid officer's signature on this act.
        """
        current = self.get(name)
        entry_duty = None
        if current.role in ADMINISTRATIVE_ROLES and current.status is Status.ACTIVE:
            if duty is None:
                raise IdentityError(
                    f"revoking a {current.role} needs an identity.revoke duty signed by a "
                    "security officer (ibx identity revoke NAME --key OFFICER_KEYFILE)"
                )
            actor = check_duty(
                duty,
                keys=self.duty_keys,
                origin=self.origin,
                action="identity.revoke",
                subject=name,
                role=Role.SECURITY_OFFICER.value,
                now=now or utcnow(),
            )
            if dict(duty.duty.details) != {"role": current.role.value}:
                raise IdentityError(f"{actor}'s duty revokes {name} as another role")
            entry_duty = duty.to_dict()
        with self._db.write() as session:
            row = session.get(_IdentityRow, name)
            if row is None:
                raise IdentityNotFoundError(f"no identity named {name!r}")
            if row.status == Status.REVOKED.value:
                raise IdentityConflictError(f"identity {name!r} is already revoked")
            if row.role == Role.SECURITY_OFFICER.value and self._last_officer(session, name):
                raise IdentityConflictError(
                    f"{name} is the last active security officer: register another first"
                )
            row.status = Status.REVOKED.value
            session.flush()
            entry = IdentityRevokeEntry(name=name, role=row.role, duty=entry_duty)
            self._recorder.record(
                Event(entry.TYPE, actor, entry.to_payload(), subjects=(name,)), session=session
            )
            identity = row.to_identity()
        logger.info("revoked identity %s", name)
        return identity

    @staticmethod
    def _last_officer(session: Any, name: str) -> bool:
        others = session.execute(
            select(_IdentityRow.name)
            .where(
                _IdentityRow.role == Role.SECURITY_OFFICER.value,
                _IdentityRow.status == Status.ACTIVE.value,
                _IdentityRow.name != name,
            )
            .limit(1)
        ).first()
        return others is None

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
            entry = TokenRotateEntry(
                name=name, role=row.role, token_expires_at=format_rfc3339(expires)
            )
            self._recorder.record(
                Event(entry.TYPE, actor, entry.to_payload(), subjects=(name,)), session=session
            )
            identity = row.to_identity()
        logger.info("rotated the token of %s", name)
        return IssuedIdentity(identity, token)

    def set_public_key(self, name: str, public_key: Ed25519PublicKey, *, actor: str) -> Identity:
        """Register (or rotate) the Ed25519 public key of ``name``.

        An administrator's key is fixed by the officer's duty that registered it
        (register a new identity to change it): refused here.

        Raises:
            IdentityError: no such identity, it is revoked, or an administrator.
        """
        with self._db.write() as session:
            row = session.get(_IdentityRow, name)
            if row is None or row.status != Status.ACTIVE.value:
                raise IdentityNotFoundError(f"no active identity named {name!r}")
            if Role(row.role) in ADMINISTRATIVE_ROLES:
                raise IdentityError(
                    f"{name} is {row.role}: an administrator's key is the one an officer's "
                    "duty registered; register a new identity to change it"
                )
            row.public_key = public_key.raw
            session.flush()
            entry = PublicKeyEntry(name=name, public_key=public_key.to_base64())
            self._recorder.record(
                Event(entry.TYPE, actor, entry.to_payload(), subjects=(name,)), session=session
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
