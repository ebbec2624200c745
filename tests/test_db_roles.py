"""`flask --app diary db-create-app-role`: the app runs as a role that can use the tables
and nothing more, on the real PostgreSQL.

Each test gets an RDS-like setup of its own: an owner that is no superuser (like
the RDS master user: LOGIN CREATEROLE) owning a fresh database it migrated, and a
random app role name; all of it is dropped afterwards.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from psycopg import sql
from sqlalchemy.engine import make_url

from diary import create_app
from diary.accounts import create_user, issue_token
from diary.extensions import db

from .conftest import image_bytes
from .servers import POSTGRES_ADMIN_URL, private_postgres, run_flask, unavailable


@dataclass
class Deployment:
    admin_url: str  # a superuser, standing in for whoever set up the instance
    owner: str
    owner_url: str  # what `flask db upgrade` and the new command run with
    database: str
    role: str
    password: str

    def role_url(self, password: str | None = None) -> str:
        url = make_url(self.owner_url).set(username=self.role, password=password)
        return url.render_as_string(hide_password=False)

    def database_url(self, server_url: str) -> str:
        """`server_url`'s login on this deployment's database."""
        url = make_url(server_url).set(database=self.database)
        return url.render_as_string(hide_password=False)


@contextmanager
def deployment(admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[Deployment]:
    suffix = uuid.uuid4().hex[:10]
    owner, role, database = f"owner_{suffix}", f"app_{suffix}", f"diary_roles_{suffix}"
    owner_password = "owner-pw-" + os.urandom(8).hex()
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL is not reachable at {admin_url}: {error}")
    with admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(owner), sql.Literal(owner_password)
            )
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(owner)
            )
        )
        try:
            owner_url = (
                make_url(admin_url)
                .set(username=owner, password=owner_password, database=database)
                .render_as_string(hide_password=False)
            )
            migrate(owner_url)
            yield Deployment(
                admin_url, owner, owner_url, database, role, "app-pw-" + os.urandom(12).hex()
            )
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            for name in (role, owner):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def migrate(url: str) -> None:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture
def deployed() -> Iterator[Deployment]:
    with deployment() as setup:
        yield setup


def app_on(url: str, tmp_path: Path) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "LOCAL_STORAGE_DIR": str(tmp_path / "photos"),
        }
    )


def create_role(setup: Deployment, tmp_path: Path, password: str | None = None):
    """The command as the owner runs it; its click result."""
    app = app_on(setup.owner_url, tmp_path)
    try:
        return app.test_cli_runner().invoke(
            args=["db-create-app-role", setup.role, "--password-stdin"],
            input=(password or setup.password) + "\n",
        )
    finally:
        with app.app_context():
            db.engine.dispose()


@contextmanager
def as_role(setup: Deployment) -> Iterator[psycopg.Connection]:
    """A connection as the app's role (the shared server trusts loopback logins)."""
    with psycopg.connect(setup.role_url(), autocommit=True) as connection:
        yield connection


# --- what the running app can do as the role --------------------------------


