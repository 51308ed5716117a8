"""Audit: verify the exchange without trusting its operator (docs/audit.md).

Imports only ``ledger`` and ``core``: an auditor runs it on their own machine,
against an export (``ibx-ledger-export/v1``) or over HTTPS. The ledger's entry
types reach it as a registry handed in by the composition root.
"""

from audit._export import (
    EXPORT_FORMAT,
    ExportedEntry,
    ExportHeader,
    LedgerExport,
    export_lines,
    write_export,
)
from audit._fabric import ExportLog, FabricCheck, check_fabric, with_fabric
from audit._findings import Finding, VerifyReport
from audit._invariants import LedgerFacts, check_invariants, derive_facts
from audit._parse import EntryTypes, ParsedEntry
from audit._reconcile import check_entries, reconcile
from audit._report import AuditReport, build_report
from audit._risk import RiskEngine, RiskRule, RiskRules, Threshold, WorkingHours
from audit._state import ServedConsent, ServedIdentity, ServedState
from audit._trace import JobTrace, NodeKind, TraceNode, TraceNotFoundError, trace_job
from audit._verify import verify
from audit.errors import AuditError, ExportFormatError, RiskRulesError

__all__ = [
    "EXPORT_FORMAT",
    "AuditError",
    "AuditReport",
    "EntryTypes",
    "ExportFormatError",
    "ExportHeader",
    "ExportLog",
    "ExportedEntry",
    "FabricCheck",
    "Finding",
    "JobTrace",
    "LedgerExport",
    "LedgerFacts",
    "NodeKind",
    "ParsedEntry",
    "RiskEngine",
    "RiskRule",
    "RiskRules",
    "RiskRulesError",
    "ServedConsent",
    "ServedIdentity",
    "ServedState",
    "Threshold",
    "TraceNode",
    "TraceNotFoundError",
    "VerifyReport",
    "WorkingHours",
    "build_report",
    "check_entries",
    "check_fabric",
    "check_invariants",
    "derive_facts",
    "export_lines",
    "reconcile",
    "trace_job",
    "verify",
    "with_fabric",
    "write_export",
]
