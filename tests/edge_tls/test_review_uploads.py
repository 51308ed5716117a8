"""Issue 9 (edge): uploads are checked when they arrive, and each device has quotas.

Everything goes through the real edge TLS listener with a device certificate:
malformed bodies get a 4xx problem+json and nothing is stored; past the
per-device hourly quota a 429 problem+json with ``Retry-After``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from core.clock import utcnow
from edge_tls import (
    IssuedCertificate,
    UploadQuota,
    seal_batch,
    sealing_public_key,
)
from edge_tls._quota import retry_after
from exchange.edge_server import edge_server_config
from tests.edge_tls.conftest import Pki, RunningServer, client_context, csr_for, make_pki, new_key

MAX_BATCH = 4096
PER_HOUR = 10_000


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """A deployment configured with small quotas (the settings devices are held to)."""
    built = make_pki(
        tmp_path_factory.mktemp("quota"),
        edge_max_batch_bytes=MAX_BATCH,
        edge_upload_bytes_per_hour=PER_HOUR,
    )
    yield built
    built.runtime.close()


@pytest.fixture(scope="module")
def small_url(small: Pki) -> Iterator[str]:
    config = edge_server_config(small.runtime, host="127.0.0.1", port=0, log_level="warning")
    with RunningServer(config) as running:
        yield f"https://127.0.0.1:{running.port}"


def _device(pki: Pki, name: str) -> tuple[Path, Path, IssuedCertificate]:
    key = new_key()
    issued = pki.runtime.edge_pki.enroll(
        name, pki.token(name), csr_for(key, name).public_bytes(Encoding.DER), now=utcnow()
    )
    cert, key_path = pki.device_files(issued, key, name)
    return cert, key_path, issued


def _sealed(pki: Pki, size: int) -> bytes:
    """A well-formed sealed box of exactly ``size`` bytes (the exchange cannot look inside)."""
    key = sealing_public_key(pki.enterprise_signer.public_key.raw)
    return seal_batch(os.urandom(size - 48), key)


def _stored(pki: Pki) -> int:
    return len(pki.runtime.edge_readings.batches(pki.enterprise, limit=100_000))


OCTETS = {"Content-Type": "application/octet-stream"}

MALFORMED = {
    "empty": (b"", OCTETS, 400),
    "shorter-than-a-sealed-box": (b"x" * 40, OCTETS, 400),
    "low-order-ephemeral-key": (bytes(32) + os.urandom(200), OCTETS, 400),
    "plaintext-csv": (b"line,kwh\ncathode,980\n" * 5, {"Content-Type": "text/csv"}, 415),
    "over-the-batch-size": (None, OCTETS, 413),
}


@pytest.mark.parametrize(("case", "spec"), MALFORMED.items(), ids=list(MALFORMED.keys()))
def test_malformed_uploads_are_refused_and_nothing_is_stored(
    small: Pki, small_url: str, case: str, spec: tuple[bytes | None, dict[str, str], int]
) -> None:
    body, headers, status = spec
    if body is None:
        body = _sealed(small, MAX_BATCH + 1)
    cert, key, _ = _device(small, f"malformed-{case}")
    before = _stored(small)
    with httpx.Client(verify=client_context(small, cert, key)) as client:
        response = client.post(small_url + "/v1/edge/readings", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert _stored(small) == before


def test_past_the_hourly_quota_429_with_retry_after(small: Pki, small_url: str) -> None:
    """Three 3,000-byte batches fit 10,000 bytes an hour; the fourth gets 429 and a
    Retry-After of about an hour, nothing stored; a batch that still fits is taken, and
    another device of the enterprise is unaffected."""
    cert, key, _ = _device(small, "chatty-1")
    batch = _sealed(small, 3000)
    with httpx.Client(verify=client_context(small, cert, key)) as client:
        for _ in range(3):
            ok = client.post(small_url + "/v1/edge/readings", content=batch, headers=OCTETS)
            assert ok.status_code == 201, ok.text
        before = _stored(small)
        refused = client.post(small_url + "/v1/edge/readings", content=batch, headers=OCTETS)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        wait = int(refused.headers["retry-after"])
        assert 3500 <= wait <= 3600
        assert refused.json()["retry_after"] == wait
        assert _stored(small) == before
        small_one = client.post(
            small_url + "/v1/edge/readings", content=_sealed(small, 900), headers=OCTETS
        )
        assert small_one.status_code == 201  # 9,900 bytes: still under the quota
    other_cert, other_key, _ = _device(small, "quiet-1")
    with httpx.Client(verify=client_context(small, other_cert, other_key)) as client:
        fine = client.post(small_url + "/v1/edge/readings", content=batch, headers=OCTETS)
    assert fine.status_code == 201, fine.text


def test_the_quota_belongs_to_the_device_not_its_certificate(small: Pki, small_url: str) -> None:
    """A device that renews (or re-enrols) keeps the bytes it already sent this hour."""
    _cert, _key, issued = _device(small, "renewing-q")
    peer = small.runtime.edge_pki.authenticate(
        issued.certificate.public_bytes(Encoding.DER), now=utcnow()
    )
    small.runtime.edge_readings.store(peer, _sealed(small, 4000), now=utcnow())
    small.runtime.edge_readings.store(peer, _sealed(small, 4000), now=utcnow())
    fresh = new_key()
    renewed = small.runtime.edge_pki.reenroll(
        peer, csr_for(fresh, "renewing-q").public_bytes(Encoding.DER), now=utcnow()
    )
    cert2, key2 = small.device_files(renewed, fresh, "renewing-q-2")
    with httpx.Client(verify=client_context(small, cert2, key2)) as client:
        refused = client.post(
            small_url + "/v1/edge/readings", content=_sealed(small, 4000), headers=OCTETS
        )
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1


def test_retry_after_is_when_enough_bytes_leave_the_window() -> None:
    quota = UploadQuota(max_batch_bytes=4096, bytes_per_hour=10_000)
    now = utcnow()
    recent = [
        (now - timedelta(minutes=50), 4000),
        (now - timedelta(minutes=20), 4000),
        (now - timedelta(minutes=5), 1000),
    ]
    assert retry_after(recent, 1000, quota, now=now) is None
    assert retry_after(recent, 2000, quota, now=now) == 600  # the first ages out in 10 min
    assert retry_after(recent, 4096, quota, now=now) == 600
    assert retry_after(recent[1:], 4096, quota, now=now) is None
    heavy = [(now - timedelta(minutes=30), 4096), (now - timedelta(minutes=10), 4096)]
    assert retry_after(heavy, 4096, quota, now=now) == 1800
    with pytest.raises(ValueError, match="at least one batch"):
        UploadQuota(max_batch_bytes=8192, bytes_per_hour=4096)


def test_an_hourly_quota_below_one_batch_stops_the_listener_at_start(tmp_path: Path) -> None:
    from core.errors import ConfigurationError

    built = make_pki(tmp_path, edge_max_batch_bytes=8192, edge_upload_bytes_per_hour=4096)
    try:
        with pytest.raises(ConfigurationError, match="at least one batch"):
            edge_server_config(built.runtime, host="127.0.0.1", port=0)
    finally:
        built.runtime.close()
