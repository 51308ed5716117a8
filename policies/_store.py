"""Tables of the policy store and the versioned Casbin adapter.

``policies_versions`` holds each version's content (minus its Casbin lines)
and lifecycle; ``policies_casbin_rules`` holds the Casbin lines of every
version, keyed by version hash, in casbin-sqlalchemy-adapter's row shape;
``policies_active`` is a single row naming the active version.
"""

from __future__ import annotations

import logging

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from core.clock import parse_rfc3339
from core.db import Base
from policies._model import PolicyVersion, VersionHash, VersionState
from policies._source import CasbinLine

__all__ = ["ActiveRow", "CasbinRuleRow", "VersionRow", "store_lines"]

logger = logging.getLogger(__name__)


class _CasbinBase(DeclarativeBase):
    """Private metadata: casbin-sqlalchemy-adapter adopts its db_class's metadata."""


class CasbinRuleRow(_CasbinBase):
    """One Casbin line of one version (the adapter's ``CasbinRule`` shape plus ``version``)."""

    __tablename__ = "policies_casbin_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64), index=True)
    ptype: Mapped[str] = mapped_column(String(255))
    v0: Mapped[str | None] = mapped_column(String(255), nullable=True)
    v1: Mapped[str | None] = mapped_column(String(255), nullable=True)
    v2: Mapped[str | None] = mapped_column(String(255), nullable=True)
    v3: Mapped[str | None] = mapped_column(String(255), nullable=True)
    v4: Mapped[str | None] = mapped_column(String(255), nullable=True)
    v5: Mapped[str | None] = mapped_column(String(255), nullable=True)

    def __str__(self) -> str:
        values = [self.v0, self.v1, self.v2, self.v3, self.v4, self.v5]
        out = [self.ptype]
        for value in values:
            if value is None:
                break
            out.append(value)
        return ", ".join(out)


class VersionRow(Base):
    """A policy version: content and lifecycle."""

    __tablename__ = "policies_versions"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    content: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    proposed_by: Mapped[str] = mapped_column(String(128))
    proposed_at: Mapped[str] = mapped_column(String(40))
    tests_passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    test_report: Mapped[str | None] = mapped_column(Text, nullable=True)
    tested_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    tested_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    approved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    approved_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    activated_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    activated_at: Mapped[str | None] = mapped_column(String(40), nullable=True)

    def to_version(self) -> PolicyVersion:
        """The public view of this row."""
        import json  # noqa: PLC0415 -- tiny, keeps the module head clean

        summary = json.loads(self.summary)
        return PolicyVersion(
            hash=VersionHash(self.hash),
            state=VersionState(self.state),
            proposed_by=self.proposed_by,
            proposed_at=parse_rfc3339(self.proposed_at),
            tests_passed=self.tests_passed,
            tested_by=self.tested_by,
            approved_by=self.approved_by,
            activated_by=self.activated_by,
            activated_at=parse_rfc3339(self.activated_at) if self.activated_at else None,
            summary={str(k): int(v) for k, v in summary.items()},
            tested_at=parse_rfc3339(self.tested_at) if self.tested_at else None,
            approved_at=parse_rfc3339(self.approved_at) if self.approved_at else None,
        )


class ActiveRow(Base):
    """The single row (id 1) naming the active version."""

    __tablename__ = "policies_active"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    activated_at: Mapped[str] = mapped_column(String(40))


def store_lines(session: Session, version: VersionHash, lines: tuple[CasbinLine, ...]) -> None:
    """Insert a version's Casbin lines in the caller's transaction."""
    rows = []
    for line in lines:
        values: list[str | None] = [*line.values, None, None, None, None, None, None][:6]
        rows.append(
            CasbinRuleRow(
                version=version,
                ptype=line.ptype,
                v0=values[0],
                v1=values[1],
                v2=values[2],
                v3=values[3],
                v4=values[4],
                v5=values[5],
            )
        )
    session.add_all(rows)
