"""The state dir: private, journal lines fsynced, the kept checkpoint, rank tags and PSI keys."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from exchange.agent import AgentState


def test_the_state_dir_is_private_and_a_shared_one_is_refused(tmp_path: Path) -> None:
    state = AgentState.open(tmp_path / "state")
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(ConfigurationError, match="must be 0700"):
        AgentState.open(shared)


def test_journal_checkpoint_ranks_and_psi_keys_are_kept_0600(tmp_path: Path) -> None:
    state = AgentState.open(tmp_path / "state")
    state.journal.record("contributed", job_id="job_" + "1" * 32, round=1, payload_sha256="ab")
    state.keep_checkpoint("origin\n1\nroot\n\n— sig\n")
    state.add_rank_tag("job_" + "2" * 32, 12345, None)
    state.add_rank_tag("job_" + "2" * 32, 67890, None)
    state.keep_psi_key("job_" + "3" * 32, bytes(range(32)), 3)
    assert [line["event"] for line in state.journal.lines()] == ["contributed"]
    assert state.rank_jobs() == {"job_" + "2" * 32: ([12345, 67890], None)}
    assert state.psi_key("job_" + "3" * 32) == (bytes(range(32)), 3)
    for path in state.root.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    state.forget_ranks("job_" + "2" * 32)
    state.forget_psi_key("job_" + "3" * 32)
    assert state.rank_jobs() == {} and state.psi_key("job_" + "3" * 32) is None
