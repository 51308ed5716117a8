"""Client credentials kept out of argv: profiles written by ``ibx login``, token files.

A profile is one JSON file per name under the user's config directory
(``$IBX_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/ibx``, else ``~/.config/ibx``),
holding the exchange URL, the pinned CA bundle and its root's SHA-256, and
the bearer token. Like ssh's keys and gh's hosts file, the file is readable
by its owner only: the directory is created 0700, the file written 0600 in
one rename, and a profile or token file that others can read is refused
rather than used. The token never appears in ``repr`` or in a log line.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigurationError

__all__ = [
    "Profile",
    "ProfileStore",
    "read_token_file",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_PROFILE = "default"


def _refuse_shared(path: Path, what: str) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"{what} {path} can be read by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )


def read_token_file(path: Path) -> str:
    """The bearer token in ``path`` (its first line), refusing a file others can read.

    Raises:
        ConfigurationError: the file is group- or world-accessible, or holds no token.
        OSError: the file cannot be read.
    """
    _refuse_shared(path, "token file")
    lines = path.read_text(encoding="utf-8").splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise ConfigurationError(f"token file {path} is empty")
    return token


@dataclass(frozen=True)
class Profile:
    """Where an exchange is, how to trust it, and who to be there."""

    name: str
    exchange: str
    token: str = field(repr=False)
    ca_bundle_pem: str | None = field(default=None, repr=False)
    ca_fingerprint: str | None = None
    client_cert: str | None = None
    """Administrators: the path of their client certificate (PEM), the second factor."""
    client_key: str | None = None
    """Its private key's path (the key itself stays in its own 0600 file)."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigurationError(
                f"profile name {self.name!r}: letters, digits, '.', '_' and '-' (at most 64)"
            )
        if not self.exchange.startswith(("https://", "http://")):
            raise ConfigurationError(f"exchange URL {self.exchange!r} must start with https://")
        if not self.token:
            raise ConfigurationError("a profile needs a token")

    def to_dict(self) -> dict[str, object]:
        """Stable JSON fields (the file format)."""
        return {
            "name": self.name,
            "exchange": self.exchange,
            "ca_fingerprint": self.ca_fingerprint,
            "ca_bundle_pem": self.ca_bundle_pem,
            "client_cert": self.client_cert,
            "client_key": self.client_key,
            "token": self.token,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Profile:
        """Parse the file format.

        Raises:
            ConfigurationError: a field is missing or of the wrong type.
        """

        def text(key: str, *, optional: bool = False) -> str | None:
            value = data.get(key)
            if value is None and optional:
                return None
            if not isinstance(value, str):
                raise ConfigurationError(f"profile field {key!r} must be a string")
            return value

        return cls(
            name=text("name") or "",
            exchange=text("exchange") or "",
            token=text("token") or "",
            ca_bundle_pem=text("ca_bundle_pem", optional=True),
            ca_fingerprint=text("ca_fingerprint", optional=True),
            client_cert=text("client_cert", optional=True),
            client_key=text("client_key", optional=True),
        )


class ProfileStore:
    """Profiles in one directory, one ``NAME.json`` each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ProfileStore:
        """The user's store: ``$IBX_CONFIG_DIR``, ``$XDG_CONFIG_HOME/ibx`` or ``~/.config/ibx``."""
        if environ.get("IBX_CONFIG_DIR"):
            return cls(Path(environ["IBX_CONFIG_DIR"]))
        base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return cls(Path(base) / "ibx")

    def path(self, name: str) -> Path:
        """Where profile ``name`` lives."""
        return self.directory / "profiles" / f"{name}.json"

    def save(self, profile: Profile) -> Path:
        """Write ``profile`` (0600, atomically); returns its path.

        Raises:
            OSError: the directory cannot be created or written.
        """
        target = self.path(profile.name)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.parent.chmod(0o700)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".profile-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(profile.to_dict(), out, indent=2)
                out.write("\n")
            Path(temp).chmod(0o600)
            Path(temp).replace(target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target

    def load(self, name: str) -> Profile:
        """Read profile ``name``.

        Raises:
            ConfigurationError: no such profile, others can read it, or it does not parse.
        """
        path = self.path(name)
        if not path.is_file():
            raise ConfigurationError(
                f"no profile {name!r} in {path.parent}; create it with: ibx login --exchange URL"
            )
        _refuse_shared(path, "profile")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigurationError(f"profile {path} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError(f"profile {path} must hold a JSON object")
        return Profile.from_dict(data)

    def default(self) -> Profile | None:
        """The ``default`` profile, if there is one."""
        if not self.path(DEFAULT_PROFILE).is_file():
            return None
        return self.load(DEFAULT_PROFILE)
