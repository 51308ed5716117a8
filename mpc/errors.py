"""Errors of the privacy-compute package.

::

    MpcError
    ├── InvalidContributionError      bad input from one contributor (names it)
    │   ├── NonNumericValueError      a value that is not a finite number
    │   ├── ValueOutOfRangeError      a value outside the job's agreed range
    │   ├── VectorLengthError         a vector of the wrong length
    │   ├── WrongJobKeyError          a ciphertext made for another job's key
    │   ├── MalformedShareError       a sealed share that does not open or parse
    │   ├── ReplayedContributionError a contribution or share seen before
    │   └── DuplicateContributorError the same contributor named twice in one input
    ├── CustodianError                the key custodian refused
    │   ├── UnknownJobError           no key for this job
    │   ├── KeyDestroyedError         the job ended and its key was destroyed
    │   ├── DecryptionRefusedError    not the approved final aggregate of the job
    │   └── AggregateIntegrityError   the aggregate does not decrypt consistently
    ├── ReleaseRefusedError           the release guard refused a result
    │   ├── CohortTooSmallError       fewer contributors than the minimum cohort
    │   ├── IndividualValueError      a per-enterprise value
    │   ├── DifferencingError         isolates contributors against an earlier result
    │   │   └── LinearDisclosureError with everything released to the group, solves a value
    │   ├── DominanceError            the (n, k) dominance rule suppresses the total
    │   ├── PrivacyBudgetExhaustedError  a consent's epsilon budget is spent
    │   ├── EngineChoiceError         the policy demands another engine
    │   ├── ReleaseDescriptionError   the release's description does not fit the request
    │   ├── WeightShareError          one contributor's weight dominates a weighted release
    │   └── OrderStatisticError       an exact min, max, median or quantile
    ├── PartyError                    an MPC compute party failed
    │   ├── PartyTimeoutError         a party did not answer before the deadline
    │   └── JobInterruptedError       SIGTERM/SIGHUP stopped the job (every party killed)
    ├── DeploymentError               party directories, certificates or keys unusable
    └── PsiError                      a PSI message that is malformed
"""

from __future__ import annotations

from core.errors import IbxError

__all__ = [
    "AggregateIntegrityError",
    "CohortTooSmallError",
    "CustodianError",
    "DecryptionRefusedError",
    "DeploymentError",
    "DifferencingError",
    "DominanceError",
    "DuplicateContributorError",
    "EngineChoiceError",
    "IndividualValueError",
    "InvalidContributionError",
    "JobInterruptedError",
    "KeyDestroyedError",
    "LinearDisclosureError",
    "MalformedShareError",
    "MpcError",
    "NonNumericValueError",
    "OrderStatisticError",
    "PartyError",
    "PartyTimeoutError",
    "PrivacyBudgetExhaustedError",
    "PsiError",
    "ReleaseDescriptionError",
    "ReleaseRefusedError",
    "ReplayedContributionError",
    "UnknownJobError",
    "ValueOutOfRangeError",
    "VectorLengthError",
    "WeightShareError",
    "WrongJobKeyError",
]


class MpcError(IbxError):
    """Root of every privacy-compute error."""

    title = "privacy compute error"


class InvalidContributionError(MpcError):
    """One contributor's input was refused; ``contributor`` names it."""

    title = "contribution refused"

    def __init__(self, message: str, *, contributor: str) -> None:
        super().__init__(f"contributor {contributor!r}: {message}")
        self.contributor = contributor


class NonNumericValueError(InvalidContributionError):
    """A value that is not a finite real number."""

    title = "non-numeric value"


class ValueOutOfRangeError(InvalidContributionError):
    """A value outside the range the job's encoding can represent exactly."""

    title = "value out of range"


class VectorLengthError(InvalidContributionError):
    """A vector whose length is not the job's."""

    title = "wrong vector length"


class WrongJobKeyError(InvalidContributionError):
    """A ciphertext made under another job's public key."""

    title = "ciphertext under another job's key"


class MalformedShareError(InvalidContributionError):
    """A sealed share that does not open, parse, or belong to this job and party."""

    title = "malformed share"


