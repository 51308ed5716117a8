"""Repeated authentication failures from one source: slowed, then refused for a while.

A *failure* is a bearer token presented and refused (unknown, expired,
rotated or revoked); a request with no token is not one. Per client address:

* up to half of ``max_failures`` within ``window`` cost nothing;
* past that, each failure makes the source wait before its next attempt
  (1 s, 2 s, 4 s ... at most the window): an attempt sooner is answered 429
  with ``Retry-After`` and not even looked at;
* the ``max_failures``-th failure within the window locks the source out for
  ``lockout``: every request that needs a token is answered 429 with
  ``Retry-After``, valid token or not. The lockout (not each failure) is
  recorded on the ledger as ``identity.auth_lockout``, so an attacker cannot
  flood the ledger.

The state is in memory, per server process (several replicas each count on
their own; a restart forgets). Nothing here sleeps: a throttled request is
answered at once, so failures cannot tie up the server's threads.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.clock import format_rfc3339
from core.errors import IbxError
from core.events import Event, EventRecorder

__all__ = ["AuthFailureGuard", "AuthFailureLimits", "AuthLockedOutError"]

logger = logging.getLogger(__name__)

MAX_SOURCES = 100_000
"""Sources tracked at most; past it, the ones with nothing pending are forgotten first."""


class AuthLockedOutError(IbxError):
    """Too many failed authentications from this source: wait ``retry_after`` seconds."""

    title = "too many failed authentications"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds until the source may try again (the ``Retry-After`` header)."""


@dataclass(frozen=True)
class AuthFailureLimits:
    """How many failures from one source, in what window, lock it out for how long."""

    max_failures: int = 10
    window: timedelta = timedelta(seconds=60)
    lockout: timedelta = timedelta(seconds=300)

    def __post_init__(self) -> None:
        if self.max_failures < 2:
            raise ValueError("max_failures must be at least 2")
        if self.window <= timedelta(0) or self.lockout <= timedelta(0):
            raise ValueError("the failure window and the lockout must be positive")

    @property
    def free_failures(self) -> int:
        """Failures within the window that cost no wait."""
        return self.max_failures // 2


@dataclass
class _Source:
    failures: deque[datetime] = field(default_factory=deque)
    next_attempt: datetime | None = None
    locked_until: datetime | None = None

    def idle(self, now: datetime, window: timedelta) -> bool:
        return (
            (self.locked_until is None or self.locked_until <= now)
            and (self.next_attempt is None or self.next_attempt <= now)
            and all(now - when >= window for when in self.failures)
        )


def _seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


class AuthFailureGuard:
    """Counts failed authentications per source and refuses the sources that fail too often."""

    def __init__(self, limits: AuthFailureLimits, recorder: EventRecorder) -> None:
        self.limits = limits
        self._recorder = recorder
        self._sources: dict[str, _Source] = {}
        self._lock = threading.Lock()

    def check(self, source: str, *, now: datetime) -> None:
        """Refuse ``source`` if it is locked out or must still wait.

        Raises:
            AuthLockedOutError: locked out, or retrying sooner than its back-off allows.
        """
        with self._lock:
            state = self._sources.get(source)
            if state is None:
                return
            if state.locked_until is not None and now < state.locked_until:
                raise AuthLockedOutError(
                    "too many failed authentications from your address: refused until "
                    f"{format_rfc3339(state.locked_until.replace(microsecond=0))}",
                    retry_after=_seconds(state.locked_until - now),
                )
            if state.next_attempt is not None and now < state.next_attempt:
                raise AuthLockedOutError(
                    "authentication failed repeatedly from your address: wait before trying again",
                    retry_after=_seconds(state.next_attempt - now),
                )

    def failed(self, source: str, *, now: datetime) -> None:
        """Count one failed authentication from ``source``; lock it out at the limit.

        A lockout is recorded on the ledger, once per lockout.
        """
        limits = self.limits
        with self._lock:
            state = self._sources.get(source)
            if state is None:
                if len(self._sources) >= MAX_SOURCES:
                    self._forget_idle(now)
                state = self._sources.setdefault(source, _Source())
            while state.failures and now - state.failures[0] >= limits.window:
                state.failures.popleft()
            state.failures.append(now)
            count = len(state.failures)
            if count < limits.max_failures:
                if count > limits.free_failures:
                    wait = min(
                        timedelta(seconds=2 ** (count - limits.free_failures - 1)), limits.window
                    )
                    state.next_attempt = now + wait
                return
            state.failures.clear()
            state.next_attempt = None
            state.locked_until = now + limits.lockout
            until = state.locked_until
        logger.warning(
            "locked out %s for %s after %d failed authentications within %s",
            source,
            limits.lockout,
            count,
            limits.window,
        )
        self._recorder.record(
            Event(
                "identity.auth_lockout",
                "exchange",
                {
                    "source": source,
                    "failures": count,
                    "window_seconds": int(limits.window.total_seconds()),
                    "locked_until": format_rfc3339(until.replace(microsecond=0)),
                },
            )
        )

    def _forget_idle(self, now: datetime) -> None:
        for key in [k for k, s in self._sources.items() if s.idle(now, self.limits.window)]:
            del self._sources[key]
        while len(self._sources) >= MAX_SOURCES:  # all busy: drop the oldest entries
            del self._sources[next(iter(self._sources))]
