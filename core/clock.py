"""Time as ibx writes it: timezone-aware UTC, RFC 3339 with a ``Z`` suffix."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_rfc3339", "parse_rfc3339", "require_aware", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def require_aware(value: datetime, *, what: str = "time") -> datetime:
    """Return ``value`` converted to UTC.

    Raises:
        ValueError: ``value`` is naive (has no timezone).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def format_rfc3339(value: datetime) -> str:
    """``2026-11-25T08:00:00.123456Z`` (microseconds always present, UTC).

    Raises:
        ValueError: ``value`` is naive.
    """
    return require_aware(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset or ``Z``.

    Raises:
        ValueError: not a timestamp, or one without an offset.
    """
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return require_aware(value, what=f"timestamp {text!r}")
