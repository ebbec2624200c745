"""Operator commands for accounts and API tokens."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from diary.extensions import db
from diary.models import ApiToken, User

from .servers import flask_cli, run_flask


def test_users_create_reads_the_password_from_stdin(app, runner):
    result = runner.invoke(
        args=["users", "create", "Ann@Example.com", "--password-stdin", "--name", "Ann"],
        input="a long password\n",
    )

    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalars(db.select(User)).one()
        assert user.email == "ann@example.com"
        assert user.password_hash != "a long password"


def test_users_create_prompts_twice_without_stdin(runner):
    result = runner.invoke(args=["users", "create", "b@example.com"], input="pw123456\npw123456\n")
    assert result.exit_code == 0, result.output


def test_emails_are_unique_regardless_of_case(runner):
    runner.invoke(args=["users", "create", "c@example.com", "--password-stdin"], input="12345678\n")
    result = runner.invoke(
        args=["users", "create", "C@EXAMPLE.com", "--password-stdin"], input="12345678\n"
    )

    assert result.exit_code != 0
    assert "already exists" in result.output


def test_a_short_password_is_refused(runner):
    result = runner.invoke(
        args=["users", "create", "d@example.com", "--password-stdin"], input="short\n"
    )
    assert result.exit_code != 0
    assert "at least 8" in result.output


def test_a_token_is_printed_once_works_and_can_be_revoked(app, runner, client, user):
    created = runner.invoke(args=["tokens", "create", user.email, "--name", "phone"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/entries", headers=headers).status_code == 200

    listed = runner.invoke(args=["tokens", "list", user.email])
    assert "phone" in listed.output and "active" in listed.output
    assert token not in listed.output  # shown once, never again

    with app.app_context():
        token_id = db.session.scalars(db.select(ApiToken.id)).one()
    revoked = runner.invoke(args=["tokens", "revoke", user.email, str(token_id)])
    assert revoked.exit_code == 0
    assert client.get("/api/v1/entries", headers=headers).status_code == 401
    assert "revoked" in runner.invoke(args=["tokens", "list", user.email]).output


def test_tokens_for_an_unknown_user_fail_clearly(runner):
    result = runner.invoke(args=["tokens", "create", "nobody@example.com", "--name", "x"])
    assert result.exit_code != 0
    assert "no user" in result.output


def test_another_users_token_cannot_be_revoked(app, runner, user, make_user, make_token):
    other = make_user()
    make_token(other)
    with app.app_context():
        token_id = db.session.scalars(db.select(ApiToken.id)).one()

    result = runner.invoke(args=["tokens", "revoke", user.email, str(token_id)])
    assert result.exit_code != 0


def test_the_flask_command_keeps_stdout_for_data_and_logs_on_stderr(tmp_path):
    """`flask db upgrade --sql > schema.sql` and `doctor --json | jq` once began with
    the app's start-up log line; under the flask command the app logs to stderr."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'diary.sqlite3'}",
        "LOCAL_STORAGE_DIR": str(tmp_path / "photos"),
        "FLASK_DEBUG": "1",
    }
    result = run_flask(env, "db", "upgrade", "--sql")

    assert result.stdout.lstrip().startswith("CREATE TABLE alembic_version")
    assert '"diary starting' not in result.stdout
    started = [json.loads(line) for line in result.stderr.splitlines() if "diary starting" in line]
    assert started and started[0]["level"] == "INFO"

    flask_cli(env, "db", "upgrade")
    checks = json.loads(flask_cli(env, "doctor", "--json"))
    assert checks[0]["name"] == "configuration"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "create", "nul\x00@example.com", "--password-stdin"], "valid email"),
        (
            ["users", "create", "e@example.com", "--password-stdin", "--name", "Ann\x00"],
            "control characters",
        ),
        # Undecodable bytes in argv reach Python as lone surrogates.
        (["users", "create", "\udcff@example.com", "--password-stdin"], "valid email"),
        (["tokens", "create", "{email}", "--name", "phone\x00"], "control characters"),
        (["tokens", "list", "nul\x00@example.com"], "valid email"),
        (["tokens", "revoke", "{email}", "2147483648"], "has no token 2147483648"),
    ],
)
def test_values_no_database_holds_are_refused_without_a_traceback(app, runner, user, args, message):
    result = runner.invoke(
        args=[arg.format(email=user.email) for arg in args], input="a long password\n"
    )

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException, not a crash
    assert message in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1
