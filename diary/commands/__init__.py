"""Operator commands, run as `flask --app diary COMMAND`; thin shells over the rules.

| module        | commands                                   |
| ------------- | ------------------------------------------ |
| accounts      | users create, tokens create/list/revoke    |
| archive       | export, import                             |
| maintenance   | purge, reindex, storage gc, storage backfill |
| database      | db-upgrade-locked, db-create-app-role      |
| doctor        | doctor                                     |
"""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import ScriptInfo

from ..accounts import find_user
from ..config import ConfigError
from ..errors import InvalidInput
from ..models import User


def user_or_exit(email: str) -> User:
    """The account with this email, or stop the command with a clear message."""
    try:
        user = find_user(email)
    except InvalidInput as error:
        raise click.ClickException(f"{error.field}: {error.message}") from None
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


def stop_command_on_config_error(error: ConfigError) -> None:
    """Under the `flask` command, end it with one line naming the bad variable.

    Flask's CLI prints a traceback for any error raised while it loads the app
    (and `--help` then exits 0); an operator needs the message, a script a failing
    status. Outside the command (gunicorn, tests) the ConfigError propagates.
    """
    context = click.get_current_context(silent=True)
    if context is None or context.find_object(ScriptInfo) is None:
        return
    click.secho(f"Error: {error}", err=True, fg="red")
    sys.exit(1)


def init_app(app: Flask) -> None:
    from . import accounts, archive, database, doctor, maintenance

    for module in (accounts, archive, database, doctor, maintenance):
        for command in module.COMMANDS:
            app.cli.add_command(command)
