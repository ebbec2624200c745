"""timeline_version: a per-user counter raised by every change to entries or photos

The API keeps rendered pages of entries per worker and serves one only while
its owner's counter is unchanged (diary/page_cache.py). Database triggers
raise it, not the application, so no write path can be missed: the pages,
the API, imports, retention, maintenance commands and hand-written SQL alike.

PostgreSQL: one statement-level trigger per event with a transition table,
so a statement touching many rows (emptying Trash, a purge) raises each
owner's counter once. The owner's row is locked at the end of the statement;
single-entry writes all take their locks in the order entry, then owner.
A transaction that changes several existing entries of one user in separate
statements (the purge's batches) holds the owner's row from its first
statement on; a single-entry write of the same user to one of its later rows
at that moment is a deadlock, which PostgreSQL breaks by cancelling one of
the two. SQLite has row-level triggers only; it has one writer at a time.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The owners of photos changed by a statement, through their entries.
_IMAGE_OWNERS = "SELECT e.user_id FROM entries e JOIN changed c ON c.entry_id = e.id"
# (table, event, transition table clause, the owners of the changed rows)
_POSTGRES_TRIGGERS = [
    ("entries", "INSERT", "NEW TABLE AS changed", "SELECT user_id FROM changed"),
    ("entries", "UPDATE", "NEW TABLE AS changed", "SELECT user_id FROM changed"),
    ("entries", "DELETE", "OLD TABLE AS changed", "SELECT user_id FROM changed"),
    ("images", "INSERT", "NEW TABLE AS changed", _IMAGE_OWNERS),
    ("images", "UPDATE", "NEW TABLE AS changed", _IMAGE_OWNERS),
    ("images", "DELETE", "OLD TABLE AS changed", _IMAGE_OWNERS),
]

# (table, event, the owner of the changed row)
_SQLITE_TRIGGERS = [
    ("entries", "INSERT", "NEW.user_id"),
    ("entries", "UPDATE", "NEW.user_id"),
    ("entries", "DELETE", "OLD.user_id"),
    ("images", "INSERT", "(SELECT user_id FROM entries WHERE id = NEW.entry_id)"),
    ("images", "UPDATE", "(SELECT user_id FROM entries WHERE id = NEW.entry_id)"),
    ("images", "DELETE", "(SELECT user_id FROM entries WHERE id = OLD.entry_id)"),
]


def _name(table: str, event: str) -> str:
    return f"{table}_{event.lower()}_raises_timeline_version"


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("timeline_version", sa.BigInteger(), server_default="0", nullable=False)
        )
    if op.get_bind().dialect.name == "postgresql":
        for table, event, transition, owners in _POSTGRES_TRIGGERS:
            function = _name(table, event)
            op.execute(
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN"
                " UPDATE users SET timeline_version = timeline_version + 1"
                f" WHERE id IN ({owners});"
                " RETURN NULL;"
                " END $$"
            )
            op.execute(
                f"CREATE TRIGGER {function} AFTER {event} ON {table}"
                f" REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
    else:
        for table, event, owner in _SQLITE_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {_name(table, event)} AFTER {event} ON {table}"
                " BEGIN"
                f" UPDATE users SET timeline_version = timeline_version + 1 WHERE id = {owner};"
                " END"
            )


def downgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, event, *_ in _POSTGRES_TRIGGERS:
        name = _name(table, event)
        op.execute(f"DROP TRIGGER {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION {name}()")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("timeline_version")
