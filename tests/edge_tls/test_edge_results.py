"""An edge terminal reads its enterprise's own share of a released job over mutual TLS — only that.

A real uvicorn edge listener (mutual TLS) on a free port; the jobs are rows
in the pipeline's real tables, as the pipeline leaves them when it releases.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from core.clock import format_rfc3339, utcnow
from core.keys import Ed25519Signer
from edge_tls import DeviceId, IssuedCertificate
from exchange.identities import Role
from exchange.pipeline.statements import new_job_id
from exchange.pipeline.tables import JobRow, ParticipantRow, ShareRow
from tests.edge_tls.conftest import Pki, client_context, csr_for, new_key

OTHER = "factory-b"


def _device(pki: Pki, enterprise: str, name: str) -> tuple[Path, Path]:
    device = DeviceId(enterprise, name)
    token = pki.runtime.edge_pki.create_token(device, actor=enterprise, now=utcnow()).token
    key = new_key()
    issued = pki.runtime.edge_pki.enroll(
        name, token, csr_for(key, name).public_bytes(Encoding.DER), now=utcnow()
    )
    return pki.device_files(IssuedCertificate(issued.certificate, device), key, name)


def _job(pki: Pki, state: str, shares: dict[str, dict[str, list[int]]], members: list[str]) -> str:
    """A job as the pipeline stores it: its row, its participants, their shares."""
    job_id = new_job_id()
    now = format_rfc3339(utcnow())
    with pki.runtime.db.write() as session:
        session.add(
            JobRow(
                job_id=job_id,
                requester="sb-lb",
                engine="mpc",
                operation="percentile_rank",
                state=state,
                reason=None,
                request_json="{}",
                decision_json="{}",
                terms_json="{}",
                classification="internal",
                decision_index=0,
                created_at=now,
                deadline=now,
                deadline_ts=0.0,
                collect_until_ts=0.0,
                updated_at=now,
                result_json=json.dumps({"values": {"median": [42.0]}}),
                min_cohort=3,
            )
        )
        for who in members:
            session.add(
                ParticipantRow(
                    job_id=job_id,
                    enterprise=who,
                    dataset="ds",
                    consent_id="c",
                    receipt_sha256="0" * 64,
                    state="contributed",
                )
            )
        for who, share in shares.items():
            session.add(ShareRow(job_id=job_id, enterprise=who, share_json=json.dumps(share)))
    return job_id


@pytest.fixture(scope="module")
def devices(pki: Pki) -> dict[str, tuple[Path, Path]]:
    signer = Ed25519Signer.generate(OTHER)
    pki.runtime.identities.create(OTHER, Role.ENTERPRISE, public_key=signer.public_key)
    return {
        pki.enterprise: _device(pki, pki.enterprise, "meter-a"),
        OTHER: _device(pki, OTHER, "meter-b"),
    }


def _get(pki: Pki, edge_url: str, files: tuple[Path, Path] | None, job_id: str) -> httpx.Response:
    context = client_context(pki) if files is None else client_context(pki, *files)
    with httpx.Client(verify=context) as client:
        return client.get(f"{edge_url}/v1/edge/results/{job_id}")


def test_a_device_reads_its_enterprise_share_and_nothing_else(
    pki: Pki, edge_url: str, devices: dict[str, tuple[Path, Path]]
) -> None:
    mine, theirs = pki.enterprise, OTHER
    shares = {mine: {"rank_tags": [7, 3, 9]}, theirs: {"rank_tags": [7, 3, 9]}}
    both = _job(pki, "released", shares, [mine, theirs])
    response = _get(pki, edge_url, devices[mine], both)
    assert response.status_code == 200, response.text
    assert response.json() == {"job_id": both, "enterprise": mine, "share": shares[mine]}
    assert "median" not in response.text  # never the requester's result

    # a job the enterprise takes no part in: the same 404 as a job that does not exist
    other_only = _job(pki, "released", {theirs: {"rank_tags": [1, 2]}}, [theirs])
    for job_id in (other_only, new_job_id(), "job_x", "..%2F..%2Fv1%2Fedge%2Fwhoami"):
        refused = _get(pki, edge_url, devices[mine], job_id)
        assert refused.status_code == 404, (job_id, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert _get(pki, edge_url, devices[theirs], other_only).status_code == 200


def test_not_released_nothing_of_its_own_and_no_certificate(
    pki: Pki, edge_url: str, devices: dict[str, tuple[Path, Path]]
) -> None:
    mine = pki.enterprise
    collecting = _job(pki, "collecting", {}, [mine, OTHER])
    pending = _get(pki, edge_url, devices[mine], collecting)
    assert pending.status_code == 409
    assert "collecting" in pending.json()["detail"]
    left_out = _job(pki, "released", {OTHER: {"rank_tags": [5]}}, [mine, OTHER])
    empty = _get(pki, edge_url, devices[mine], left_out)  # a participant given nothing of its own
    assert (empty.status_code, empty.json()["share"]) == (200, {})
    released = _job(pki, "released", {mine: {"rank_tags": [5]}}, [mine])
    assert _get(pki, edge_url, None, released).status_code == 401
