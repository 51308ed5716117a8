"""The latest policy activation, read from the ledger: what the active policy row must match.

:class:`policies.PolicyDecisionPoint` may not import the ledger; it takes an
:class:`policies.ActivationRecord`, and this is the exchange's: every
``policy.activate`` entry is indexed under the subject ``policy:active``
(:data:`policies.ACTIVE_SUBJECT`), so the latest is one index lookup and one
entry read, parsed through its typed payload.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from policies.entries import ACTIVE_SUBJECT, PolicyActivateEntry

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ledger import Ledger

__all__ = ["LedgerActivations"]

logger = logging.getLogger(__name__)


class LedgerActivations:
    """:class:`policies.ActivationRecord` over the ledger's subject index."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def latest_activation(self, *, session: Session | None = None) -> str | None:
        """The version of the latest ``policy.activate`` entry, or None before any.

        Raises:
            ValueError: that entry's payload does not parse as a policy activation.
            ledger.LedgerError: the ledger could not be read.
        """
        hits = self._ledger.find([ACTIVE_SUBJECT], [PolicyActivateEntry.TYPE], session=session)
        if not hits:
            return None
        entry = self._ledger.entry(hits[-1].index)
        if entry.type != PolicyActivateEntry.TYPE:
            raise ValueError(f"ledger entry {entry.index} is {entry.type}, not a policy activation")
        return PolicyActivateEntry.model_validate(dict(entry.payload)).version
