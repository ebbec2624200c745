"""drop the change notices and users.timeline_version

They served a per-worker API page cache and token cache, which are gone: every
API request now reads its token with one indexed statement, and pages are
built from the database each time, so there is nothing to invalidate.

Dropping the triggers also takes a statement off every write to entries and
images (the owner's counter update) and the commit-time NOTIFY lock.

Revision ID: 0007
Revises: 0006
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (trigger/function, table) as 0006 created them (PostgreSQL only).
_NOTICE_TRIGGERS = [
    ("users_timeline_version_sends_notice", "users"),
    ("api_tokens_update_sends_notice", "api_tokens"),
    ("api_tokens_delete_sends_notice", "api_tokens"),
]
# As 0005 created them, on both backends.
_VERSION_TRIGGERS = [
    (f"{table}_{event}_raises_timeline_version", table)
    for table in ("entries", "images")
    for event in ("insert", "update", "delete")
]


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    triggers = (_NOTICE_TRIGGERS if postgres else []) + _VERSION_TRIGGERS
    for name, table in triggers:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    if postgres:
        op.drop_column("users", "timeline_version")
    else:
        # SQLite drops a column in place since 3.35; batch mode's copy of the
        # table would need a live database, so `db upgrade --sql` could not run.
        op.execute("ALTER TABLE users DROP COLUMN timeline_version")


def _revision(filename: str):
    """An earlier revision's module, to put back exactly what it made."""
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade():
    _revision("0005_timeline_version.py").upgrade()
    _revision("0006_change_notices.py").upgrade()
