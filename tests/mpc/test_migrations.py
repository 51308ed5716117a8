"""mpc_0002 moves public contexts out of the key rows, keeping existing jobs."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import core
import ledger
import mpc
from core.db import MIGRATIONS, Database


def _config(db: Database, connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    locations = (core.MIGRATIONS, ledger.MIGRATIONS, mpc.MIGRATIONS)
    config.set_main_option("version_locations", " ".join(str(p / "versions") for p in locations))
    config.set_main_option("path_separator", "space")
    config.attributes["connection"] = connection
    return config


def test_public_contexts_move_to_their_own_table_and_back(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    with db.engine.begin() as connection:
        command.upgrade(_config(db, connection), "mpc_0001")
        connection.execute(
            sa.text(
                "INSERT INTO mpc_he_keys (job_id, scheme, spec_json, key_fingerprint, "
                "public_context, encrypted_secret, state, created_at) VALUES "
                "('job-old', 'ckks', '{}', 'f', :public, :secret, 'active', 't')"
            ),
            {"public": b"public-context", "secret": b"sealed"},
        )
    with db.engine.begin() as connection:
        command.upgrade(_config(db, connection), "mpc_0002")
        moved = connection.execute(sa.text("SELECT job_id, public_context FROM mpc_he_public"))
        assert moved.all() == [("job-old", b"public-context")]
        columns = {c["name"] for c in sa.inspect(connection).get_columns("mpc_he_keys")}
        assert "public_context" not in columns and "encrypted_secret" in columns
    with db.engine.begin() as connection:
        command.downgrade(_config(db, connection), "mpc_0001")
        back = connection.execute(sa.text("SELECT public_context FROM mpc_he_keys"))
        assert back.scalar_one() == b"public-context"
    db.dispose()


def test_mpc_0003_keeps_earlier_releases_and_goes_back(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm3.db'}")
    with db.engine.begin() as connection:
        command.upgrade(_config(db, connection), "mpc_0002")
        connection.execute(
            sa.text(
                "INSERT INTO mpc_releases (job_id, requester, question, cohort_json, min_cohort, "
                "approved_at) VALUES ('job-old', 'sub-brain', 'mean energy', :cohort, 2, 't')"
            ),
            {"cohort": '["a", "b"]'},
        )
    with db.engine.begin() as connection:
        command.upgrade(_config(db, connection), "mpc_0003")
        row = connection.execute(
            sa.text("SELECT adversary, cohort_json, query_json, left_out_json FROM mpc_releases")
        ).one()
        assert tuple(row) == ("sub-brain", '["a", "b"]', "{}", "[]")
        tables = set(sa.inspect(connection).get_table_names())
        assert {"mpc_disclosure_trackers", "mpc_released_answers", "mpc_group_spend"} <= tables
    with db.engine.begin() as connection:
        command.downgrade(_config(db, connection), "mpc_0002")
        back = connection.execute(sa.text("SELECT job_id, cohort_json FROM mpc_releases")).one()
        assert tuple(back) == ("job-old", '["a", "b"]')
        assert "mpc_disclosure_trackers" not in sa.inspect(connection).get_table_names()
    db.dispose()


def test_mpc_0004_folds_the_log_into_the_snapshot_on_the_way_back(tmp_path: Path) -> None:
    """A form downgraded to mpc_0003 holds every release, not just the last snapshot."""
    from mpc import (
        ReleaseGuard,
        ReleasePolicy,
        ReleaseQuery,
        ReleaseRequest,
        ReleaseSubject,
        StatisticKind,
    )
    from mpc._disclosure import LinearTracker

    db = Database(f"sqlite:///{tmp_path / 'm4.db'}")
    with db.engine.begin() as connection:
        command.upgrade(_config(db, connection), "mpc_0004")
    subject = ReleaseSubject("energy", ("kwh",))
    guard = ReleaseGuard(db)
    for k in range(3):  # three rank-adding releases, all still in the log
        cohort = [f"e{k}-{i}" for i in range(5)]
        request = ReleaseRequest(f"j{k}", "sb", "g", subject, ReleasePolicy())
        guard.approve(request, ReleaseQuery.uniform(subject, (StatisticKind.SUM,), cohort))
    with db.engine.begin() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM mpc_disclosure_log")).scalar() == 3
        command.downgrade(_config(db, connection), "mpc_0003")
        prime, columns, pivots, matrix = connection.execute(
            sa.text("SELECT prime, columns_json, pivots_json, matrix FROM mpc_disclosure_trackers")
        ).one()
    import json

    form = LinearTracker.from_parts(prime, json.loads(columns), json.loads(pivots), matrix)
    assert form.rank == 3 and len(form.columns) == 15
    db.dispose()
