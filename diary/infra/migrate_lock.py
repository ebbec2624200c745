"""Migrate once, however many instances start at once (`flask --app diary db-upgrade-locked`).

The entrypoint runs this when MIGRATE_ON_START=true. On PostgreSQL it takes a
session-level advisory lock on a dedicated connection, so the instances queue
up: the first one migrates, the others find the schema at the latest revision
and do nothing. If the instance holding the lock dies, PostgreSQL ends its
session and releases the lock. On SQLite (one machine, one file) it just upgrades.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import upgrade

from ..extensions import db

log = logging.getLogger(__name__)

# Any fixed 64-bit number shared by every instance: "diary" in ASCII.
MIGRATION_LOCK_ID = 0x6469617279
DEFAULT_LOCK_TIMEOUT = 600


def _heads_and_current(app: Flask, connection: sa.Connection) -> tuple[set[str], set[str]]:
    directory = app.extensions["migrate"].directory
    script = ScriptDirectory(directory)
    current = set(MigrationContext.configure(connection).get_current_heads())
    return set(script.get_heads()), current


def upgrade_with_lock(app: Flask, lock_timeout: int = DEFAULT_LOCK_TIMEOUT) -> bool:
    """Bring the schema to the latest revision; True if this call applied migrations."""
    with app.app_context():
        engine = db.engine
        if engine.dialect.name != "postgresql":
            return _upgrade_if_behind(app, engine)
        # Autocommit: the lock belongs to the session, not to an open transaction
        # that would sit idle while the migrations run on another connection.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
            lock.execute(sa.text(f"SET lock_timeout = '{int(lock_timeout)}s'"))
            got = lock.execute(
                sa.text("SELECT pg_try_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID}
            ).scalar_one()
            if not got:
                log.info("another instance is migrating; waiting for the migration lock")
                lock.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            try:
                return _upgrade_if_behind(app, engine)
            finally:
                lock.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})


def _upgrade_if_behind(app: Flask, engine: sa.Engine) -> bool:
    with engine.connect() as connection:
        heads, current = _heads_and_current(app, connection)
    if current == heads:
        log.info(
            "database schema already at the latest migration (%s); nothing to do",
            ", ".join(sorted(heads)),
        )
        return False
    log.info(
        "migrating database schema from %s to %s",
        ", ".join(sorted(current)) or "an empty database",
        ", ".join(sorted(heads)),
    )
    upgrade()
    log.info("database schema migrated to %s", ", ".join(sorted(heads)))
    return True
