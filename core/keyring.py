"""Named Ed25519 signing keys stored in the database, encrypted under the master key."""

from __future__ import annotations

import logging

from sqlalchemy import LargeBinary, String, select
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import format_rfc3339, utcnow
from core.db import Base, Database
from core.errors import KeyDecryptionError
from core.keys import Ed25519Signer, MasterKey

__all__ = ["KeyRing"]

logger = logging.getLogger(__name__)


class _SigningKeyRow(Base):
    __tablename__ = "core_signing_keys"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(20))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    encrypted_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[str] = mapped_column(String(40))


class KeyRing:
    """Named Ed25519 signing keys stored in the database, encrypted under the master key."""

    def __init__(self, db: Database, master: MasterKey) -> None:
        self._db = db
        self._master = master

    @staticmethod
    def _aad(name: str) -> bytes:
        return b"ibx/signing-key/ed25519/" + name.encode()

    def get_or_create(self, name: str) -> Ed25519Signer:
        """Load the key called ``name``, generating and storing it on first use.

        Raises:
            KeyDecryptionError: the stored key does not open under this master key.
        """
        existing = self.get(name)
        if existing is not None:
            return existing
        signer = Ed25519Signer.generate(name)
        with self._db.write() as session:
            row = session.get(_SigningKeyRow, name)
            if row is not None:  # created concurrently by another process
                return self._open(row)
            session.add(
                _SigningKeyRow(
                    name=name,
                    algorithm="ed25519",
                    public_key=signer.public_key.raw,
                    encrypted_private_key=self._master.encrypt(signer.seed(), aad=self._aad(name)),
                    created_at=format_rfc3339(utcnow()),
                )
            )
        logger.info("generated signing key %r (%s)", name, signer.public_key.fingerprint()[:16])
        return signer

    def get(self, name: str) -> Ed25519Signer | None:
        """Load the key called ``name``, or None if there is none.

        Raises:
            KeyDecryptionError: the stored key does not open under this master key.
        """
        with self._db.read() as session:
            row = session.execute(
                select(_SigningKeyRow).where(_SigningKeyRow.name == name)
            ).scalar_one_or_none()
            return None if row is None else self._open(row)

    def _open(self, row: _SigningKeyRow) -> Ed25519Signer:
        seed = self._master.decrypt(row.encrypted_private_key, aad=self._aad(row.name))
        signer = Ed25519Signer(row.name, seed)
        if signer.public_key.raw != row.public_key:
            raise KeyDecryptionError("encrypted key material did not open")
        return signer
