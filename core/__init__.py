"""Small shared primitives: database, canonical JSON, keys, time, errors, event recording.

Names load from their modules on first use, so a process that needs only
errors or the clock (``ibx --help``) does not import SQLAlchemy and Alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.canonical import JsonValue, canonical_bytes, canonical_sha256, parse_json_object
    from core.clock import format_rfc3339, parse_rfc3339, require_aware, utcnow
    from core.db import MIGRATIONS, Base, Database, migrate
    from core.errors import CanonicalJsonError, ConfigurationError, IbxError, KeyDecryptionError
    from core.events import Event, EventRecorder, RecordedEvent
    from core.keyring import KeyRing
    from core.keys import Ed25519PublicKey, Ed25519Signer, MasterKey, verify_ed25519

_HOME = {
    "core.canonical": ("JsonValue", "canonical_bytes", "canonical_sha256", "parse_json_object"),
    "core.clock": ("format_rfc3339", "parse_rfc3339", "require_aware", "utcnow"),
    "core.db": ("MIGRATIONS", "Base", "Database", "migrate"),
    "core.errors": ("CanonicalJsonError", "ConfigurationError", "IbxError", "KeyDecryptionError"),
    "core.events": ("Event", "EventRecorder", "RecordedEvent"),
    "core.keyring": ("KeyRing",),
    "core.keys": ("Ed25519PublicKey", "Ed25519Signer", "MasterKey", "verify_ed25519"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = [
    "MIGRATIONS",
    "Base",
    "CanonicalJsonError",
    "ConfigurationError",
    "Database",
    "Ed25519PublicKey",
    "Ed25519Signer",
    "Event",
    "EventRecorder",
    "IbxError",
    "JsonValue",
    "KeyDecryptionError",
    "KeyRing",
    "MasterKey",
    "RecordedEvent",
    "canonical_bytes",
    "canonical_sha256",
    "format_rfc3339",
    "migrate",
    "parse_json_object",
    "parse_rfc3339",
    "require_aware",
    "utcnow",
    "verify_ed25519",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
