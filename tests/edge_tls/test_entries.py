"""edge_tls's typed ledger entries: what each refuses (the round trips of every type are in
tests/exchange/test_ledger_types.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

import edge_tls
from core.duty import Duty
from core.keys import Ed25519Signer
from edge_tls.entries import (
    CertificateIssueEntry,
    CertificateRenewEntry,
    CertificateRevokeEntry,
    ReadingsUploadEntry,
)

FP = "ab" * 32
DEVICE: dict[str, Any] = {
    "kind": "device",
    "serial": "1f",
    "fingerprint": FP,
    "enterprise": "acme",
    "device": "meter-1",
    "spiffe_id": "spiffe://ibx.test/acme/meter-1",
    "not_after": "2027-01-01T00:00:00.000000Z",
}
SERVER: dict[str, Any] = {
    "kind": "server",
    "serial": "2e",
    "fingerprint": FP,
    "hosts": ["edge.test"],
    "not_after": "2027-01-01T00:00:00.000000Z",
}
REVOKE: dict[str, Any] = {
    "serial": "1f",
    "fingerprint": FP,
    "reason": "key-compromise",
    "enterprise": "acme",
    "device": "meter-1",
    "revoked_at": "2026-12-02T08:00:00Z",
    "line": [{"serial": "1f", "fingerprint": FP}],
}


def _duty(**changes: Any) -> dict[str, Any]:
    duty = Duty(
        origin="ibx.test/ledger",
        actor="officer-wang",
        action="certificate.revoke",
        subject="1f",
        details={"reason": "key-compromise"},
        signed_at=datetime(2026, 12, 2, 8, 0, tzinfo=UTC),
    )
    wire = dict(duty.sign(Ed25519Signer.generate("officer-wang")).to_dict())
    wire.update(changes)
    return wire


@pytest.mark.parametrize(
    ("model", "payload"),
    [
        (CertificateIssueEntry, {**DEVICE, "hosts": ["evil.test"]}),
        (CertificateIssueEntry, {k: v for k, v in DEVICE.items() if k != "spiffe_id"}),
        (CertificateIssueEntry, {**SERVER, "enterprise": "acme"}),
        (CertificateIssueEntry, {k: v for k, v in SERVER.items() if k != "hosts"}),
        (CertificateIssueEntry, {**SERVER, "superseded": ["1f"]}),
        (CertificateIssueEntry, {**DEVICE, "kind": "root"}),
        (CertificateIssueEntry, {**DEVICE, "serial": "-1f"}),
        (CertificateIssueEntry, {**DEVICE, "fingerprint": FP.upper()}),
        (CertificateRenewEntry, DEVICE),  # a renewal names the certificate it renews
        (CertificateRevokeEntry, {**REVOKE, "reason": "because"}),
        (CertificateRevokeEntry, {**REVOKE, "duty": {"statement": {}, "signature": ""}}),
        (CertificateRevokeEntry, {**REVOKE, "duty": _duty(signature="AAAA")}),
        (CertificateRevokeEntry, {**REVOKE, "revoked_at": "yesterday"}),
        (ReadingsUploadEntry, {"batch": 1, "enterprise": "acme", "device": "m", "bytes": -1}),
    ],
    ids=[
        "device-with-hosts",
        "device-without-spiffe",
        "server-naming-an-enterprise",
        "server-without-hosts",
        "server-superseding",
        "root-kind",
        "negative-serial",
        "upper-case-fingerprint",
        "renewal-without-previous",
        "unknown-reason",
        "duty-not-a-duty",
        "duty-signature-not-64-bytes",
        "revoked-at-not-a-time",
        "upload-incomplete",
    ],
)
def test_refused(model: type[Any], payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(payload)


def test_payloads_state_what_they_always_stated() -> None:
    """Optional members unset are absent; a server certificate's revocation keeps its nulls;
    a duty, when there is one, is recorded as signed."""
    assert CertificateIssueEntry.model_validate(DEVICE).payload() == DEVICE
    assert CertificateIssueEntry.model_validate(SERVER).payload() == SERVER
    server_revoke = {**REVOKE, "enterprise": None, "device": None}
    assert CertificateRevokeEntry.model_validate(server_revoke).payload() == server_revoke
    signed = {**REVOKE, "duty": _duty()}
    assert CertificateRevokeEntry.model_validate(signed).payload() == signed


def test_the_package_exports_every_entry_type_once() -> None:
    types = [model.TYPE for model in edge_tls.ENTRY_TYPES]  # type: ignore[attr-defined]
    assert sorted(types) == sorted(set(types))
    assert {t.split(".")[0] for t in types} == {"edge"}
    assert set(types) >= {
        "edge.ca.init",
        "edge.token.create",
        "edge.certificate.issue",
        "edge.certificate.renew",
        "edge.certificate.revoke",
        "edge.readings.upload",
    }
