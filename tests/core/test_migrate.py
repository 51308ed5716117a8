"""migrate(): Alembic runs only when the database is behind the migration files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from core.db import MIGRATIONS, Database, migrate

_TOY = '''"""toy branch for tests"""
from alembic import op
import sqlalchemy as sa

revision = "toy_0001"
down_revision = None
branch_labels = ("toy",)
depends_on = None


def upgrade() -> None:
    op.create_table("toy", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("toy")
'''

_AGAIN = """
import sys
from pathlib import Path
from core.db import MIGRATIONS, Database, migrate
migrate(Database({url!r}), [MIGRATIONS, *[Path(p) for p in {extra!r}]])
print("alembic" in sys.modules)
"""


def _migrate_in_child(url: str, extra: list[str]) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", _AGAIN.format(url=url, extra=extra)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1] == "True"


def test_a_database_at_its_heads_is_not_migrated_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    migrate(Database(url), [MIGRATIONS])
    assert _migrate_in_child(url, []) is False


def test_a_new_migration_file_is_applied(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    migrate(Database(url), [MIGRATIONS])
    toy = tmp_path / "toy"
    (toy / "versions").mkdir(parents=True)
    (toy / "versions" / "toy_0001.py").write_text(_TOY)
    assert _migrate_in_child(url, [str(toy)]) is True
    assert "toy" in inspect(Database(url).engine).get_table_names()
    assert _migrate_in_child(url, [str(toy)]) is False
