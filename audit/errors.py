"""Errors of the audit package.

::

    AuditError                   (core.errors.IbxError)
    └── ExportFormatError        an export file that is not ibx-ledger-export/v1

A finding is not an error: ``ibx audit verify`` reports findings and exits 5;
an :class:`AuditError` means the audit itself could not run as asked.
"""

from __future__ import annotations

from core.errors import IbxError

__all__ = ["AuditError", "ExportFormatError"]


class AuditError(IbxError):
    """The audit could not run as asked (unreadable input, unreachable exchange...)."""

    title = "audit error"


class ExportFormatError(AuditError):
    """An export file that is not a well-formed ``ibx-ledger-export/v1`` file."""

    title = "malformed ledger export"
