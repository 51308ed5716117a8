"""HTTP models of an enterprise's own devices: edge certificates and its agent's last contact."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AgentContactPublic", "DeviceCertificatePublic"]

CertificateState = Literal["valid", "expired", "revoked"]
"""A device certificate's state at the exchange's clock."""


class DeviceCertificatePublic(BaseModel):
    """One certificate the edge CA issued to one of the caller's devices."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "device": "kiln-3",
                    "spiffe_id": "spiffe://ibx.localhost/enterprise/cathode-co/device/kiln-3",
                    "serial": "4f1c0a9e27",
                    "fingerprint": "9f2c" + "0" * 60,
                    "not_after": "2026-12-05T08:00:00.000000Z",
                    "revoked_at": None,
                    "state": "valid",
                }
            ]
        },
    )

    device: str = Field(..., description="the device's name")
    spiffe_id: str | None = Field(..., description="the certificate's URI SAN")
    serial: str = Field(..., description="the serial number (hex)")
    fingerprint: str = Field(..., description="hex SHA-256 of the DER certificate")
    not_after: str = Field(..., description="RFC 3339: the end of its validity")
    revoked_at: str | None = Field(..., description="RFC 3339, or null if never revoked")
    state: CertificateState


class AgentContactPublic(BaseModel):
    """When the caller's data agent polled ``GET /v1/agent/tasks`` (null: never).

    An index row the exchange keeps for display, not a signed fact: its clock when
    a poll arrived, noted at most every few seconds.
    """

    model_config = ConfigDict(frozen=True)

    enterprise: str
    first_contact_at: str | None
    last_contact_at: str | None
