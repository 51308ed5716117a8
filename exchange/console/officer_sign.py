"""The officer's signed duties in the browser: the statement a page offers, the duty it posts.

Each policy step is a :class:`core.duty.Duty` (``policy.<step>`` on the full
version hash; a proposal on the pack's hash) for the exchange's ledger origin,
by the signed-in officer. The page carries the exact bytes to sign (base64 of
the statement's RFC 8785 form) for ``static/sign.js``; the browser posts
those bytes back with the signature, and :func:`duty_body` turns them into
the API's ``{"duty": {"statement", "signature"}}``. Nothing is checked here
that the API does not check itself: the exchange verifies the signature
against the officer's ledgered key, the act, the subject, the origin and the
time.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Final

from core.canonical import canonical_bytes
from core.clock import utcnow
from core.duty import DUTY_SKEW, Duty
from exchange.console.api import ApiRefusal, ConsoleApi

__all__ = ["SIGN_MINUTES", "Statement", "StatementError", "duty_body", "ledger_origin", "statement"]

SIGN_MINUTES: Final = int(DUTY_SKEW.total_seconds() // 60)
"""How long a statement on a page stays signable (the exchange's allowed clock skew)."""


class StatementError(ValueError):
    """The posted statement or signature is not what a console form sends."""


@dataclass(frozen=True)
class Statement:
    """What a signing form shows and carries."""

    encoded: str
    """Base64 of the exact bytes to sign (the form's hidden ``statement``)."""
    pretty: str
    """The statement as indented JSON, for the officer to read before signing."""


async def ledger_origin(api: ConsoleApi) -> str:
    """The exchange's ledger origin: the first line of its (public) checkpoint.

    Raises:
        ApiRefusal: the checkpoint could not be read.
    """
    answer = await api.call("GET", "/v1/ledger/checkpoint", accept="text/plain")
    origin = answer.text().split("\n", 1)[0].strip()
    if not origin:
        raise ApiRefusal(502, "no ledger origin", "the exchange's checkpoint names no origin", None)
    return origin


def statement(origin: str, actor: str, step: str, subject: str) -> Statement:
    """``actor``'s ``policy.<step>`` on ``subject`` (a full hash), signed now or never."""
    duty = Duty(origin, actor, f"policy.{step}", subject, utcnow(), {})
    raw = duty.signed_bytes()
    return Statement(
        encoded=base64.b64encode(raw).decode(),
        pretty=json.dumps(duty.to_dict(), indent=2, ensure_ascii=False),
    )


def duty_body(encoded_statement: str, signature: str) -> dict[str, Any]:
    """The API's ``{"duty": ...}`` from a signing form's ``statement`` and ``signature``.

    Raises:
        StatementError: the statement is not base64 of canonical JSON, or no signature.
    """
    if not signature or len(signature) > 200:
        raise StatementError("no signature: open your key file and sign first")
    try:
        raw = base64.b64decode(encoded_statement, validate=True)
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise StatementError(f"the statement is not readable: {exc}") from exc
    if not isinstance(value, dict) or canonical_bytes(value) != raw:
        raise StatementError("the statement is not the canonical form that was signed")
    return {"duty": {"statement": value, "signature": signature}}
