"""Signing an administrator's duty on the command line, with their own key file.

The key file is the Ed25519 key file of ``ibx identity keygen`` (the format
of ``ibx consent keygen``); the private key never leaves this machine. A user
command signs as the identity of its token (``GET /v1/me``) for the
exchange's ledger origin (the first line of its checkpoint), locally or over
``--exchange URL`` alike; a server-side command on the data dir names the
officer with ``--officer`` or finds the active officer holding the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from core.canonical import JsonValue
from core.clock import utcnow
from core.duty import Duty, DutyError, SignedDuty
from core.keys import Ed25519Signer

if TYPE_CHECKING:
    from exchange.client import ExchangeClient
    from exchange.runtime import Runtime

__all__ = ["load_signer", "sign_as_caller", "sign_as_officer"]


def load_signer(key_file: Path) -> Ed25519Signer:
    """The signing key in ``key_file``.

    Raises:
        ConsentKeyError: missing, readable by group or others, or malformed.
    """
    from consent import EnterpriseKey

    return EnterpriseKey.load(key_file).signer


def sign_as_caller(
    client: ExchangeClient,
    key_file: Path,
    action: str,
    subject: str,
    details: Mapping[str, JsonValue],
    *,
    actor: str | None = None,
) -> SignedDuty:
    """``action`` on ``subject`` signed with ``key_file`` as ``actor`` (default: the
    token's identity), for the exchange's ledger origin.

    Raises:
        ConsentKeyError: the key file cannot be used.
        RemoteRefusalError: the exchange refused to say who the caller is.
        DutyError: the exchange did not name the caller or its origin.
    """
    signer = load_signer(key_file)
    me = actor or client.get("/v1/me").get("name")
    origin = client.call("GET", "/v1/ledger/checkpoint").text.split("\n", 1)[0].strip()
    if not isinstance(me, str) or not me or not origin:
        raise DutyError("the exchange did not say who the token is or its ledger origin")
    duty = Duty(origin, me, action, subject, utcnow(), dict(details))
    return duty.sign(signer)


def sign_as_officer(
    runtime: Runtime,
    key_file: Path,
    action: str,
    subject: str,
    details: Mapping[str, JsonValue],
    *,
    officer: str | None = None,
) -> SignedDuty:
    """``action`` on ``subject`` signed with ``key_file`` by ``officer`` (default: the
    active security officer whose registered key it is), for this deployment's origin.

    Raises:
        ConsentKeyError: the key file cannot be used.
        DutyError: no ``officer`` given and no active security officer holds the key.
    """
    from exchange.identities import Role, Status

    signer = load_signer(key_file)
    if officer is None:
        holders = [
            ident.name
            for ident in runtime.identities.list(role=Role.SECURITY_OFFICER)
            if ident.status is Status.ACTIVE
            and ident.public_key is not None
            and ident.public_key.raw == signer.public_key.raw
        ]
        if len(holders) != 1:
            raise DutyError(
                f"{key_file} is the key of no active security officer (or of several): "
                "name the officer with --officer"
            )
        officer = holders[0]
    duty = Duty(runtime.identities.origin, officer, action, subject, utcnow(), dict(details))
    return duty.sign(signer)
