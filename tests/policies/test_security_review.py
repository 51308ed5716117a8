"""Security review: officer-supplied Rego cannot read the server's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import PolicySource, RegoSourceError

LEAKS = {
    "reason": 'deny contains msg if {\n\tmsg := sprintf("%v", [opa.runtime().env])\n}\n',
    "spaced": "leak := opa . runtime()\n",
    "split-over-lines": "leak := opa.\n\truntime()\n",
    "bracket": 'leak := opa["runtime"]()\n',
}


@pytest.mark.parametrize("rego", list(LEAKS.values()), ids=list(LEAKS))
def test_opa_runtime_is_refused_at_propose_time(pack_copy: Path, rego: str) -> None:
    """opa.runtime() returns the process environment (IBX_MASTER_KEY when it is set that
    way); an active policy could copy it into a deny reason that any caller of
    ``policy decide`` reads. It is refused before anything is stored."""
    authz = pack_copy / "authz.rego"
    authz.write_text(authz.read_text() + "\n" + rego)
    with pytest.raises(RegoSourceError, match=r"opa\.runtime is refused"):
        PolicySource.from_dir(pack_copy)


def test_the_words_in_a_string_or_comment_are_fine(pack_copy: Path) -> None:
    authz = pack_copy / "authz.rego"
    authz.write_text(authz.read_text() + '\n# opa.runtime()\nnote := "opa.runtime() is off"\n')
    PolicySource.from_dir(pack_copy)
