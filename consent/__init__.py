"""Consent: enterprise-signed grants, revocation and the checks before every use.

An enterprise signs a :class:`ConsentReceipt` with its own Ed25519 key (the
exchange stores only the public key); :class:`ConsentService` verifies and
accepts it, records it on the ledger, answers ``covering_consents`` for a
:class:`ConsentRequest`, counts uses transactionally, honours signed
revocations and reports who used an enterprise's data. Validity is judged at
the service's own clock (a constructor dependency), never at a time the
requester states.
"""

from pathlib import Path

from consent._catalog import Dataset, DatasetCatalog
from consent._check import ConsentRecord, ConsentRequest, CoverageReport, Refusal, evaluate
from consent._directory import (
    KeyDirectory,
    KeyLedger,
    LedgeredKey,
    RequesterDirectory,
    RequesterProfile,
    StaticDirectory,
)
from consent._key_registration import (
    KEY_REGISTRATION_KIND,
    KeyRegistration,
    SignedKeyRegistration,
)
from consent._keyfile import EnterpriseKey
from consent._offline import OfflineVerdict, verify_offline
from consent._receipt import (
    RECEIPT_VERSION,
    ConsentReceipt,
    DatasetScope,
    Requester,
    Revocation,
    SignedReceipt,
    SignedRevocation,
    new_consent_id,
    new_nonce,
)
from consent._service import ConsentConfig, ConsentService, ConsentUsage, ConsentUse, UsageEntry
from consent._vocab import Classification, Engine, Operation, Purpose
from consent.entries import ENTRY_TYPES
from consent.errors import (
    BadConsentSignatureError,
    ConsentAccessError,
    ConsentConfigError,
    ConsentError,
    ConsentExpiredError,
    ConsentKeyError,
    ConsentNotFoundError,
    ConsentNotYetValidError,
    ConsentRefusedError,
    ConsentRevokedError,
    DatasetError,
    DatasetExistsError,
    DatasetNotOwnedError,
    ForeignKeyError,
    InvalidConsentError,
    NoConsentError,
    NoRegisteredKeyError,
    ReplayedNonceError,
    RequestTimeSkewError,
    ScopeMismatchError,
    UnknownDatasetError,
    UseLimitReachedError,
    WrongOriginError,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
"""consent's Alembic branch (label ``consent``)."""

SCHEMAS = Path(__file__).resolve().parent / "schema"
"""JSON Schemas of the signed receipt and revocation (draft 2020-12)."""

__all__ = [
    "ENTRY_TYPES",
    "KEY_REGISTRATION_KIND",
    "MIGRATIONS",
    "RECEIPT_VERSION",
    "SCHEMAS",
    "BadConsentSignatureError",
    "Classification",
    "ConsentAccessError",
    "ConsentConfig",
    "ConsentConfigError",
    "ConsentError",
    "ConsentExpiredError",
    "ConsentKeyError",
    "ConsentNotFoundError",
    "ConsentNotYetValidError",
    "ConsentReceipt",
    "ConsentRecord",
    "ConsentRefusedError",
    "ConsentRequest",
    "ConsentRevokedError",
    "ConsentService",
    "ConsentUsage",
    "ConsentUse",
    "CoverageReport",
    "Dataset",
    "DatasetCatalog",
    "DatasetError",
    "DatasetExistsError",
    "DatasetNotOwnedError",
    "DatasetScope",
    "Engine",
    "EnterpriseKey",
    "ForeignKeyError",
    "InvalidConsentError",
    "KeyDirectory",
    "KeyLedger",
    "KeyRegistration",
    "LedgeredKey",
    "NoConsentError",
    "NoRegisteredKeyError",
    "OfflineVerdict",
    "Operation",
    "Purpose",
    "Refusal",
    "ReplayedNonceError",
    "RequestTimeSkewError",
    "Requester",
    "RequesterDirectory",
    "RequesterProfile",
    "Revocation",
    "ScopeMismatchError",
    "SignedKeyRegistration",
    "SignedReceipt",
    "SignedRevocation",
    "StaticDirectory",
    "UnknownDatasetError",
    "UsageEntry",
    "UseLimitReachedError",
    "WrongOriginError",
    "evaluate",
    "new_consent_id",
    "new_nonce",
    "verify_offline",
]
