"""Operator commands, run as `flask --app diary COMMAND`; thin shells over the rules.

| module        | commands                                   |
| ------------- | ------------------------------------------ |
| accounts      | users create, tokens create/list/revoke    |
| archive       | export, import                             |
| maintenance   | purge, reindex, storage gc, storage backfill |
| database      | db-upgrade-locked                          |
| doctor        | doctor                                     |
"""

from __future__ import annotations

import click
from flask import Flask

from ..accounts import find_user
from ..models import User


def user_or_exit(email: str) -> User:
    """The account with this email, or stop the command with a clear message."""
    user = find_user(email)
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


def init_app(app: Flask) -> None:
    from . import accounts, archive, database, doctor, maintenance

    for module in (accounts, archive, database, doctor, maintenance):
        for command in module.COMMANDS:
            app.cli.add_command(command)
