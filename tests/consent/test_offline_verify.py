"""``ibx consent verify FILE``: an auditor checks a signed receipt with no server at all."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from consent import BadConsentSignatureError, InvalidConsentError, verify_offline
from core.keys import Ed25519Signer
from tests.consent.conftest import ORIGIN, World
from tests.in_process import Done, ibx

IBX = [sys.executable, "-m", "exchange.cli"]


def _verify_process(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``ibx consent verify`` in a new interpreter of its own: nothing but the file."""
    return subprocess.run(
        [*IBX, "consent", "verify", str(path), *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _verify(path: Path, *extra: str) -> Done:
    """``ibx consent verify`` through its entry point in this process (exit codes and the
    one-line errors included): the subject is the verdict, not the process."""
    return ibx("consent", "verify", str(path), *extra)


def _write(tmp_path: Path, name: str, document: Mapping[str, object]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, indent=2))
    return path


def test_a_genuine_receipt_and_revocation_verify_offline(world: World, tmp_path: Path) -> None:
    world.add_enterprise("cells-a")
    record = world.grant("cells-a")
    key = world.keys["cells-a"].public_key.to_base64()
    receipt = _write(tmp_path, "r.json", record.signed.to_dict())
    done = _verify_process(receipt, "--public-key", key, "--origin", ORIGIN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok receipt {record.consent_id} by cells-a for {ORIGIN}")
    assert "signed by the trusted key" in done.stdout
    assert record.signed.receipt_hash() in done.stdout

    unpinned = _verify(receipt)
    assert unpinned.returncode == 0 and "(not pinned)" in unpinned.stdout

    revocation = _write(tmp_path, "v.json", world.revocation(record).to_dict())
    revoked = _verify(revocation, "--public-key", key)
    assert revoked.returncode == 0 and revoked.stdout.startswith("ok revocation ")


def test_an_edited_receipt_fails(world: World, tmp_path: Path) -> None:
    world.add_enterprise("cells-a")
    document = world.grant("cells-a").signed.to_dict()
    receipt = document["receipt"]
    assert isinstance(receipt, dict)
    receipt["min_cohort"] = 2  # the operator widens what the consent allows
    done = _verify(_write(tmp_path, "edited.json", document))
    assert done.returncode == 5
    assert "bad consent signature" in done.stderr and len(done.stderr.splitlines()) == 1


def test_a_receipt_re_signed_by_someone_else_fails_against_the_trusted_key(
    world: World, tmp_path: Path
) -> None:
    world.add_enterprise("cells-a")
    genuine = world.receipt("cells-a")
    forger = Ed25519Signer.generate("forger")
    forged = world.sign(replace(genuine, public_key=forger.public_key), forger)
    path = _write(tmp_path, "forged.json", forged.to_dict())
    assert _verify(path).returncode == 0  # self-consistent: that is all it proves alone
    trusted = world.keys["cells-a"].public_key.to_base64()
    done = _verify(path, "--public-key", trusted)
    assert done.returncode == 5 and "bad consent signature" in done.stderr
    with pytest.raises(BadConsentSignatureError):
        verify_offline(path.read_text(), trusted_key=world.keys["cells-a"].public_key)


def test_another_deployment_or_garbage_is_refused(world: World, tmp_path: Path) -> None:
    world.add_enterprise("cells-a")
    path = _write(tmp_path, "r.json", world.grant("cells-a").signed.to_dict())
    done = _verify(path, "--origin", "other.example/ledger")
    assert done.returncode == 2 and "other.example/ledger" in done.stderr
    for name, text in [("not-json", "{"), ("empty", "{}"), ("list", "[1]")]:
        bad = tmp_path / name
        bad.write_text(text)
        result = _verify(bad)
        assert result.returncode == 2, name
        assert len(result.stderr.splitlines()) == 1
        with pytest.raises(InvalidConsentError):
            verify_offline(text)
    assert _verify(tmp_path / "missing.json").returncode != 0