def test_the_app_running_as_the_role_writes_lists_edits_and_trashes_entries(deployed, tmp_path):
    # As an operator runs it: its own process, the password on standard input.
    made = run_flask(
        {"DATABASE_URL": deployed.owner_url, "SECRET_KEY": "x" * 32},
        "db-create-app-role",
        deployed.role,
        "--password-stdin",
        stdin=deployed.password + "\n",
    )
    assert f"created role {deployed.role}" in made.stdout
    assert deployed.password not in made.stdout + made.stderr

    app = app_on(deployed.role_url(), tmp_path)
    try:
        with app.app_context():
            user = create_user("role@example.com", "correct horse battery")
            auth = {"Authorization": f"Bearer {issue_token(user, 'tests')[1]}"}
        client = app.test_client()

        written = client.post(
            "/api/v1/entries",
            data={"text": "walked by the #river", "file": (io.BytesIO(image_bytes()), "a.jpg")},
            headers=auth,
        )
        assert written.status_code == 201, written.get_json()
        entry_id = written.get_json()["id"]
        assert client.post("/api/v1/entries", json={"text": "tea"}, headers=auth).status_code == 201

        listed = client.get("/api/v1/entries", headers=auth).get_json()["items"]
        assert [item["text"] for item in listed] == ["tea", "walked by the #river"]
        found = client.get("/api/v1/entries?q=river", headers=auth).get_json()["items"]
        assert [item["id"] for item in found] == [entry_id]

        edited = client.patch(f"/api/v1/entries/{entry_id}", json={"text": "ran"}, headers=auth)
        assert (edited.status_code, edited.get_json()["text"]) == (200, "ran")

        assert client.delete(f"/api/v1/entries/{entry_id}", headers=auth).status_code == 204
        assert client.get(f"/api/v1/entries/{entry_id}", headers=auth).status_code == 404
        assert app.test_client().get("/readyz").status_code == 200
        # A refused sign-in is counted in rate_limit_counters (database://, PostgreSQL's default).
        app.config["WTF_CSRF_ENABLED"] = False
        refused = client.post("/login", data={"email": "role@example.com", "password": "wrong"})
        assert refused.status_code == 401
        with app.app_context():
            assert db.session.scalar(sa.text("SELECT sum(hits) FROM rate_limit_counters")) == 2
    finally:
        with app.app_context():
            db.engine.dispose()


def test_the_doctor_and_the_start_up_migration_step_work_as_the_role(deployed, tmp_path):
    assert create_role(deployed, tmp_path).exit_code == 0
    env = {
        "DATABASE_URL": deployed.role_url(),
        "SECRET_KEY": "x" * 32,
        "LOCAL_STORAGE_DIR": str(tmp_path),
    }

    doctor = run_flask(env, "doctor")
    # MIGRATE_ON_START's step, with the schema already at the latest migration.
    upgrade_step = run_flask(env, "db-upgrade-locked")

    assert f"logged in as {deployed.role}" in doctor.stdout
    assert "at the latest migration" in doctor.stdout
    assert "nothing to do" in upgrade_step.stderr


# --- what it cannot do ------------------------------------------------------


SCHEMA_CHANGES = [
    "DROP TABLE entries",
    "ALTER TABLE entries ADD COLUMN mood text",
    "CREATE TABLE notes (id integer)",
    "TRUNCATE entries",
    "CREATE INDEX ix_entries_text ON entries (text)",
    "DROP INDEX ix_entries_user_timeline",
    "UPDATE alembic_version SET version_num = 'x'",
    "CREATE SCHEMA elsewhere",
]


def test_the_role_cannot_change_the_schema(deployed, tmp_path):
    assert create_role(deployed, tmp_path).exit_code == 0

    refused = []
    with as_role(deployed) as connection:
        for statement in SCHEMA_CHANGES:
            try:
                connection.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                refused.append(statement)

    assert refused == SCHEMA_CHANGES


def test_the_role_is_no_superuser_owns_nothing_and_belongs_to_no_group(deployed, tmp_path):
    assert create_role(deployed, tmp_path).exit_code == 0

    with psycopg.connect(deployed.admin_url, autocommit=True) as admin:
        attributes = admin.execute(
            """
            SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication,
                   rolbypassrls
            FROM pg_roles WHERE rolname = %s
            """,
            (deployed.role,),
        ).fetchone()
        owned = admin.execute(
            "SELECT count(*) FROM pg_shdepend WHERE refobjid = %s::regrole AND deptype = 'o'",
            (deployed.role,),
        ).fetchone()
        groups = admin.execute(
            "SELECT count(*) FROM pg_auth_members WHERE member = %s::regrole", (deployed.role,)
        ).fetchone()

    assert attributes == (True, False, False, False, False, False)
    assert owned == (0,)
    assert groups == (0,)


