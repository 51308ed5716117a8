"""Consent errors: every refusal has its own leaf, so callers and tests can tell them apart.

::

    ConsentError
    ├── InvalidConsentError           malformed receipt, revocation or request
    │   └── RequestTimeSkewError      a request's stated time is off from the exchange's clock
    ├── ConsentConfigError            a ConsentConfig that cannot work
    ├── ConsentKeyError               key files and key registration
    ├── DatasetError                  the dataset catalog
    │   ├── UnknownDatasetError
    │   ├── DatasetExistsError
    │   └── DatasetNotOwnedError      a consent names a dataset its signer does not own
    ├── ConsentNotFoundError
    ├── ConsentAccessError            an identity asking about another enterprise's consents
    └── ConsentRefusedError           a receipt or a use refused for one of these reasons:
        ├── BadConsentSignatureError  (opaque: never says which byte or why)
        ├── ForeignKeyError           signed with the key of another enterprise
        ├── NoRegisteredKeyError      the enterprise has no registered public key
        ├── WrongOriginError          made for another deployment
        ├── ReplayedNonceError        a nonce (or consent id) seen before
        ├── ConsentExpiredError
        ├── ConsentNotYetValidError
        ├── ConsentRevokedError
        ├── ScopeMismatchError        requester, dataset, field, purpose, operation or engine
        ├── UseLimitReachedError
        └── NoConsentError            the owner has granted this requester nothing at all

Each refusal carries a stable ``reason`` code (``"revoked"``, ``"scope_mismatch"``...)
that :class:`consent.Refusal` repeats when a check explains itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.clock import format_rfc3339
from core.errors import IbxError

__all__ = [
    "BadConsentSignatureError",
    "ConsentAccessError",
    "ConsentConfigError",
    "ConsentError",
    "ConsentExpiredError",
    "ConsentKeyError",
    "ConsentNotFoundError",
    "ConsentNotYetValidError",
    "ConsentRefusedError",
    "ConsentRevokedError",
    "DatasetError",
    "DatasetExistsError",
    "DatasetNotOwnedError",
    "ForeignKeyError",
    "InvalidConsentError",
    "NoConsentError",
    "NoRegisteredKeyError",
    "ReplayedNonceError",
    "RequestTimeSkewError",
    "ScopeMismatchError",
    "UnknownDatasetError",
    "UseLimitReachedError",
    "WrongOriginError",
]


class ConsentError(IbxError):
    """Root of every consent error."""

    title = "consent error"


class InvalidConsentError(ConsentError):
    """A receipt, revocation or request that is not well formed."""

    title = "invalid consent"


class RequestTimeSkewError(InvalidConsentError):
    """A request states a time further from the exchange's clock than the allowed skew.

    Consent validity is judged at the exchange's own clock, never at a time the
    requester chooses; a stated time that disagrees is refused rather than
    silently replaced, so a requester learns its clock is wrong.

    Attributes:
        stated: the time the request named.
        exchange_time: the exchange's clock when it checked.
        allowed: the largest difference accepted (``ConsentConfig.request_skew``).
    """

    title = "request time off from the exchange's clock"

    def __init__(self, *, stated: datetime, exchange_time: datetime, allowed: timedelta) -> None:
        off = abs(stated - exchange_time)
        super().__init__(
            f"request time {format_rfc3339(stated)} is {off} from the exchange's clock "
            f"({format_rfc3339(exchange_time)}); consent validity is judged at the "
            f"exchange's time and at most {allowed} of skew is accepted"
        )
        self.stated = stated
        self.exchange_time = exchange_time
        self.allowed = allowed


class ConsentConfigError(ConsentError):
    """A consent service configuration that cannot work (e.g. a negative skew)."""

    title = "invalid consent configuration"


class ConsentKeyError(ConsentError):
    """A key file that cannot be used, or a key that cannot be registered."""

    title = "consent key error"


class DatasetError(ConsentError):
    """Root of dataset catalog errors."""

    title = "dataset error"


class UnknownDatasetError(DatasetError):
    """No dataset with this id is registered."""

    title = "unknown dataset"

    def __init__(self, dataset: str) -> None:
        super().__init__(f"no dataset {dataset!r} is registered")
        self.dataset = dataset


class DatasetExistsError(DatasetError):
    """A dataset id that is already taken."""

    title = "dataset already registered"


class DatasetNotOwnedError(DatasetError):
    """A consent that names a dataset its signer does not own."""

    title = "dataset not owned by the signer"
    reason = "dataset_not_owned"

    def __init__(self, dataset: str, *, owner: str, signer: str) -> None:
        super().__init__(f"dataset {dataset!r} belongs to {owner!r}, not to {signer!r}")
        self.dataset = dataset
        self.owner = owner
        self.signer = signer


class ConsentNotFoundError(ConsentError):
    """No consent with this id."""

    title = "consent not found"

    def __init__(self, consent_id: str) -> None:
        super().__init__(f"no consent {consent_id!r}")
        self.consent_id = consent_id


class ConsentAccessError(ConsentError):
    """An identity asking to see or change another enterprise's consents."""

    title = "not allowed for this identity"


class ConsentRefusedError(ConsentError):
    """A receipt or a use of a consent that is refused; ``reason`` is a stable code."""

    title = "consent refused"
    reason = "refused"

    def __init__(self, message: str, *, consent_id: str | None = None) -> None:
        super().__init__(message)
        self.consent_id = consent_id


class BadConsentSignatureError(ConsentRefusedError):
    """The signature does not verify under the enterprise's registered key (opaque)."""

    title = "bad consent signature"
    reason = "bad_signature"


class ForeignKeyError(ConsentRefusedError):
    """Signed with a key that is not the signing enterprise's registered key."""

    title = "signed with another enterprise's key"
    reason = "foreign_key"


class NoRegisteredKeyError(ConsentRefusedError):
    """The enterprise has no registered Ed25519 public key (or is not an active enterprise)."""

    title = "no registered consent key"
    reason = "no_registered_key"


class WrongOriginError(ConsentRefusedError):
    """A receipt made for another deployment."""

    title = "consent for another deployment"
    reason = "wrong_origin"


class ReplayedNonceError(ConsentRefusedError):
    """A nonce (or consent id) the exchange has already accepted."""

    title = "replayed consent"
    reason = "replayed_nonce"


class ConsentExpiredError(ConsentRefusedError):
    """The consent's validity window has ended."""

    title = "consent expired"
    reason = "expired"


class ConsentNotYetValidError(ConsentRefusedError):
    """The consent's validity window has not started."""

    title = "consent not yet valid"
    reason = "not_yet_valid"


class ConsentRevokedError(ConsentRefusedError):
    """The enterprise revoked the consent."""

    title = "consent revoked"
    reason = "revoked"


class ScopeMismatchError(ConsentRefusedError):
    """The consent does not cover the request; ``dimension`` says which part."""

    title = "consent does not cover the request"
    reason = "scope_mismatch"

    def __init__(self, message: str, *, dimension: str, consent_id: str | None = None) -> None:
        super().__init__(message, consent_id=consent_id)
        self.dimension = dimension


class UseLimitReachedError(ConsentRefusedError):
    """The consent's use limit is used up."""

    title = "consent use limit reached"
    reason = "use_limit_reached"


class NoConsentError(ConsentRefusedError):
    """The owner has no consent at all for this requester and dataset."""

    title = "no consent"
    reason = "no_consent"
