"""Errors of the audit package.

::

    AuditError                   (core.errors.IbxError)
    ├── ExportFormatError        an export file that is not ibx-ledger-export/v1
    └── RiskRulesError           a risk rules file (risk.toml) that cannot be used

A finding is not an error: ``ibx audit verify`` reports findings and exits 5;
an :class:`AuditError` means the audit itself could not run as asked.
"""

from __future__ import annotations

from core.errors import IbxError

__all__ = ["AuditError", "ExportFormatError", "RiskRulesError"]


class AuditError(IbxError):
    """The audit could not run as asked (unreadable input, unreachable exchange...)."""

    title = "audit error"


class ExportFormatError(AuditError):
    """An export file that is not a well-formed ``ibx-ledger-export/v1`` file."""

    title = "malformed ledger export"


class RiskRulesError(AuditError):
    """A risk rules file that is not TOML, names an unknown key, or holds a bad value."""

    title = "unusable risk rules"
