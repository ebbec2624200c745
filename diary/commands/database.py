"""`flask --app diary db-upgrade-locked`: `flask db upgrade` under a lock (infra/migrate_lock)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from ..infra.migrate_lock import DEFAULT_LOCK_TIMEOUT, upgrade_with_lock


@click.command("db-upgrade-locked")
@click.option(
    "--lock-timeout",
    type=int,
    default=DEFAULT_LOCK_TIMEOUT,
    show_default=True,
    help="Seconds to wait for another instance's migration before giving up.",
)
@with_appcontext
def upgrade_locked_command(lock_timeout: int) -> None:
    """`flask db upgrade` under a PostgreSQL advisory lock (safe with many instances)."""
    upgrade_with_lock(current_app._get_current_object(), lock_timeout)  # type: ignore[attr-defined]


COMMANDS = (upgrade_locked_command,)
