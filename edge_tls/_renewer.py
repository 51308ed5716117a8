"""The renewal daemon: sleep until the schedule says, renew over EST, save, repeat.

A thin driver around :class:`~edge_tls._renewal.RenewalSchedule` (when) and
:func:`~edge_tls._est.reenroll` (how). It re-reads the certificate after
every wait, so a renewal done by hand meanwhile is picked up, and it stops
only between steps: a stop asked for during a renewal lets the renewal and
its save finish first (the exchange supersedes the old certificate when it
issues the new one, so dropping the answer would lock the device out).

It ends by returning (stopped), or by raising when renewal has become
impossible: the certificate expired, or the exchange refused (revoked,
superseded). Failures that may pass (unreachable, 5xx, 429) are reported
and retried with the schedule's backoff, every attempt reported.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from core.clock import utcnow
from edge_tls._credentials import DeviceCredentials
from edge_tls._est import reenroll
from edge_tls._renewal import CertificateValidity, RenewalSchedule
from edge_tls.errors import RenewalUnavailableError

__all__ = ["Renewal", "RenewalDaemon", "StopSignal"]

logger = logging.getLogger(__name__)

_LONGEST_NAP = 60.0  # re-read the wall clock at least this often (suspend, clock steps)


def _stamp(when: datetime) -> str:
    return f"{when:%Y-%m-%dT%H:%M:%SZ}"


class StopSignal:
    """A stop request that a signal handler may set: a flag and a self-pipe, no locks.

    ``set()`` only stores a flag and writes one byte, so it is safe inside a
    signal handler that interrupts :meth:`wait` in the same thread (an
    :class:`threading.Event` takes a lock there and can deadlock). Use as a
    context manager so the pipe is closed.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._set = False

    def __enter__(self) -> StopSignal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pipe (idempotent)."""
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                continue
        self._read = self._write = -1

    def set(self) -> None:
        """Ask the daemon to stop at its next step (signal-handler safe)."""
        self._set = True
        try:
            os.write(self._write, b"x")
        except OSError:  # pipe full (already woken) or closed: the flag is enough
            return

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._set

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking at once on :meth:`set`; whether a stop was asked."""
        if not self._set and seconds > 0:
            select.select([self._read], [], [], seconds)
        return self._set


@dataclass(frozen=True)
class Renewal:
    """One renewal the daemon made: the new certificate and when the next one is due."""

    device: str
    serial: int
    not_after: datetime
    next_at: datetime


class RenewalDaemon:
    """Keeps one device's certificate renewed until stopped or until renewal is impossible."""

    def __init__(
        self,
        credentials: DeviceCredentials,
        schedule: RenewalSchedule,
        *,
        stop: StopSignal,
        report: Callable[[str], None],
        after_renewal: Callable[[Renewal], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._credentials = credentials
        self._schedule = schedule
        self._stop = stop
        self._report = report
        self._after = after_renewal
        self._clock = clock
        self._jitter = jitter or (lambda: secrets.randbelow(1 << 20) / (1 << 20))
        self._timeout = timeout

    def run(self) -> int:
        """Renew on schedule until stopped; the number of renewals made.

        Raises:
            CertificateExpiredError: the certificate expired (at start, or while
                retrying): renewal is impossible, the device must enrol again.
            RenewalRefusedError: the exchange refused a renewal (revoked, superseded).
            EnrollmentError: no enrolment in the directory, or an unusable answer.
            OSError: the directory cannot be read or written.
        """
        credentials = self._credentials
        finished = credentials.finish_pending()
        if finished is not None:
            self._report(f"{credentials.directory}: {finished}")
        device = credentials.device()
        validity = CertificateValidity.of(credentials.certificate())
        next_at = self._schedule.renew_at(validity, now=self._clock())
        self._report(
            f"{device}: certificate {validity.serial:x} valid until {_stamp(validity.not_after)}; "
            f"renewing at {_stamp(next_at)}"
        )
        renewals = attempt = 0
        while not self._sleep_until(next_at):
            current = CertificateValidity.of(credentials.certificate())
            now = self._clock()
            current.require_unexpired(now)
            if current.serial != validity.serial:  # renewed by hand meanwhile
                validity, attempt = current, 0
                next_at = self._schedule.renew_at(validity, now=now)
                self._report(
                    f"{device}: certificate replaced outside the daemon by "
                    f"{validity.serial:x}; renewing at {_stamp(next_at)}"
                )
                continue
            try:
                certificate = reenroll(credentials, timeout=self._timeout)
            except RenewalUnavailableError as exc:
                now = self._clock()
                next_at = self._schedule.retry_at(attempt, validity, now=now, jitter=self._jitter())
                attempt += 1
                self._report(
                    f"error: renewal attempt {attempt} of {device} failed: {exc}; "
                    f"retrying at {_stamp(next_at)}; the certificate expires "
                    f"{_stamp(validity.not_after)}"
                )
                logger.warning("renewal attempt %d of %s failed: %s", attempt, device, exc)
                continue
            renewals += 1
            attempt = 0
            validity = CertificateValidity.of(certificate)
            next_at = self._schedule.renew_at(validity, now=self._clock())
            self._report(
                f"renewed {device}: serial {validity.serial:x}, valid until "
                f"{_stamp(validity.not_after)}; next renewal at {_stamp(next_at)}"
            )
            if self._after is not None:
                self._after(Renewal(device, validity.serial, validity.not_after, next_at))
        self._report(f"{device}: stopped after {renewals} renewal(s)")
        return renewals

    def _sleep_until(self, when: datetime) -> bool:
        """Wait until ``when`` (wall clock); whether a stop was asked for meanwhile."""
        while not self._stop.is_set():
            remaining = (when - self._clock()).total_seconds()
            if remaining <= 0:
                return False
            self._stop.wait(min(remaining, _LONGEST_NAP))
        return True
