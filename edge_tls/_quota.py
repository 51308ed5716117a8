"""Per-device upload limits: the size of one batch and the bytes a device may send per hour.

Checked when a batch arrives, before anything is stored. No I/O here: the
store passes in the device's recent uploads; :func:`retry_after` answers how
long until the new batch fits the sliding window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nacl.bindings import crypto_scalarmult
from nacl.exceptions import CryptoError
from nacl.exceptions import RuntimeError as NaclRuntimeError

from core.clock import require_aware
from edge_tls.errors import BatchTooLargeError, MalformedBatchError

__all__ = ["SEAL_OVERHEAD", "UploadQuota", "check_sealed_box", "retry_after"]

logger = logging.getLogger(__name__)

SEAL_OVERHEAD = 48
"""A sealed box: an ephemeral X25519 public key (32 bytes), the ciphertext, its tag (16)."""

_PROBE_SCALAR = bytes([9] + [0] * 30 + [64])  # any non-zero clamped scalar will do


@dataclass(frozen=True)
class UploadQuota:
    """Limits on what one device (enterprise + device name, across renewals) may upload.

    Defaults: 1 MiB per batch, 16 MiB per sliding hour.
    """

    max_batch_bytes: int = 1 << 20
    bytes_per_hour: int = 16 << 20
    window: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_batch_bytes <= SEAL_OVERHEAD:
            raise ValueError(f"the batch size limit must exceed {SEAL_OVERHEAD} bytes")
        if self.bytes_per_hour < self.max_batch_bytes:
            raise ValueError("the hourly quota must allow at least one batch of the maximum size")
        if self.window <= timedelta(0):
            raise ValueError("the quota window must be positive")


def check_sealed_box(body: bytes, quota: UploadQuota) -> None:
    """Refuse a body that cannot be a sealed box, or one over the batch size limit.

    The exchange cannot open a batch, but it can see what no sealed box can be:
    one too short to hold the ephemeral key and tag, or one whose ephemeral key
    is a low-order X25519 point (no recipient can open it).

    Raises:
        BatchTooLargeError: over ``quota.max_batch_bytes``.
        MalformedBatchError: too short, or an ephemeral key no box opens under.
    """
    size = len(body)
    if size > quota.max_batch_bytes:
        raise BatchTooLargeError(
            f"a batch may be at most {quota.max_batch_bytes} bytes (this one has {size}); split it",
            size=size,
            limit=quota.max_batch_bytes,
        )
    if size <= SEAL_OVERHEAD:
        raise MalformedBatchError(
            f"the body is not a sealed box: {size} bytes, a sealed box has more than "
            f"{SEAL_OVERHEAD}",
            size=size,
        )
    try:
        crypto_scalarmult(_PROBE_SCALAR, body[:32])
    except (NaclRuntimeError, CryptoError) as exc:
        raise MalformedBatchError(
            "the body is not a sealed box: its ephemeral key is a low-order point", size=size
        ) from exc


def retry_after(
    recent: Sequence[tuple[datetime, int]], incoming: int, quota: UploadQuota, *, now: datetime
) -> int | None:
    """Seconds until ``incoming`` bytes fit the device's window (``None``: they fit now).

    ``recent`` holds (received_at, bytes) of the device's uploads inside the
    window ending at ``now``, oldest first.

    Raises:
        ValueError: a naive ``now``.
    """
    when = require_aware(now, what="now")
    total = sum(size for _at, size in recent)
    if total + incoming <= quota.bytes_per_hour:
        return None
    for received_at, size in recent:
        total -= size
        if total + incoming <= quota.bytes_per_hour:
            wait = (received_at + quota.window - when).total_seconds()
            return max(1, math.ceil(wait))
    return max(1, math.ceil(quota.window.total_seconds()))  # pragma: no cover - max <= hourly
