"""Findings: what ``ibx audit verify`` reports, one per thing that is wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.canonical import JsonValue

__all__ = ["Finding", "VerifyReport"]


@dataclass(frozen=True)
class Finding:
    """One thing wrong: a stable ``code`` (``tree.root``, ``entry.parse``,
    ``consent.signature``, ``decision.revoked_consent``, ``fabric.entry``...; the Fabric
    channel's are ``fabric.key|entry|root|ahead|anchor``), the ledger index it
    is about (None: about the log or the export as a whole) and what is wrong, in
    words an auditor can act on."""

    code: str
    index: int | None
    message: str

    def to_dict(self) -> dict[str, JsonValue]:
        """The ``--json`` form."""
        return {"code": self.code, "index": self.index, "message": self.message}

    def line(self) -> str:
        """The text form: ``FINDING #<index> <code>: <message>``."""
        where = "-" if self.index is None else str(self.index)
        return f"FINDING #{where} {self.code}: {self.message}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of a verification: the log it covered and every finding."""

    tree_size: int
    root: bytes
    checkpoints: int
    findings: Sequence[Finding]
    ledger_vkey: str = ""
    """The key the checkpoints were checked with."""
    pinned: bool = True
    """False when the auditor pinned no key and the export's own was used: the export is
    then only shown self-consistent (pin the key with ``--ledger-vkey``)."""
    cosignatures: Mapping[str, int] = field(default_factory=dict)
    """Witness key (C2SP vkey) → how many of the export's checkpoints it validly cosigned."""

    @property
    def ok(self) -> bool:
        """True exactly when nothing was found."""
        return not self.findings

    def to_dict(self) -> dict[str, JsonValue]:
        """The ``--json`` form: ``{"ok", "tree_size", "root", "checkpoints", "findings",
        "ledger_vkey", "ledger_vkey_pinned", "cosignatures"}``."""
        return {
            "ok": self.ok,
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "checkpoints": self.checkpoints,
            "findings": [f.to_dict() for f in self.findings],
            "ledger_vkey": self.ledger_vkey,
            "ledger_vkey_pinned": self.pinned,
            "cosignatures": dict(self.cosignatures),
        }
