"""Casbin reads one stored version's lines through its SQLAlchemy adapter.

Apart from :mod:`policies._store` so that reading the store (``ibx policy
list``) does not import Casbin: only compiling a version does.
"""

from __future__ import annotations

import logging
from typing import Any

from casbin import persist
from casbin_sqlalchemy_adapter import Adapter
from sqlalchemy import Engine, select

from policies._model import VersionHash
from policies._store import CasbinRuleRow

__all__ = ["VersionedCasbinAdapter"]

logger = logging.getLogger(__name__)


class VersionedCasbinAdapter(Adapter):  # type: ignore[misc]  # the adapter is untyped
    """casbin-sqlalchemy-adapter reading the lines of one version from the project database."""

    def __init__(self, engine: Engine, version: VersionHash) -> None:
        super().__init__(engine, db_class=CasbinRuleRow, create_all_models=False)
        self._version = version

    def load_policy(self, model: Any) -> None:
        """Load this version's lines (in insertion order) into ``model``."""
        with self._session_scope() as session:
            query = (
                select(CasbinRuleRow)
                .where(CasbinRuleRow.version == self._version)
                .order_by(CasbinRuleRow.id)
            )
            for row in session.execute(query).scalars():
                persist.load_policy_line(str(row), model)

    def is_filtered(self) -> bool:
        """Loads one version's lines, all of them: not a filtered adapter."""
        return False
