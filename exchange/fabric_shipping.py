"""``ibx serve`` ships the ledger to its Fabric channel as it grows (``IBX_LEDGER_FABRIC_MODE``).

One process per data dir ships: the one holding an exclusive lock on
``<data dir>/fabric-shipping.lock`` (with ``ibx serve --workers N`` the first
to take it; the others try again every :data:`LOCK_RETRY` seconds, so one takes
over when the holder exits). Even two shippers at once (two data dirs on one
database) lose nothing and store nothing twice: the chaincode orders batches
and the loser re-reads the head.

The shipper runs in a thread of its own (a gRPC call blocks): a pass every
:data:`PERIOD` seconds in full mode, every ``IBX_LEDGER_FABRIC_ANCHOR_SECONDS``
in anchor mode. While Fabric is unreachable or refuses, passes back off
(doubling up to :data:`MAX_BACKOFF` seconds) and one warning is logged per
outage, one line when shipping resumes. The entries wait in SQL meanwhile.
"""

from __future__ import annotations

import logging
import threading
from typing import IO, TYPE_CHECKING

from core.errors import ConfigurationError
from exchange.data_dir_lock import try_lock

if TYPE_CHECKING:
    from exchange.runtime import Runtime
    from ledger.fabric import FabricConfig

__all__ = [
    "LOCK_FILE",
    "LOCK_RETRY",
    "MAX_BACKOFF",
    "PERIOD",
    "FabricShipping",
    "check_fabric_settings",
]

logger = logging.getLogger(__name__)

PERIOD = 1.0
"""Seconds between full-mode passes."""
LOCK_RETRY = 5.0
"""Seconds between a non-shipping process's tries to take the lock."""
MAX_BACKOFF = 60.0
"""The longest wait between passes while Fabric is down."""
STOP_WAIT = 5.0
"""Seconds :meth:`FabricShipping.stop` waits for a pass in flight."""
LOCK_FILE = "fabric-shipping.lock"
"""The lock's file name in the data dir."""


def check_fabric_settings(runtime: Runtime) -> FabricConfig | None:
    """The Fabric settings, checked at start: complete, a usable log id, and readable
    identity files (nothing is dialled). None when shipping is off.

    Raises:
        ConfigurationError: what is wrong, in one line.
    """
    config = runtime.fabric_config
    if config is None:
        return None
    from ledger.fabric import FabricConfigError
    from ledger.fabric.identity import FabricIdentity

    try:
        FabricIdentity.from_files(config.cert, config.key, config.msp_id, config.key_password)
        config.tls_root.read_bytes()
    except FabricConfigError as exc:
        raise ConfigurationError(str(exc)) from exc
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the Fabric TLS root certificate {config.tls_root}: {exc.strerror}"
        ) from exc
    return config


class FabricShipping:
    """The running shipper of this process (see the module docstring)."""

    def __init__(self, runtime: Runtime, period: float) -> None:
        self._runtime = runtime
        self._period = period
        self._stop = threading.Event()
        self._handle: IO[bytes] | None = None
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="ibx-fabric-shipping", daemon=True)

    @classmethod
    def start(cls, runtime: Runtime) -> FabricShipping | None:
        """Start shipping in a thread (if this process takes the lock; else keep trying
        for it); None when shipping is off.

        Raises:
            ConfigurationError: the settings are incomplete (:func:`check_fabric_settings`).
        """
        config = runtime.fabric_config
        if config is None:
            return None
        from ledger.fabric import FabricMode

        anchor = config.mode is FabricMode.ANCHOR
        period = float(runtime.settings.ledger_fabric_anchor_seconds) if anchor else PERIOD
        shipping = cls(runtime, period)
        shipping._thread.start()
        return shipping

    @property
    def shipping(self) -> bool:
        """Whether this process holds the lock (ships)."""
        return self._handle is not None

    def run_pass(self) -> float:
        """Ship what is pending; return the seconds to wait before the next pass."""
        try:
            shipper = self._runtime.fabric_shipper
            assert shipper is not None
            report = shipper.ship()
        except Exception as exc:
            return self._failed(str(exc), integrity=_is_integrity(exc))
        if report.error is not None:
            return self._failed(report.error, integrity=False)
        if self._failures:
            logger.warning(
                "Fabric shipping resumed: channel size %d of SQL size %d",
                report.channel_size,
                report.sql_size,
            )
        self._failures = 0
        if report.transactions:
            logger.info(
                "shipped %d entries to Fabric in %d transactions; channel size %d",
                report.shipped,
                report.transactions,
                report.channel_size,
            )
        return self._period

    def _failed(self, error: str, *, integrity: bool) -> float:
        self._failures += 1
        if self._failures == 1:  # one line (and for a disagreement one alert) per outage
            if integrity:
                logger.error("Fabric shipping stopped: %s", error)
                self._alert(error)
            else:
                logger.warning("Fabric shipping stopped, retrying with backoff: %s", error)
        return min(MAX_BACKOFF, max(self._period, 2.0 ** min(self._failures - 1, 10)))

    def _alert(self, error: str) -> None:
        """Record a critical ``fabric.disagreement`` alert: the channel and the SQL log
        disagree, or the chaincode refused what the SQL log holds (never for an outage)."""
        from core.alerts import Alert, Severity
        from exchange.duty_keys import ALERT_ACTOR

        config = self._runtime.fabric_config
        where = "" if config is None else f"{config.channel}/{config.chaincode}"
        alert = Alert(
            rule="fabric.disagreement",
            severity=Severity.CRITICAL,
            subject=f"fabric:{where}",
            message=error,
            details={"log": self._runtime.settings.ledger_origin},
        )
        try:
            self._runtime.ledger.record(alert.event(ALERT_ACTOR))
        except Exception:  # the log line above stands; shipping stays stopped
            logger.exception("could not record the fabric.disagreement alert")

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.take_lock():
                self._stop.wait(LOCK_RETRY)
                continue
            self._stop.wait(self.run_pass())

    def take_lock(self) -> bool:
        """Take the data dir's shipping lock (non-blocking); True when this process holds it."""
        if self._handle is not None:
            return True
        self._handle = try_lock(self._runtime.data_dir / LOCK_FILE, "Fabric shipping")
        return self._handle is not None

    def stop(self) -> None:
        """Stop shipping (waiting up to :data:`STOP_WAIT` seconds for a pass in flight)
        and release the lock."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT)
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _is_integrity(exc: Exception) -> bool:
    from ledger import LedgerIntegrityError
    from ledger.fabric import ChaincodeRefusedError

    return isinstance(exc, LedgerIntegrityError | ChaincodeRefusedError)