def test_a_table_a_later_migration_creates_is_usable_by_the_role(deployed, tmp_path):
    assert create_role(deployed, tmp_path).exit_code == 0
    # A later release's migration, run by the owner after the grants were made.
    with psycopg.connect(deployed.owner_url, autocommit=True) as owner:
        owner.execute("CREATE TABLE later_feature (id serial PRIMARY KEY, note text)")

    with as_role(deployed) as connection:
        connection.execute("INSERT INTO later_feature (note) VALUES ('a'), ('b')")
        connection.execute("UPDATE later_feature SET note = 'c' WHERE id = 1")
        connection.execute("DELETE FROM later_feature WHERE id = 2")
        rows = connection.execute("SELECT id, note FROM later_feature").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("TRUNCATE later_feature")

    assert rows == [(1, "c")]


# --- running it again, and its password ---------------------------------------


def privileges(setup: Deployment) -> list[tuple[str, str]]:
    """Every privilege the role holds on the database's tables, sequences and schema."""
    with psycopg.connect(setup.database_url(setup.admin_url)) as admin:
        rows = admin.execute(
            """
            SELECT c.relname, a.privilege_type
            FROM pg_class c, aclexplode(c.relacl) a
            WHERE a.grantee = %s::regrole
            UNION ALL
            SELECT 'default:' || d.defaclobjtype::text, a.privilege_type
            FROM pg_default_acl d, aclexplode(d.defaclacl) a
            WHERE a.grantee = %s::regrole
            ORDER BY 1, 2
            """,
            (setup.role, setup.role),
        ).fetchall()
    return [(str(name), str(privilege)) for name, privilege in rows]


def test_running_it_twice_updates_the_password_and_converges_on_the_same_grants(deployed, tmp_path):
    first = create_role(deployed, tmp_path)
    granted = privileges(deployed)
    # Someone granted more by hand; the next run takes it back.
    with psycopg.connect(deployed.owner_url, autocommit=True) as owner:
        owner.execute(
            sql.SQL("GRANT TRUNCATE ON entries TO {}").format(sql.Identifier(deployed.role))
        )

    second = create_role(deployed, tmp_path, password="another-password-" + os.urandom(6).hex())

    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert f"created role {deployed.role}" in first.output
    assert f"updated the password of role {deployed.role}" in second.output
    assert privileges(deployed) == granted
    assert ("entries", "DELETE") in granted and ("entries", "TRUNCATE") not in granted
    assert ("alembic_version", "SELECT") in granted
    assert ("alembic_version", "UPDATE") not in granted
    assert {("default:r", "SELECT"), ("default:S", "USAGE")} <= set(granted)


def test_the_role_logs_in_with_its_password_and_after_a_second_run_only_the_new_one(
    tmp_path, capsys
):
    # The shared server trusts every loopback login; this one checks passwords (SCRAM).
    admin_password = "admin-" + os.urandom(8).hex()
    with private_postgres(password=admin_password) as server, deployment(server.url) as setup:
        # As RDS can (log_statement=ddl): the server writes every statement to its log.
        with psycopg.connect(server.url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET log_statement = 'all'")
            admin.execute("SELECT pg_reload_conf()")
        assert create_role(setup, tmp_path).exit_code == 0
        with psycopg.connect(setup.role_url(setup.password)) as connection:
            assert connection.execute("SELECT current_user").fetchone() == (setup.role,)

        new_password = "rotated-" + os.urandom(12).hex()
        assert create_role(setup, tmp_path, password=new_password).exit_code == 0

        with psycopg.connect(setup.role_url(new_password)) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(setup.role_url(setup.password))
        server_log = (server.directory / "log").read_text()

    captured = capsys.readouterr()
    assert f'CREATE ROLE "{setup.role}" WITH LOGIN PASSWORD' in server_log
    for password in (setup.password, new_password):
        assert password not in captured.out + captured.err + server_log


# --- refusals ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Diary_App",
        "diary-app",
        "1app",
        "pg_app",
        "public",
        'app"; DROP TABLE entries; --',
        "a" * 64,
        "",
    ],
)
def test_a_role_name_that_is_not_a_simple_identifier_is_refused(name, tmp_path):
    app = app_on(f"sqlite:///{tmp_path / 'd.sqlite3'}", tmp_path)

    result = app.test_cli_runner().invoke(
        args=["db-create-app-role", name, "--password-stdin"], input="a-long-password\n"
    )

    assert result.exit_code == 1
    assert "role name" in result.output


