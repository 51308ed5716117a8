"""The ledger entries the key custodian writes, as typed payloads.

One model per entry type; ``TYPE`` is the entry type, the fields are exactly
the payload (``model_dump(mode="json")`` is what the custodian records), and
unknown members are refused, so an auditor parses every ``mpc.*`` entry
through these (``docs/audit.md``, "Typed entries"; JSON Schema in
``docs/schemas/ledger/``).

* ``mpc.key.generate`` — :class:`KeyGenerateEntry`: a job's HE key was made.
* ``mpc.key.decrypt`` — :class:`KeyDecryptEntry`: the final aggregate was decrypted.
* ``mpc.key.destroy`` — :class:`KeyDestroyEntry`: the job's secret key was erased.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mpc._he_spec import HeOperation
from mpc.hazmat.he import HeScheme

__all__ = ["ENTRY_TYPES", "KeyDecryptEntry", "KeyDestroyEntry", "KeyGenerateEntry"]

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
"""Lower-case hex SHA-256."""

_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class KeyGenerateEntry(BaseModel):
    """``mpc.key.generate``: the custodian made a fresh HE key pair for one job."""

    TYPE: ClassVar[str] = "mpc.key.generate"
    model_config = _CONFIG

    job_id: str = Field(min_length=1)
    """The job the key belongs to."""
    scheme: HeScheme
    """HE scheme: ``ckks`` (approximate reals) or ``bfv`` (exact integers)."""
    operation: HeOperation
    """The aggregate the key may decrypt."""
    key_fingerprint: Hex64
    """Hex SHA-256 of the job's public context: contributions name it."""


class KeyDecryptEntry(BaseModel):
    """``mpc.key.decrypt``: the custodian decrypted a job's approved final aggregate (once)."""

    TYPE: ClassVar[str] = "mpc.key.decrypt"
    model_config = _CONFIG

    job_id: str = Field(min_length=1)
    """The job whose aggregate was decrypted."""
    key_fingerprint: Hex64
    """Hex SHA-256 of the job's public context."""
    cohort_sha256: Hex64
    """Hex SHA-256 over the ``contributor:fingerprint`` lines of the encryptions summed."""
    contributors: int = Field(ge=0)
    """How many contributions were summed."""


class KeyDestroyEntry(BaseModel):
    """``mpc.key.destroy``: the job's secret key was erased; no later decryption is possible."""

    TYPE: ClassVar[str] = "mpc.key.destroy"
    model_config = _CONFIG

    job_id: str = Field(min_length=1)
    """The job whose key was destroyed."""
    key_fingerprint: Hex64
    """Hex SHA-256 of the job's public context."""


ENTRY_TYPES: tuple[type[BaseModel], ...] = (KeyGenerateEntry, KeyDecryptEntry, KeyDestroyEntry)
"""Every entry type ``mpc`` writes."""
