"""``ibx audit verify``: everything an export shows, checked without trusting its operator.

In order: the header's key against the one the auditor pinned; the
checkpoints parsed (their sizes are where the tree's root is taken); the tree
rebuilt from the leaves in one pass; every checkpoint and the auditor's kept
one checked against it; every entry decoded and parsed through its typed
class; then the cross-entry invariants and, with a ``state`` line, the rows
reconciled with the ledger. Every failure is a :class:`~audit.Finding`; the
report lists them by index (those about the log as a whole first).
"""

from __future__ import annotations

import logging

from audit._checkpoints import (
    NotedCheckpoint,
    check_checkpoints,
    check_trusted,
    parse_checkpoints,
    parse_trusted,
)
from audit._export import LedgerExport
from audit._findings import Finding, VerifyReport
from audit._gc_pause import collection_paused
from audit._parse import EntryTypes, parse_entries
from audit._reconcile import check_entries
from audit._tree import rebuild_tree
from audit.errors import AuditError
from ledger import CheckpointError, NoteVerifier

__all__ = ["verify"]

logger = logging.getLogger(__name__)


def verify(
    export: LedgerExport,
    *,
    entry_types: EntryTypes,
    ledger_vkey: str | None = None,
    trusted_checkpoint: str | None = None,
) -> VerifyReport:
    """Verify an export.

    Args:
        export: the export, as read (:meth:`LedgerExport.read`).
        entry_types: entry type → payload parser (the composition root's registry).
        ledger_vkey: the ledger key the auditor pinned (C2SP vkey); None: the export's own
            key is used, which proves only that the export is self-consistent.
        trusted_checkpoint: a signed checkpoint the auditor kept from earlier.

    Raises:
        AuditError: the pinned key or the trusted checkpoint is malformed (the auditor's
            own inputs; nothing in the export raises: it is reported).
    """
    with collection_paused():
        return _verify(export, entry_types, ledger_vkey, trusted_checkpoint)


def _verify(
    export: LedgerExport,
    entry_types: EntryTypes,
    ledger_vkey: str | None,
    trusted_checkpoint: str | None,
) -> VerifyReport:
    header = export.header
    findings: list[Finding] = []
    verifier = _verifier(header.ledger_vkey, ledger_vkey, findings)
    trusted: NotedCheckpoint | None = None
    if trusted_checkpoint is not None:
        trusted = parse_trusted(trusted_checkpoint)

    checkpoints, malformed = parse_checkpoints(export.checkpoints)
    findings.extend(malformed)
    sizes = {cp.checkpoint.size for cp in checkpoints}
    if trusted is not None:
        sizes.add(trusted.checkpoint.size)
    tree = rebuild_tree(export.entries, sizes)
    findings.extend(tree.findings)
    if header.tree_size != tree.size:
        findings.append(
            Finding(
                "export.size",
                min(header.tree_size, tree.size),
                f"the header says {header.tree_size} entries but the export holds {tree.size}",
            )
        )
    checked = check_checkpoints(
        checkpoints,
        origin=header.origin,
        verifier=verifier,
        roots=tree.roots,
        size=tree.size,
        witnesses=header.witness_vkeys,
    )
    findings.extend(checked.findings)
    if trusted is not None:
        findings.extend(
            check_trusted(
                trusted, origin=header.origin, verifier=verifier, roots=tree.roots, size=tree.size
            )
        )
    parsed, parse_findings = parse_entries(export.entries, entry_types)
    findings.extend(parse_findings)
    findings.extend(check_entries(parsed, origin=header.origin, state=export.state))
    findings.sort(key=_order)
    logger.debug("verified %d entries: %d findings", tree.size, len(findings))
    return VerifyReport(
        tree.size,
        tree.root,
        checked.verified,
        tuple(findings),
        ledger_vkey=verifier.to_vkey() if verifier is not None else header.ledger_vkey,
        pinned=ledger_vkey is not None,
        cosignatures=checked.cosignatures,
    )


def _verifier(exported: str, pinned: str | None, findings: list[Finding]) -> NoteVerifier | None:
    """The key checkpoints are checked with: the pinned one, else the export's."""
    if pinned is not None:
        try:
            verifier = NoteVerifier.from_vkey(pinned)
        except CheckpointError as exc:
            raise AuditError(f"the pinned ledger key is no verifier key: {exc}") from exc
        if exported.strip() != verifier.to_vkey():
            findings.append(
                Finding(
                    "export.ledger_vkey",
                    None,
                    f"the export names the ledger key {exported.strip()!r}, not the key you "
                    f"pinned {verifier.to_vkey()!r}: the checkpoint key was replaced",
                )
            )
        return verifier
    try:
        return NoteVerifier.from_vkey(exported)
    except CheckpointError as exc:
        findings.append(
            Finding(
                "export.ledger_vkey",
                None,
                f"the export's ledger key is no verifier key ({exc}); no checkpoint signature "
                "could be checked",
            )
        )
        return None


def _order(finding: Finding) -> tuple[int, int]:
    return (0, 0) if finding.index is None else (1, finding.index)
