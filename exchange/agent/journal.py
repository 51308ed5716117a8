"""The agent's state dir: its journal, the last checkpoint it verified, rank keys, alarms.

Layout of ``<state>`` (mode 0700; every file 0600):

* ``journal.jsonl`` — one JSON line per event, appended and fsynced: each
  task's outcome (``contributed`` with the payload hash, ``refused`` with the
  reason, ``answered`` when the exchange already holds an answer, ``closed``
  when the job stopped collecting, ``rank`` when the agent learnt its own rank),
  never a data value;
* ``checkpoint`` — the last signed checkpoint the agent verified (C2SP note);
* ``ledger-alarm`` — present when the ledger was found inconsistent with the
  kept checkpoint; while it exists every task is refused. Both checkpoints are
  kept beside it (``evidence/``). An operator removes it after investigating;
* ``ranks/<job>.json`` — the secret rank tags dealt for a job (MPC percentile
  ranks), until the agent has read its rank;
* ``psi/<job>.json`` — the secret PSI key of a job between its rounds (so a
  restarted agent blinds again with the same key), deleted after its last round;
* ``revoked`` — consent ids the enterprise revoked, one a line, optional: the
  agent refuses them whatever the exchange says.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.canonical import JsonValue
from core.clock import format_rfc3339, utcnow
from core.errors import ConfigurationError

__all__ = ["AgentState", "Journal"]


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a 0600 temporary file renamed over it)."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


@dataclass(frozen=True)
class Journal:
    """``journal.jsonl``: what the agent did with each task, and why."""

    path: Path

    def record(self, event: str, **members: JsonValue) -> None:
        """Append one line ``{"time", "event", ...members}`` and fsync it."""
        line = {"time": format_rfc3339(utcnow()), "event": event, **members}
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def lines(self) -> Iterator[dict[str, JsonValue]]:
        """Every line recorded so far (for tests and operators)."""
        if not self.path.exists():
            return
        with self.path.open() as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


@dataclass(frozen=True)
class AgentState:
    """The agent's state dir (see the module docstring)."""

    root: Path

    @classmethod
    def open(cls, root: Path) -> AgentState:
        """Create ``root`` (0700) if needed and check nobody else can read it.

        Raises:
            ConfigurationError: it is not a directory, or group or others may use it.
        """
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = stat.S_IMODE(root.stat().st_mode)
        except OSError as exc:
            raise ConfigurationError(f"cannot use state dir {root}: {exc.strerror}") from exc
        if not root.is_dir():
            raise ConfigurationError(f"state dir {root} is not a directory")
        if os.name == "posix" and mode & 0o077:
            raise ConfigurationError(
                f"state dir {root} has mode {mode:o}; it must be 0700 (chmod 700 {root})"
            )
        (root / "ranks").mkdir(mode=0o700, exist_ok=True)
        (root / "psi").mkdir(mode=0o700, exist_ok=True)
        return cls(root)

    @property
    def journal(self) -> Journal:
        """The journal."""
        return Journal(self.root / "journal.jsonl")

    # -- checkpoints and the alarm -----------------------------------------------------

    def kept_checkpoint(self) -> str | None:
        """The last checkpoint verified, or None the first time."""
        path = self.root / "checkpoint"
        return path.read_text() if path.exists() else None

    def keep_checkpoint(self, text: str) -> None:
        """Keep ``text`` as the last checkpoint verified."""
        _write_private(self.root / "checkpoint", text.encode())

    def alarm(self) -> str | None:
        """Why the ledger alarm is raised, or None when it is not."""
        path = self.root / "ledger-alarm"
        if not path.exists():
            return None
        return path.read_text().strip() or "ledger alarm"

    def raise_alarm(self, reason: str, kept: str, served: str) -> Path:
        """Raise the ledger alarm, keeping both checkpoints as evidence; the evidence dir."""
        stamp = format_rfc3339(utcnow()).replace(":", "")
        evidence = self.root / "evidence" / stamp
        evidence.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(evidence / "kept.checkpoint", kept.encode())
        _write_private(evidence / "served.checkpoint", served.encode())
        _write_private(evidence / "reason.txt", (reason + "\n").encode())
        _write_private(self.root / "ledger-alarm", f"{reason} (evidence: {evidence})\n".encode())
        return evidence

    # -- revocations and rank keys --------------------------------------------------------

    def jobs_contributed(self, consent_id: str) -> frozenset[str]:
        """The jobs this agent contributed to under ``consent_id`` (from its journal)."""
        return frozenset(
            str(line["job_id"])
            for line in self.journal.lines()
            if line.get("event") == "contributed"
            and line.get("consent_id") == consent_id
            and "job_id" in line
        )

    def revoked(self) -> frozenset[str]:
        """Consent ids the enterprise listed as revoked (``<state>/revoked``)."""
        path = self.root / "revoked"
        if not path.exists():
            return frozenset()
        return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())

    def add_rank_tag(self, job_id: str, tag: int, deadline: str | None) -> None:
        """Keep a rank tag dealt for ``job_id`` (every attempt's, until the rank is known)."""
        path = self.root / "ranks" / f"{job_id}.json"
        held = json.loads(path.read_text()) if path.exists() else {"tags": []}
        held["tags"].append(tag)
        held["deadline"] = deadline
        _write_private(path, json.dumps(held).encode())

    def rank_jobs(self) -> dict[str, tuple[list[int], str | None]]:
        """Jobs whose rank the agent has yet to learn: tags and deadline."""
        out = {}
        for path in sorted((self.root / "ranks").glob("job_*.json")):
            held = json.loads(path.read_text())
            out[path.stem] = ([int(t) for t in held["tags"]], held.get("deadline"))
        return out

    def forget_ranks(self, job_id: str) -> None:
        """Drop a job's rank tags (its rank is known, or it will never be)."""
        (self.root / "ranks" / f"{job_id}.json").unlink(missing_ok=True)

    # -- PSI keys ------------------------------------------------------------------------

    def keep_psi_key(self, job_id: str, key: bytes, parties: int) -> None:
        """Keep a job's PSI key (a secret) and its number of rounds."""
        body = {"key": key.hex(), "parties": parties}
        _write_private(self.root / "psi" / f"{job_id}.json", json.dumps(body).encode())

    def psi_key(self, job_id: str) -> tuple[bytes, int] | None:
        """A job's kept PSI key and number of rounds, or None."""
        path = self.root / "psi" / f"{job_id}.json"
        if not path.exists():
            return None
        body = json.loads(path.read_text())
        return bytes.fromhex(body["key"]), int(body["parties"])

    def forget_psi_key(self, job_id: str) -> None:
        """Delete a job's PSI key (its last round is answered, or the job closed)."""
        (self.root / "psi" / f"{job_id}.json").unlink(missing_ok=True)