class ReplayedContributionError(InvalidContributionError):
    """A contribution or share that was already used."""

    title = "replayed contribution"


class DuplicateContributorError(InvalidContributionError):
    """The same contributor appears twice in one input (JSON would keep only the last)."""

    title = "duplicate contributor"


class CustodianError(MpcError):
    """The key custodian refused an operation."""

    title = "key custodian refused"


class UnknownJobError(CustodianError):
    """No key was generated for this job."""

    title = "unknown job"


class KeyDestroyedError(CustodianError):
    """The job ended and its secret key was destroyed."""

    title = "job key destroyed"


class DecryptionRefusedError(CustodianError):
    """Only the approved final aggregate of a job is ever decrypted."""

    title = "decryption refused"


class AggregateIntegrityError(CustodianError):
    """A decrypted slot is beyond the job's bounds or the check slot is wrong.

    Some contribution was made under another key (its share of the sum is noise).
    """

    title = "aggregate failed its integrity check"


class ReleaseRefusedError(MpcError):
    """The release guard refused a result."""

    title = "release refused"


class CohortTooSmallError(ReleaseRefusedError):
    """Fewer contributors than the strictest minimum cohort."""

    title = "cohort below the minimum"

    def __init__(self, message: str, *, cohort: int, minimum: int) -> None:
        super().__init__(message)
        self.cohort = cohort
        self.minimum = minimum


class IndividualValueError(ReleaseRefusedError):
    """A result that would reveal a single enterprise's value."""

    title = "per-enterprise value refused"


class DifferencingError(ReleaseRefusedError):
    """The cohort differs from an earlier one of the same question by too few members."""

    title = "differencing risk"


class DominanceError(ReleaseRefusedError):
    """The (n, k) dominance rule suppresses the total."""

    title = "dominated total suppressed"


class PrivacyBudgetExhaustedError(ReleaseRefusedError):
    """A consent's differential-privacy budget would be exceeded."""

    title = "privacy budget exhausted"

    def __init__(self, message: str, *, consent_id: str) -> None:
        super().__init__(message)
        self.consent_id = consent_id


class EngineChoiceError(ReleaseRefusedError):
    """The requested engine cannot satisfy the policy (e.g. dominance needs MPC)."""

    title = "engine cannot satisfy the policy"


class LinearDisclosureError(DifferencingError):
    """With everything already released to the group, one value (or a difference) is solvable.

    ``releases`` is how many earlier releases to the group about the field took
    part; who would be exposed is never said to the requester.
    """

    title = "release would disclose a contributor's value"

    def __init__(self, message: str, *, releases: int) -> None:
        super().__init__(message)
        self.releases = releases


class ReleaseDescriptionError(ReleaseRefusedError):
    """A release whose description (subject, contributors) does not fit its request."""

    title = "release description refused"


class WeightShareError(ReleaseRefusedError):
    """One contributor's weight is too large a share of a weighted release."""

    title = "weight dominates the release"

    def __init__(self, message: str, *, share: float, limit: float) -> None:
        super().__init__(message)
        self.share = share
        self.limit = limit


class OrderStatisticError(ReleaseRefusedError):
    """An exact order statistic (one contributor's value) the policy does not allow."""

    title = "exact order statistic refused"


class PartyError(MpcError):
    """An MPC compute party failed; the job produced no result."""

    title = "compute party failed"


class PartyTimeoutError(PartyError):
    """A compute party did not answer before the job's deadline."""

    title = "compute party timed out"

    def __init__(self, message: str, *, parties: tuple[int, ...]) -> None:
        super().__init__(message)
        self.parties = parties


class JobInterruptedError(PartyError):
    """A signal stopped the job; every party process it started was killed and reaped."""

    title = "MPC job interrupted"

    def __init__(self, message: str, *, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


class DeploymentError(MpcError):
    """Party directories, certificates or keys that cannot be used."""

    title = "MPC deployment unusable"


class PsiError(MpcError):
    """A private-set-intersection message that is malformed."""

    title = "PSI message refused"
