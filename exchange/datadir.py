"""The data dir's record of what was fixed when the deployment was initialised.

``ibx init`` writes ``<data dir>/deployment.json``: the format, the ledger
origin (every checkpoint and consent names it, so it can never change), the
kind of database, and the master key's fingerprint (an HMAC under the key,
never the key). Every later start reads it first:

* no record: the path was never initialised (a mistyped ``--data-dir`` must
  not quietly become a new, empty deployment whose ``ledger verify`` says ok);
* a setting given explicitly that differs from the record: refused, naming
  the stored value; a setting left at its default takes the stored value;
* a master key whose fingerprint differs: refused before anything is
  decrypted or created (a restore without ``master.key`` must not mint a new
  key).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.clock import format_rfc3339, parse_rfc3339
from core.errors import ConfigurationError

__all__ = [
    "RECORD_NAME",
    "AlreadyInitialisedError",
    "DeploymentRecord",
    "NotInitialisedError",
    "read_record",
    "write_record",
]

RECORD_NAME = "deployment.json"
FORMAT = 1


class NotInitialisedError(ConfigurationError):
    """A data dir that ``ibx init`` never created."""

    title = "not an ibx data dir"

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            f"{data_dir} was never initialised (no {RECORD_NAME}); "
            f"create a deployment there with: ibx --data-dir {data_dir} init"
        )
        self.data_dir = data_dir


class AlreadyInitialisedError(ConfigurationError):
    """``ibx init`` on a data dir that already holds a deployment."""

    title = "already initialised"


@dataclass(frozen=True)
class DeploymentRecord:
    """What ``ibx init`` fixed for good."""

    origin: str
    database_kind: str
    master_key_fingerprint: str
    created_at: datetime

    def to_dict(self) -> dict[str, object]:
        """The file's stable fields."""
        return {
            "format": FORMAT,
            "origin": self.origin,
            "database_kind": self.database_kind,
            "master_key_fingerprint": self.master_key_fingerprint,
            "created_at": format_rfc3339(self.created_at),
        }

    @classmethod
    def from_dict(cls, data: object, *, path: Path) -> DeploymentRecord:
        """Parse the file.

        Raises:
            ConfigurationError: another format, or a field missing or of the wrong type.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigurationError(f"{path} is not a format-{FORMAT} deployment record")
        fields = ("origin", "database_kind", "master_key_fingerprint", "created_at")
        if any(not isinstance(data.get(name), str) for name in fields):
            raise ConfigurationError(f"{path} lacks one of {', '.join(fields)}")
        try:
            created = parse_rfc3339(data["created_at"])
        except ValueError as exc:
            raise ConfigurationError(f"{path}: created_at: {exc}") from exc
        return cls(data["origin"], data["database_kind"], data["master_key_fingerprint"], created)


def read_record(data_dir: Path) -> DeploymentRecord | None:
    """The record in ``data_dir``, or None if there is none.

    Raises:
        ConfigurationError: the record exists but cannot be read or parsed.
    """
    path = data_dir / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    return DeploymentRecord.from_dict(data, path=path)


def write_record(data_dir: Path, record: DeploymentRecord) -> Path:
    """Write ``record`` into ``data_dir`` (0600, atomically); refuse to replace one.

    Raises:
        AlreadyInitialisedError: a record is already there.
        OSError: the directory cannot be written.
    """
    path = data_dir / RECORD_NAME
    fd, temp = tempfile.mkstemp(dir=data_dir, prefix=".deployment-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record.to_dict(), out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        Path(temp).chmod(0o600)
        try:
            os.link(temp, path)  # fails if a record appeared meanwhile: never replaced
        except FileExistsError as exc:
            raise AlreadyInitialisedError(f"{data_dir} already holds a deployment") from exc
    finally:
        Path(temp).unlink(missing_ok=True)
    return path
