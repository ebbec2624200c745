"""Operator commands: `flask --app diary users ...` and `flask --app diary tokens ...`."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from .. import accounts
from ..errors import InvalidInput
from . import user_or_exit

users = AppGroup("users", help="Manage accounts.")
tokens = AppGroup("tokens", help="Manage API tokens.")


@users.command("create")
@click.argument("email")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (for scripts)."
)
def create_user(email: str, display_name: str, password_stdin: bool) -> None:
    """Create an account. The password is prompted for, never given as an argument."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create_user(email, password, display_name)
    except InvalidInput as error:
        raise click.ClickException(f"{error.field}: {error.message}") from None
    click.echo(f"created user {user.id} <{user.email}>")


@tokens.command("create")
@click.argument("email")
@click.option("--name", required=True, help="What the token is for, e.g. 'phone app'.")
def create_token(email: str, name: str) -> None:
    """Create an API token and print it once; only its hash is stored."""
    try:
        token, plain = accounts.issue_token(user_or_exit(email), name)
    except InvalidInput as error:
        raise click.ClickException(error.message) from None
    click.echo(
        f"token {token.id} ({token.name}) for {email}; it will not be shown again:", err=True
    )
    click.echo(plain)


@tokens.command("list")
@click.argument("email")
def list_tokens(email: str) -> None:
    """List a user's tokens with their last use."""
    for token in accounts.list_tokens(user_or_exit(email)):
        state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
        used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
        click.echo(f"{token.id}\t{token.name}\t{state}\tlast used {used}")


@tokens.command("revoke")
@click.argument("email")
@click.argument("token_id", type=int)
def revoke_token(email: str, token_id: int) -> None:
    """Revoke one of a user's tokens by its id (see `tokens list`)."""
    if not accounts.revoke_token(user_or_exit(email), token_id):
        raise click.ClickException(f"{email} has no token {token_id}")
    click.echo(f"revoked token {token_id}")


COMMANDS = (users, tokens)
