"""Identities for tests, registered as the exchange requires: administrators with keys.

Administrative identities (security officers, auditors, witnesses, system
administrators) carry an Ed25519 key and are registered only with a security
officer's signed ``identity.create`` duty; the first two officers are the
bootstrap officers of ``ibx init``. These helpers do exactly that on a real
runtime, with keys fixed by the identity's name (:func:`admin_signer`: the same
seed as ``tests/policies/duties.py``'s ``DutyOfficer``), so a test can sign as
any administrator it registered by name alone::

    officers = bootstrap(runtime, "officer-a", "officer-b")   # first, on an empty registry
    auditor = register(runtime, "aud", Role.AUDITOR)          # signed by officers[0]
    enterprise = register(runtime, "acme", Role.ENTERPRISE, industry="lithium-battery")
    made = register_all(runtime, {"aud": (Role.AUDITOR, None), "acme": (Role.ENTERPRISE, "x")})

:func:`sign_duty` signs any duty (``identity.revoke``, ``certificate.revoke``...)
as a registered officer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from core.canonical import JsonValue
from core.clock import utcnow
from core.duty import Duty, SignedDuty
from core.keys import Ed25519PublicKey, Ed25519Signer
from exchange.identities import (
    ADMINISTRATIVE_ROLES,
    IdentityRegistry,
    IssuedIdentity,
    Role,
)
from exchange.runtime import Runtime

__all__ = [
    "BOOTSTRAP_OFFICERS",
    "admin_signer",
    "bootstrap",
    "identity_duty",
    "register",
    "register_all",
    "sign_duty",
    "write_key_file",
]

BOOTSTRAP_OFFICERS = ("officer-1", "officer-2")
"""``ibx init``'s default bootstrap officers, and :func:`bootstrap`'s."""


def admin_signer(name: str) -> Ed25519Signer:
    """The Ed25519 key of administrator ``name`` in tests (fixed by the name)."""
    return Ed25519Signer(name, hashlib.sha256(f"ibx-test-officer:{name}".encode()).digest())


def _registry(where: Runtime | IdentityRegistry) -> IdentityRegistry:
    return where.identities if isinstance(where, Runtime) else where


def bootstrap(
    where: Runtime | IdentityRegistry, *names: str, now: datetime | None = None
) -> tuple[IssuedIdentity, ...]:
    """Register the bootstrap security officers (default ``officer-1``, ``officer-2``), as
    ``ibx init`` does; the registry must still be empty."""
    chosen = names or BOOTSTRAP_OFFICERS
    return tuple(
        _registry(where).bootstrap_officers(
            [(name, admin_signer(name).public_key) for name in chosen], now=now
        )
    )


def sign_duty(
    where: Runtime | IdentityRegistry,
    officer: str,
    action: str,
    subject: str,
    details: Mapping[str, JsonValue] | None = None,
    *,
    signer: Ed25519Signer | None = None,
    at: datetime | None = None,
) -> SignedDuty:
    """``action`` on ``subject`` signed by ``officer`` (with their test key unless ``signer``)."""
    duty = Duty(
        origin=_registry(where).origin,
        actor=officer,
        action=action,
        subject=subject,
        signed_at=at or utcnow(),
        details=dict(details or {}),
    )
    return duty.sign(signer or admin_signer(officer))


def identity_duty(
    where: Runtime | IdentityRegistry,
    name: str,
    role: Role,
    key: Ed25519PublicKey,
    *,
    by: str = BOOTSTRAP_OFFICERS[0],
    signer: Ed25519Signer | None = None,
) -> SignedDuty:
    """The ``identity.create`` duty registering administrator ``name``, signed by ``by``."""
    details: dict[str, JsonValue] = {"role": role.value, "public_key": key.to_base64()}
    return sign_duty(where, by, "identity.create", name, details, signer=signer)


def register(
    where: Runtime | IdentityRegistry,
    name: str,
    role: Role,
    industry: str | None = None,
    *,
    public_key: Ed25519PublicKey | None = None,
    by: str | None = None,
) -> IssuedIdentity:
    """Register ``name``; an administrator with its test key and ``by``'s duty.

    ``by`` defaults to the first active security officer; on an empty registry
    the bootstrap officers are registered first.
    """
    registry = _registry(where)
    if role not in ADMINISTRATIVE_ROLES:
        return registry.create(name, role, public_key=public_key, industry=industry)
    if by is None:
        officers = [
            i.name for i in registry.list(role=Role.SECURITY_OFFICER) if i.status.value == "active"
        ]
        if not officers:
            if registry.list():
                raise AssertionError(
                    "register administrators after bootstrap(runtime) on an empty registry"
                )
            bootstrap(registry)
            officers = list(BOOTSTRAP_OFFICERS)
        by = officers[0]
    key = public_key or admin_signer(name).public_key
    duty = identity_duty(registry, name, role, key, by=by)
    return registry.create(name, role, public_key=key, industry=industry, duty=duty)


def register_all(
    where: Runtime | IdentityRegistry,
    identities: Mapping[str, tuple[Role, str | None]],
    *,
    officers: tuple[str, ...] = (),
) -> dict[str, IssuedIdentity]:
    """Register every ``name: (role, industry)``; the bootstrap officers first.

    The bootstrap officers are ``officers`` if given, else the first two
    security officers of ``identities`` (if there are two), else ``officer-1``
    and ``officer-2``; they are part of the answer.
    """
    registry = _registry(where)
    named = [n for n, (role, _) in identities.items() if role is Role.SECURITY_OFFICER]
    chosen = officers or (tuple(named[:2]) if len(named) >= 2 else BOOTSTRAP_OFFICERS)
    made = {issued.identity.name: issued for issued in bootstrap(registry, *chosen)}
    for name, (role, industry) in identities.items():
        if name not in made:
            made[name] = register(registry, name, role, industry, by=chosen[0])
    return made


def write_key_file(directory: Path, name: str) -> Path:
    """``name``'s test key as an ``ibx identity keygen`` key file (mode 0600), for the CLI."""
    import base64
    import json
    import os

    from consent._keyfile import _KIND

    signer = admin_signer(name)
    path = directory / f"{name}.key"
    body = {
        "kind": _KIND,
        "seed": base64.b64encode(signer.seed()).decode(),
        "public_key": signer.public_key.to_base64(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(body) + "\n")
    return path
