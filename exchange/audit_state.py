"""The exchange's rows as served for reconciliation (``GET /v1/audit/state``, the export's
``state`` line): every consent row, every identity row and the active policy row, read as
they are, never corrected from the ledger, so ``ibx audit verify`` sees what the
exchange would act on (:class:`audit.ServedState`, docs/audit.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from sqlalchemy import text

from audit import ServedConsent, ServedIdentity, ServedState

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = ["served_state"]

logger = logging.getLogger(__name__)

_ACTIVE_ROW: Final = text("SELECT version FROM policies_active WHERE id = 1")
"""The active version's row as stored (the decision point caches and checks it; here
the row itself is what is reconciled)."""


def served_state(runtime: Runtime) -> ServedState:
    """Read the rows the reconciliation compares with the ledger.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database could not be read.
    """
    consents = tuple(
        ServedConsent(
            consent_id=record.consent_id,
            enterprise=record.enterprise,
            receipt_hash=record.signed.receipt_hash(),
            ledger_index=record.ledger_index,
            revoked=record.revoked_at is not None,
            use_count=record.use_count,
        )
        for record in runtime.consents.list()
    )
    identities = tuple(
        ServedIdentity(
            name=identity.name,
            role=identity.role.value,
            status=identity.status.value,
            public_key=identity.public_key.to_base64() if identity.public_key else None,
        )
        for identity in runtime.identities.list()
    )
    with runtime.db.read() as session:
        active = session.execute(_ACTIVE_ROW).scalar()
    logger.debug("served state: %d consents, %d identities", len(consents), len(identities))
    return ServedState(consents, identities, str(active) if active else None)
