"""When a device renews its certificate, and how it backs off when renewal fails.

Pure: no clock, no files, no network, no randomness of its own. The daemon
(:mod:`edge_tls._renewer`) passes in the time and a jitter draw, so every
rule here is checked by property tests (``tests/edge_tls/test_renew_daemon.py``).

The rules, as ``step ca renew --daemon`` has them:

* renew when two thirds of the certificate's lifetime have passed:
  ``not_before + 2/3 · (not_after − not_before)``; if that moment has
  passed already (the device was off), renew now;
* a renewal period (``--renew-period``) renews more often, never later than
  the two-thirds point;
* after a failed attempt, wait ``30 s · 2^n`` (capped at 10 min), with up to
  half of it taken off at random so a fleet that failed together does not
  retry together; never less than ``retry_min`` (no hammering), and never
  past half the time left before expiry while that is longer than
  ``retry_min``, so a device keeps trying until its certificate runs out;
* an expired certificate cannot renew at all (EST re-enrolment is
  authenticated by the certificate itself): the daemon stops and the device
  must enrol again with a bootstrap token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from core.clock import require_aware
from edge_tls.errors import CertificateExpiredError

__all__ = ["CertificateValidity", "RenewalSchedule"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CertificateValidity:
    """A certificate's validity period (timezone-aware, ``not_before < not_after``)."""

    not_before: datetime
    not_after: datetime
    serial: int = 0

    def __post_init__(self) -> None:
        """Check the period.

        Raises:
            ValueError: a naive time, or ``not_after`` not after ``not_before``.
        """
        before = require_aware(self.not_before, what="not_before")
        after = require_aware(self.not_after, what="not_after")
        if after <= before:
            raise ValueError(f"not_after {after:%Y-%m-%dT%H:%M:%SZ} is not after not_before")
        object.__setattr__(self, "not_before", before)
        object.__setattr__(self, "not_after", after)

    @classmethod
    def of(cls, certificate: x509.Certificate) -> CertificateValidity:
        """The validity period (and serial) of ``certificate``.

        Raises:
            ValueError: the certificate's period is empty.
        """
        return cls(
            certificate.not_valid_before_utc,
            certificate.not_valid_after_utc,
            certificate.serial_number,
        )

    @property
    def lifetime(self) -> timedelta:
        """``not_after − not_before``."""
        return self.not_after - self.not_before

    def require_unexpired(self, now: datetime) -> None:
        """Refuse a certificate that has run out at ``now``.

        Raises:
            CertificateExpiredError: ``now`` is at or past ``not_after``; no renewal can help.
            ValueError: a naive ``now``.
        """
        if require_aware(now, what="now") >= self.not_after:
            raise CertificateExpiredError(
                f"certificate {self.serial:x} expired at {self.not_after:%Y-%m-%dT%H:%M:%SZ}, "
                "so it cannot renew; enrol this device again with a new bootstrap token "
                "(ibx edge token create, then ibx edge enroll)",
                serial=self.serial,
            )


@dataclass(frozen=True)
class RenewalSchedule:
    """When to renew, and how to back off: the daemon's whole timing policy.

    ``numerator/denominator`` is the fraction of the lifetime after which to
    renew (2/3); ``period`` optionally renews sooner; the retry fields bound
    the backoff after failures.
    """

    numerator: int = 2
    denominator: int = 3
    period: timedelta | None = None
    retry_initial: timedelta = timedelta(seconds=30)
    retry_max: timedelta = timedelta(minutes=10)
    retry_min: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        """Check the bounds.

        Raises:
            ValueError: a fraction outside (0, 1), a period that is not positive, or
                retry bounds not ordered ``0 < retry_min <= retry_initial <= retry_max``.
        """
        if not 0 < self.numerator < self.denominator:
            raise ValueError(f"renew after {self.numerator}/{self.denominator}: not in (0, 1)")
        if self.period is not None and self.period <= timedelta(0):
            raise ValueError("the renewal period must be positive")
        if not timedelta(0) < self.retry_min <= self.retry_initial <= self.retry_max:
            raise ValueError("need 0 < retry_min <= retry_initial <= retry_max")

    def due(self, validity: CertificateValidity) -> datetime:
        """The two-thirds point of ``validity`` (``not_before + 2/3 · lifetime``, exact)."""
        return validity.not_before + validity.lifetime * self.numerator // self.denominator

    def renew_at(self, validity: CertificateValidity, *, now: datetime) -> datetime:
        """When to renew the certificate, seen at ``now``: in ``[now, not_after)``.

        Raises:
            CertificateExpiredError: the certificate has expired at ``now``.
            ValueError: a naive ``now``.
        """
        validity.require_unexpired(now)
        when = self.due(validity)
        if self.period is not None:
            when = min(when, now + self.period)
        return max(when, now)

    def retry_delay(self, attempt: int, *, jitter: float) -> timedelta:
        """How long to wait after failed attempt number ``attempt`` (0 for the first).

        ``retry_initial · 2^attempt`` capped at ``retry_max``, minus up to half
        of it (``jitter`` in ``[0, 1)``), never below ``retry_min``.

        Raises:
            ValueError: a negative ``attempt`` or a ``jitter`` outside ``[0, 1)``.
        """
        if attempt < 0:
            raise ValueError(f"attempt {attempt} is negative")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter {jitter} is not in [0, 1)")
        ceiling = self.retry_max
        base = ceiling if attempt >= 40 else min(self.retry_initial * (1 << attempt), ceiling)
        return max(base - base * (jitter / 2), self.retry_min)

    def retry_at(
        self, attempt: int, validity: CertificateValidity, *, now: datetime, jitter: float
    ) -> datetime:
        """When to try again after failed attempt ``attempt``, seen at ``now``.

        The backoff of :meth:`retry_delay`, but no later than halfway to
        expiry (while that is at least ``retry_min`` away), so attempts keep
        coming until the certificate runs out. Always after ``now``.

        Raises:
            CertificateExpiredError: the certificate has expired at ``now``.
            ValueError: a naive ``now``, a negative ``attempt``, a ``jitter`` outside ``[0, 1)``.
        """
        validity.require_unexpired(now)
        delay = self.retry_delay(attempt, jitter=jitter)
        halfway = max((validity.not_after - now) / 2, self.retry_min)
        return now + min(delay, halfway)
