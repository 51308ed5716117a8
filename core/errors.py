"""The root of every ibx error.

Each package has one root of its own that derives from :class:`IbxError`::

    IbxError
    ├── ConfigurationError        settings or key material that cannot be used
    ├── CanonicalJsonError        a value that RFC 8785 cannot encode
    ├── KeyDecryptionError        an encrypted key blob that does not open (opaque)
    ├── LedgerError               (ledger/errors.py)
    ├── PolicyError               (policies/errors.py)
    ├── ConsentError              (consent/errors.py)
    ├── MpcError                  (mpc/errors.py)
    ├── EnrollmentError           (edge_tls/errors.py)
    └── AuditError                (audit/errors.py)

``exchange/errors.py`` maps each root to an HTTP status in one table.
"""

from __future__ import annotations

__all__ = ["CanonicalJsonError", "ConfigurationError", "IbxError", "KeyDecryptionError"]


class IbxError(Exception):
    """Base of every error raised on purpose by ibx.

    ``title`` is a short, stable, human-readable summary used as the RFC 9457
    problem ``title``; the message (``str(exc)``) is the specific detail.
    """

    title = "ibx error"


class ConfigurationError(IbxError):
    """Settings, files or key material that cannot be used as given."""

    title = "configuration error"


class CanonicalJsonError(IbxError):
    """A value that has no RFC 8785 canonical form (NaN, huge integers, non-str keys...)."""

    title = "value is not canonical JSON"


class KeyDecryptionError(IbxError):
    """An encrypted key does not open under the master key.

    Deliberately opaque: it never says whether the blob, the tag or the key was wrong.
    """

    title = "key material could not be decrypted"
