"""The enterprise key file: 0600, never overwritten, refused when loose or malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consent import ConsentKeyError, EnterpriseKey


def test_generate_and_load(tmp_path: Path) -> None:
    path = tmp_path / "ent.key"
    key = EnterpriseKey.generate(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = EnterpriseKey.load(path)
    assert loaded.signer.public_key == key.signer.public_key
    assert "seed" not in repr(loaded)
    with pytest.raises(ConsentKeyError):
        EnterpriseKey.generate(path)


def test_loose_mode_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ent.key"
    EnterpriseKey.generate(path)
    path.chmod(0o644)
    with pytest.raises(ConsentKeyError, match="0600"):
        EnterpriseKey.load(path)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(kind="other"),
        lambda d: d.update(seed="!!"),
        lambda d: d.update(public_key="AAAA"),
        lambda d: d.pop("seed"),
    ],
    ids=["kind", "seed-not-base64", "public-mismatch", "no-seed"],
)
def test_malformed_is_refused(tmp_path: Path, mutate: object) -> None:
    path = tmp_path / "ent.key"
    EnterpriseKey.generate(path)
    body = json.loads(path.read_text())
    assert callable(mutate)
    mutate(body)
    path.write_text(json.dumps(body))
    with pytest.raises(ConsentKeyError):
        EnterpriseKey.load(path)
    with pytest.raises(ConsentKeyError):
        EnterpriseKey.load(tmp_path / "missing.key")
