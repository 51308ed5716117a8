"""Settings: the only place ibx reads the environment (``IBX_*`` variables).

Built in ``create_app(settings)`` or by the CLI's root callback, never at
import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from exchange.secret_env import SECRET_VARIABLES, take_secret_environment

__all__ = ["SECRET_VARIABLES", "Settings", "take_secret_environment"]

_PLACEHOLDERS = {"changeme", "change-me", "secret", "placeholder", "xxx", "test", "dev"}


class Settings(BaseSettings):
    """Everything configurable, with safe defaults for the one-machine deployment."""

    model_config = SettingsConfigDict(
        env_prefix="IBX_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    env: Literal["dev", "prod"] = Field(
        "dev", description="'prod' refuses generated or placeholder secrets"
    )
    data_dir: Path = Field(Path(".ibx"), description="SQLite file, key file, party dirs")
    database_url: str | None = Field(
        None, description="any SQLAlchemy URL; default sqlite:///<data_dir>/ibx.db"
    )
    master_key: SecretStr | None = Field(
        None, description="32 bytes (hex or base64); default: <data_dir>/master.key, mode 0600"
    )
    ledger_origin: str = Field("ibx.localhost/ledger", description="checkpoint origin line")
    token_ttl_days: int = Field(90, ge=1, le=3650, description="bearer token lifetime")
    admin_cert_days: int = Field(
        90,
        ge=1,
        le=825,
        description="lifetime of administrators' client certificates (their second factor)",
    )
    auth_max_failures: int = Field(
        10,
        ge=2,
        le=100_000,
        description="failed token authentications from one client address, within the "
        "window, that lock it out (past half of them each retry must wait longer)",
    )
    auth_failure_window_seconds: int = Field(
        60, ge=1, le=86_400, description="the window in which authentication failures count"
    )
    auth_lockout_seconds: int = Field(
        300, ge=1, le=86_400, description="how long a locked-out client address is refused"
    )
    opa_url: str | None = Field(None, description="a real OPA server to evaluate Rego on")
    trust_domain: str = Field("ibx.localhost", description="SPIFFE trust domain of the edge PKI")
    edge_device_cert_hours: int = Field(
        168, ge=1, le=8784, description="lifetime of edge device certificates (default 7 days)"
    )
    edge_max_batch_bytes: int = Field(
        1 << 20, ge=1024, le=64 << 20, description="largest sealed batch a device may upload"
    )
    edge_upload_bytes_per_hour: int = Field(
        16 << 20, ge=1024, le=1 << 40, description="bytes one edge device may upload per hour"
    )
    consent_request_skew_seconds: int = Field(
        300,
        ge=0,
        le=3600,
        description="how far a consent request's stated time may be from the exchange's clock",
    )
    risk_rules: Path | None = Field(
        None,
        description="the security officer's risk rules (TOML; refused when group- or "
        "world-writable); default <data_dir>/risk.toml if present, else the shipped defaults",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Resolved once here: components that run child processes in their own
        # working directories (MPC parties) must not inherit a relative path.
        return value.expanduser().resolve()

    @field_validator("ledger_origin")
    @classmethod
    def _origin_is_one_token(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or "+" in value:
            raise ValueError("ledger origin must be non-empty with no spaces or '+'")
        return value

    @model_validator(mode="after")
    def _no_placeholders_in_prod(self) -> Settings:
        if self.master_key is not None:
            secret = self.master_key.get_secret_value().strip().lower()
            if secret in _PLACEHOLDERS:
                raise ValueError("IBX_MASTER_KEY is a placeholder; generate 32 random bytes")
        if self.env == "prod" and self.master_key is None:
            raise ValueError(
                "IBX_ENV=prod requires IBX_MASTER_KEY (a generated key file is dev-only)"
            )
        return self

    @classmethod
    def from_environment(
        cls, secrets: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Settings from ``IBX_*`` variables, the secret ones taken out of the environment.

        ``secrets`` are values already taken by :func:`take_secret_environment`
        (default: take them now); ``overrides`` win over both.

        Raises:
            pydantic.ValidationError: a value is invalid (placeholders refused).
        """
        taken = take_secret_environment() if secrets is None else dict(secrets)
        return cls(**{**taken, **overrides})

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ibx.db').resolve()}"
