"""Checks stay indexed and correct at scale (a small real run by default, full scale slow)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks.bench_consent import build, query_plan, random_request
from consent import evaluate


def _run(tmp_path: Path, *, enterprises: int, consents: int, checks: int) -> None:
    built = build(tmp_path / "scale.db", enterprises=enterprises, consents=consents)
    plan = " ".join(query_plan(built))
    assert "USING INDEX ix_consent_scope_dataset_requester" in plan
    assert "SCAN consent_scope" not in plan
    rng = random.Random(3)
    covered = 0
    by_id = {s.receipt.consent_id: s for s in built.signed}
    for _ in range(checks):
        request = random_request(built, rng, 5)
        report = built.service.covering_consents(request)
        for owner, records in report.covering.items():
            for record in records:
                covered += 1
                assert record.signed == by_id[record.consent_id]
                assert owner == record.enterprise
                assert (
                    evaluate(
                        record,
                        request,
                        at=report.at,
                        owner_datasets=(f"{owner}.energy",),
                        requester_keys=tuple(
                            k
                            for k in (
                                f"identity:{request.requester}",
                                "role:subbrain",
                                *(f"role:subbrain/industry:industry-{i}" for i in range(10)),
                            )
                        ),
                        registered_key=record.signed.receipt.public_key,
                        origin=built.service.config.origin,
                    )
                    is None
                )
    built.db.dispose()
    assert covered > 0


def test_small_scale(tmp_path: Path) -> None:
    _run(tmp_path, enterprises=200, consents=2_000, checks=200)


@pytest.mark.slow
def test_full_scale(tmp_path: Path) -> None:
    _run(tmp_path, enterprises=10_000, consents=100_000, checks=1_000)
