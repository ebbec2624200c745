"""Database administration, run with the tables' owner's settings.

flask --app diary db-upgrade-locked          `flask db upgrade` under a lock (infra/migrate_lock)
flask --app diary db-create-app-role ROLE    the service's least-privilege login (infra/db_roles)
"""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from ..extensions import db
from ..infra.db_roles import RoleError, create_app_role
from ..infra.logs import add_secret
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


@click.command("db-create-app-role")
@click.argument("role")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (for scripts)."
)
@with_appcontext
def create_app_role_command(role: str, password_stdin: bool) -> None:
    """Create (or update) ROLE, a login with only the privileges the running app needs.

    Run it with the database settings of the tables' owner (those `flask db upgrade`
    uses), after the migrations; then run the service as ROLE.
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    add_secret(password)
    try:
        made = create_app_role(db.engine, role, password)
    except RoleError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{'created' if made.created else 'updated the password of'} role {made.name} "
        "(LOGIN; not a superuser; owns nothing)"
    )
    click.echo(
        f"granted CONNECT on database {made.database}, USAGE on schema {made.schema}, "
        f"SELECT/INSERT/UPDATE/DELETE on {made.tables} tables (alembic_version: SELECT only), "
        f"USAGE/SELECT on {made.sequences} sequences"
    )
    click.echo(
        f"tables and sequences {made.owner} creates in schema {made.schema} later "
        "get the same grants"
    )
    if made.revoked_public_create:
        click.echo(
            f"revoked CREATE on schema {made.schema} from PUBLIC (PostgreSQL 15's default), "
            f"which let every role create tables there"
        )


COMMANDS = (upgrade_locked_command, create_app_role_command)
