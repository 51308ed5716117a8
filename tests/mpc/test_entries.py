"""mpc's typed ledger entries: what each refuses (the round trips of every type are in
tests/exchange/test_ledger_types.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

import mpc
from mpc.entries import KeyDecryptEntry, KeyGenerateEntry

HEX = "cd" * 32
GENERATE = {"job_id": "job-1", "scheme": "ckks", "operation": "mean", "key_fingerprint": HEX}
DECRYPT = {"job_id": "job-1", "key_fingerprint": HEX, "cohort_sha256": HEX, "contributors": 3}


@pytest.mark.parametrize(
    ("model", "payload"),
    [
        (KeyGenerateEntry, {**GENERATE, "scheme": "rsa"}),
        (KeyGenerateEntry, {**GENERATE, "operation": "max"}),
        (KeyGenerateEntry, {**GENERATE, "key_fingerprint": HEX[:-1]}),
        (KeyGenerateEntry, {**GENERATE, "secret_key": "AAAA"}),
        (KeyDecryptEntry, {**DECRYPT, "contributors": -1}),
        (KeyDecryptEntry, {k: v for k, v in DECRYPT.items() if k != "cohort_sha256"}),
    ],
    ids=["scheme", "operation", "short-fingerprint", "a-secret-smuggled", "negative", "no-cohort"],
)
def test_refused(model: type[Any], payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(payload)


def test_payloads_are_what_the_custodian_always_wrote() -> None:
    assert KeyGenerateEntry.model_validate(GENERATE).model_dump(mode="json") == GENERATE
    assert KeyDecryptEntry.model_validate(DECRYPT).model_dump(mode="json") == DECRYPT


def test_the_package_exports_the_key_operations() -> None:
    types = {model.TYPE for model in mpc.ENTRY_TYPES}  # type: ignore[attr-defined]
    assert types == {"mpc.key.generate", "mpc.key.decrypt", "mpc.key.destroy"}
