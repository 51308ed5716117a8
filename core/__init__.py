"""Small shared primitives: database, canonical JSON, keys, time, errors, event recording."""

from core.canonical import JsonValue, canonical_bytes, canonical_sha256, parse_json_object
from core.clock import format_rfc3339, parse_rfc3339, require_aware, utcnow
from core.db import MIGRATIONS, Base, Database, migrate
from core.errors import CanonicalJsonError, ConfigurationError, IbxError, KeyDecryptionError
from core.events import Event, EventRecorder, RecordedEvent
from core.keys import Ed25519PublicKey, Ed25519Signer, KeyRing, MasterKey, verify_ed25519

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