def test_sqlite_has_no_roles(tmp_path):
    app = app_on(f"sqlite:///{tmp_path / 'd.sqlite3'}", tmp_path)

    result = app.test_cli_runner().invoke(
        args=["db-create-app-role", "diary_app", "--password-stdin"], input="a-long-password\n"
    )

    assert result.exit_code == 1
    assert "need PostgreSQL" in result.output


@pytest.mark.parametrize(
    ("prepare", "refusal"),
    [
        ("CREATE ROLE {role} LOGIN SUPERUSER", "exists with SUPERUSER"),
        ("CREATE ROLE {role} LOGIN CREATEDB", "exists with CREATEDB"),
        ("CREATE ROLE {role} LOGIN IN ROLE {owner}", "is a member of"),
        ("CREATE ROLE {role} LOGIN; CREATE SCHEMA theirs AUTHORIZATION {role}", "owns 1"),
    ],
    ids=["superuser", "createdb", "member-of-owner", "owner-of-something"],
)
def test_an_existing_role_with_more_than_it_needs_is_refused(deployed, tmp_path, prepare, refusal):
    # As a superuser, in the deployment's own database (the schema is dropped with it).
    with psycopg.connect(deployed.database_url(deployed.admin_url), autocommit=True) as admin:
        for statement in prepare.split("; "):
            admin.execute(
                sql.SQL(statement).format(
                    role=sql.Identifier(deployed.role), owner=sql.Identifier(deployed.owner)
                )
            )

    result = create_role(deployed, tmp_path)

    assert result.exit_code == 1
    assert refusal in result.output


def test_the_owner_itself_is_refused(deployed, tmp_path):
    app = app_on(deployed.owner_url, tmp_path)
    try:
        result = app.test_cli_runner().invoke(
            args=["db-create-app-role", deployed.owner, "--password-stdin"],
            input=deployed.password + "\n",
        )
    finally:
        with app.app_context():
            db.engine.dispose()

    assert result.exit_code == 1
    assert "must be another one" in result.output


def test_before_the_migrations_it_says_to_run_them_first(tmp_path):
    with deployment() as setup:
        with psycopg.connect(setup.owner_url, autocommit=True) as owner:
            owner.execute("DROP TABLE alembic_version")
        result = create_role(setup, tmp_path)

    assert result.exit_code == 1
    assert "db upgrade` first" in result.output


@pytest.mark.parametrize("password", ["", "short-pw"])
def test_an_empty_or_short_password_is_refused(deployed, tmp_path, password):
    app = app_on(deployed.owner_url, tmp_path)
    try:
        result = app.test_cli_runner().invoke(
            args=["db-create-app-role", deployed.role, "--password-stdin"], input=password + "\n"
        )
    finally:
        with app.app_context():
            db.engine.dispose()

    assert result.exit_code == 1
    assert "at least 12 characters" in result.output


def test_create_on_the_schema_for_everyone_is_taken_back(deployed, tmp_path):
    # PostgreSQL 14 and older let every role create tables in schema public.
    with psycopg.connect(deployed.owner_url, autocommit=True) as owner:
        owner.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")

    result = create_role(deployed, tmp_path)

    assert result.exit_code == 0, result.output
    assert "revoked CREATE on schema public from PUBLIC" in result.output
    with as_role(deployed) as connection, pytest.raises(psycopg.errors.InsufficientPrivilege):
        connection.execute("CREATE TABLE notes (id integer)")
