"""Sealed reading batches: the device seals, the exchange stores ciphertext, the enterprise opens.

A batch (a signed envelope, see :mod:`edge_tls._envelope`) is sealed with
libsodium's ``crypto_box_seal`` (PyNaCl ``SealedBox``)
to the enterprise's X25519 key. The enterprise keeps one Ed25519 key (the one
it signs consents with); its X25519 sealing key is the birationally
equivalent Curve25519 key (``crypto_sign_ed25519_pk_to_curve25519``), so one
key file opens batches and signs consents. The exchange never holds the
private half, stores only ciphertext, and records each batch's SHA-256 on the
ledger. Uploads are checked when they arrive (:mod:`edge_tls._quota`): size,
sealed-box structure and the device's hourly quota; nothing is stored otherwise.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import format_rfc3339, parse_rfc3339, require_aware
from core.db import Database
from core.events import Event, EventRecorder
from edge_tls._issued import DeviceCertificate
from edge_tls._quota import UploadQuota, check_sealed_box, retry_after
from edge_tls._tables import ReadingBatchRow
from edge_tls.entries import ReadingsUploadEntry
from edge_tls.errors import SealedBatchError, UploadQuotaError

__all__ = [
    "ReadingBatch",
    "ReadingStore",
    "open_batch",
    "seal_batch",
    "sealing_public_key",
]

logger = logging.getLogger(__name__)


def sealing_public_key(ed25519_public: bytes) -> bytes:
    """The X25519 public key that belongs to an enterprise's Ed25519 public key.

    Raises:
        ValueError: not a valid 32-byte Ed25519 public key.
    """
    try:
        return bytes(VerifyKey(ed25519_public).to_curve25519_public_key())
    except (CryptoError, TypeError) as exc:
        raise ValueError("not a valid Ed25519 public key") from exc


def seal_batch(plaintext: bytes, x25519_public: bytes) -> bytes:
    """Seal ``plaintext`` so that only the holder of the matching private key can open it.

    Raises:
        SealedBatchError: empty plaintext.
        ValueError: not a 32-byte X25519 public key.
    """
    if not plaintext:
        raise SealedBatchError("refusing to seal an empty batch")
    return bytes(SealedBox(PublicKey(x25519_public)).encrypt(plaintext))


def open_batch(ciphertext: bytes, ed25519_seed: bytes) -> bytes:
    """Open a sealed batch with the enterprise's Ed25519 private seed.

    Raises:
        SealedBatchError: the batch does not open under this key (one opaque error).
    """
    private = PrivateKey(bytes(SigningKey(ed25519_seed).to_curve25519_private_key()))
    try:
        return bytes(SealedBox(private).decrypt(ciphertext))
    except CryptoError as exc:
        raise SealedBatchError("the batch does not open under this key") from exc


@dataclass(frozen=True)
class ReadingBatch:
    """One stored batch, as the enterprise pulls it."""

    id: int
    enterprise: str
    device: str
    sha256: str
    ciphertext: bytes
    received_at: datetime


class ReadingStore:
    """Sealed batches on the database, with their hashes on the ledger."""

    def __init__(self, db: Database, recorder: EventRecorder, quota: UploadQuota) -> None:
        self._db = db
        self._recorder = recorder
        self.quota = quota

    def store(self, peer: DeviceCertificate, ciphertext: bytes, *, now: datetime) -> ReadingBatch:
        """Keep a sealed batch from an authenticated device and record its hash.

        The size, structure and quota checks run before anything is written;
        the quota check runs inside the write transaction, so concurrent
        uploads of one device cannot both slip under it.

        Raises:
            BatchTooLargeError: over the per-batch size limit.
            MalformedBatchError: not a sealed box.
            UploadQuotaError: past the device's bytes-per-hour quota (with ``retry_after``).
        """
        check_sealed_box(ciphertext, self.quota)
        when = require_aware(now, what="now")
        digest = hashlib.sha256(ciphertext).hexdigest()
        with self._db.write() as session:
            wait = retry_after(
                self._recent(session, peer, when), len(ciphertext), self.quota, now=when
            )
            if wait is not None:
                raise UploadQuotaError(
                    f"device {peer.device.device} is past its quota of "
                    f"{self.quota.bytes_per_hour} bytes per "
                    f"{int(self.quota.window.total_seconds())} s; retry in {wait} s",
                    device=peer.device.device,
                    retry_after=wait,
                )
            row = ReadingBatchRow(
                enterprise=peer.device.enterprise,
                device=peer.device.device,
                certificate_serial_hex=format(peer.serial, "x"),
                sha256=digest,
                ciphertext=ciphertext,
                received_at=format_rfc3339(when),
            )
            session.add(row)
            session.flush()
            self._recorder.record(
                Event(
                    ReadingsUploadEntry.TYPE,
                    peer.device.device,
                    ReadingsUploadEntry(
                        batch=row.id,
                        enterprise=peer.device.enterprise,
                        device=peer.device.device,
                        certificate_serial=format(peer.serial, "x"),
                        sha256=digest,
                        bytes=len(ciphertext),
                    ).payload(),
                ),
                session=session,
            )
            batch = _to_batch(row)
        logger.info("stored batch %d from %s (%d bytes)", batch.id, batch.device, len(ciphertext))
        return batch

    def _recent(
        self, session: Session, peer: DeviceCertificate, now: datetime
    ) -> list[tuple[datetime, int]]:
        since = format_rfc3339(now - self.quota.window)
        rows = session.execute(
            select(ReadingBatchRow.received_at, func.length(ReadingBatchRow.ciphertext))
            .where(
                ReadingBatchRow.enterprise == peer.device.enterprise,
                ReadingBatchRow.device == peer.device.device,
                ReadingBatchRow.received_at > since,
            )
            .order_by(ReadingBatchRow.received_at)
        ).all()
        return [(parse_rfc3339(at), int(size)) for at, size in rows]

    def batches(self, enterprise: str, *, after: int = 0, limit: int = 1000) -> list[ReadingBatch]:
        """The batches sealed to ``enterprise`` with an id above ``after``, oldest first."""
        with self._db.read() as session:
            rows = session.execute(
                select(ReadingBatchRow)
                .where(ReadingBatchRow.enterprise == enterprise, ReadingBatchRow.id > after)
                .order_by(ReadingBatchRow.id)
                .limit(limit)
            ).scalars()
            return [_to_batch(row) for row in rows]


def _to_batch(row: ReadingBatchRow) -> ReadingBatch:
    return ReadingBatch(
        id=row.id,
        enterprise=row.enterprise,
        device=row.device,
        sha256=row.sha256,
        ciphertext=row.ciphertext,
        received_at=parse_rfc3339(row.received_at),
    )
