"""The verifier agrees with every published RFC 9162 vector, valid and invalid.

Vectors: ../shared/vectors/rfc9162 (transparency-dev/merkle testdata, Apache-2.0),
read in place and never copied into this repository.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ledger import verify_consistency, verify_inclusion
from ledger.errors import ProofError
from tests.conftest import VECTORS, vectors_dir


def _cases(kind: str) -> list[Path]:
    root = VECTORS / "rfc9162" / kind
    return sorted(root.rglob("*.json")) if root.is_dir() else []


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _id(path: Path) -> str:
    return str(path.relative_to(VECTORS / "rfc9162"))


@pytest.fixture(autouse=True)
def _vectors_present() -> None:
    vectors_dir("rfc9162")


def test_there_are_vectors_of_both_kinds() -> None:
    assert len(_cases("inclusion")) > 50
    assert len(_cases("consistency")) > 50


@pytest.mark.parametrize("path", _cases("inclusion"), ids=_id)
def test_inclusion_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b64(h) for h in case["proof"] or []]

    def run() -> None:
        verify_inclusion(
            case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"])
        )

    if case["wantErr"]:
        with pytest.raises(ProofError):
            run()
    else:
        run()


@pytest.mark.parametrize("path", _cases("consistency"), ids=_id)
def test_consistency_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b64(h) for h in case["proof"] or []]

    def run() -> None:
        verify_consistency(
            case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), proof
        )

    if case["wantErr"]:
        with pytest.raises(ProofError):
            run()
    else:
        run()
