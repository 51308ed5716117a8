"""Settings: the only place ibx reads the environment (``IBX_*`` variables).

Built in ``create_app(settings)`` or by the CLI's root callback, never at
import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigurationError
from exchange.secret_env import SECRET_VARIABLES, take_secret_environment

if TYPE_CHECKING:
    from ledger.fabric import FabricConfig

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

    console_idle_seconds: int = Field(
        1800, ge=1, le=86_400, description="the web console signs a browser out after this idle"
    )
    console_session_hours: int = Field(
        8, ge=1, le=168, description="the longest a web console session lasts"
    )
    ledger_fabric_mode: Literal["off", "full", "anchor"] = Field(
        "off",
        description="ship the ledger to a Hyperledger Fabric channel: every entry (full) or "
        "signed checkpoints (anchor); docs/fabric.md",
    )
    ledger_fabric_gateway: str | None = Field(
        None, description="the Fabric peer's Gateway endpoint, HOST:PORT"
    )
    ledger_fabric_tls_root: Path | None = Field(
        None, description="PEM file of the CA that issued the peer's TLS certificate"
    )
    ledger_fabric_server_name: str | None = Field(
        None, description="the name on the peer's TLS certificate, if not the gateway's host"
    )
    ledger_fabric_msp_id: str | None = Field(
        None, description="the MSP id of the exchange's Fabric client identity"
    )
    ledger_fabric_cert: Path | None = Field(
        None, description="PEM file of the Fabric client identity's certificate"
    )
    ledger_fabric_key: Path | None = Field(
        None, description="PEM file of its ECDSA P-256 private key (mode 0600)"
    )
    ledger_fabric_key_password: SecretStr | None = Field(
        None, description="the key file's password, if it is encrypted"
    )
    ledger_fabric_channel: str | None = Field(None, description="the Fabric channel's name")
    ledger_fabric_chaincode: str = Field(
        "ibx-ledger", description="the ledger chaincode's name on the channel"
    )
    ledger_fabric_batch: int = Field(
        500, ge=1, le=1000, description="entries per full-mode transaction"
    )
    ledger_fabric_anchor_seconds: int = Field(
        10, ge=1, le=86_400, description="how often anchor mode anchors a grown head (seconds)"
    )
    ledger_fabric_timeout_seconds: int = Field(
        30, ge=1, le=600, description="seconds one Fabric Gateway call may take"
    )
    ledger_fabric_retries: int = Field(
        5,
        ge=0,
        le=20,
        description="resends of a Fabric Gateway call that failed transiently (same transaction)",
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

    def fabric_config(self) -> FabricConfig | None:
        """How the ledger reaches its Fabric channel; None when shipping is off.

        Raises:
            ConfigurationError: a mode is set but a variable is missing (every missing
                one is named), the gateway is not HOST:PORT, or the ledger origin cannot
                name a log on the channel.
        """
        if self.ledger_fabric_mode == "off":
            return None
        from ledger.fabric import FabricConfig, FabricMode, WireError
        from ledger.fabric.wire import check_log_id

        required = {
            "IBX_LEDGER_FABRIC_GATEWAY": self.ledger_fabric_gateway,
            "IBX_LEDGER_FABRIC_TLS_ROOT": self.ledger_fabric_tls_root,
            "IBX_LEDGER_FABRIC_MSP_ID": self.ledger_fabric_msp_id,
            "IBX_LEDGER_FABRIC_CERT": self.ledger_fabric_cert,
            "IBX_LEDGER_FABRIC_KEY": self.ledger_fabric_key,
            "IBX_LEDGER_FABRIC_CHANNEL": self.ledger_fabric_channel,
        }
        missing = [name for name, value in required.items() if value in (None, "")]
        mode = f"IBX_LEDGER_FABRIC_MODE={self.ledger_fabric_mode}"
        if missing:
            raise ConfigurationError(
                f"{mode} needs {', '.join(missing)} (docs/fabric.md), or set "
                "IBX_LEDGER_FABRIC_MODE=off"
            )
        gateway = str(self.ledger_fabric_gateway)
        host, sep, port = gateway.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                f"IBX_LEDGER_FABRIC_GATEWAY must be HOST:PORT, not {gateway!r}"
            )
        try:
            check_log_id(self.ledger_origin)
        except WireError as exc:
            raise ConfigurationError(
                f"IBX_LEDGER_ORIGIN {self.ledger_origin!r} cannot name the ledger's log on the "
                f"Fabric channel: {exc}"
            ) from exc
        assert self.ledger_fabric_tls_root is not None and self.ledger_fabric_msp_id is not None
        assert self.ledger_fabric_cert is not None and self.ledger_fabric_key is not None
        assert self.ledger_fabric_channel is not None
        password = self.ledger_fabric_key_password
        return FabricConfig(
            mode=FabricMode(self.ledger_fabric_mode),
            gateway=gateway,
            tls_root=self.ledger_fabric_tls_root.expanduser(),
            msp_id=self.ledger_fabric_msp_id,
            cert=self.ledger_fabric_cert.expanduser(),
            key=self.ledger_fabric_key.expanduser(),
            channel=self.ledger_fabric_channel,
            chaincode=self.ledger_fabric_chaincode,
            server_name=self.ledger_fabric_server_name or None,
            key_password=None if password is None else password.get_secret_value().encode(),
            batch_size=self.ledger_fabric_batch,
            timeout=float(self.ledger_fabric_timeout_seconds),
            retries=self.ledger_fabric_retries,
        )

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ibx.db').resolve()}"
