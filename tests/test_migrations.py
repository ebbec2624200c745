"""Migrations build the schema on both databases, reverse cleanly, and match the models."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import downgrade, upgrade

from diary import create_app
from diary.extensions import db

from .servers import flask_cli, postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An app on a database no migration has touched yet."""
    if request.param == "sqlite":
        app = create_app(
            {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'm.sqlite3'}"}
        )
        yield app
        with app.app_context():
            db.engine.dispose()
        return
    with postgres_database() as url:
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
        yield app
        with app.app_context():
            db.engine.dispose()


def table_names(app: Flask) -> set[str]:
    with app.app_context():
        return set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_and_upgrade_again(empty_database_app):
    app = empty_database_app
    model_tables = set(db.metadata.tables)

    with app.app_context():
        upgrade()
    assert table_names(app) == model_tables

    with app.app_context():
        downgrade(revision="base")
    assert table_names(app) == set()

    with app.app_context():
        upgrade()
    assert table_names(app) == model_tables


def test_db_check_finds_no_drift_between_models_and_migrations(empty_database_app):
    app = empty_database_app
    with app.app_context():
        upgrade()

    result = app.test_cli_runner().invoke(args=["db", "check"])

    assert result.exit_code == 0, result.output


def test_the_timeline_index_exists_and_is_partial(empty_database_app):
    app = empty_database_app
    with app.app_context():
        upgrade()
        indexes = {i["name"]: i for i in sa.inspect(db.engine).get_indexes("entries")}
    index = indexes["ix_entries_user_timeline"]
    assert index["column_names"] == ["user_id", "created_at", "id"]


def test_the_sql_of_upgrade_sql_builds_the_whole_schema_on_postgresql():
    """For operators who review or apply the migrations by hand: `flask db upgrade
    --sql > schema.sql` (it stopped at revision 0004's backfill until 2026-12-01)."""
    with postgres_database() as url:
        env = {"DATABASE_URL": url, "FLASK_DEBUG": "1"}
        script = flask_cli(env, "db", "upgrade", "--sql")
        applied = subprocess.run(
            ["psql", url, "-v", "ON_ERROR_STOP=1", "--quiet"],
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr

        assert flask_cli(env, "db", "current").split() == flask_cli(env, "db", "heads").split()
        assert "No new upgrade operations detected" in flask_cli(env, "db", "check")
