"""`flask --app diary doctor` names what is broken and the usual cause, each failure on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import Result as CliResult
from flask import Flask
from flask_migrate import upgrade

from diary import create_app
from diary.extensions import db

from .conftest import new_bucket
from .servers import POSTGRES_ADMIN_URL, ROOT, free_port, postgres_database, silent_server

ROLE_PASSWORD = "doctor-role-pw-" + uuid.uuid4().hex[:8]


def build(tmp_path: Path, **config: Any) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'diary.sqlite3'}",
            "LOCAL_STORAGE_DIR": str(tmp_path / "photos"),
            **config,
        }
    )


def doctor(app: Flask, *args: str) -> CliResult:
    try:
        return app.test_cli_runner().invoke(args=["doctor", "--timeout", "1", *args])
    finally:
        with app.app_context():
            db.engine.dispose()


def checks(result: CliResult) -> dict[str, dict[str, Any]]:
    """The doctor's --json output by check name."""
    return {check["name"]: check for check in json.loads(result.stdout)}  # logs go to stderr


def failure(result: CliResult, name: str) -> dict[str, Any]:
    """The check `name` from --json output, which failed and made the doctor exit 1."""
    assert result.exit_code == 1, result.output
    check = checks(result)[name]
    assert check["status"] == "fail", check
    return check


@pytest.fixture(scope="module")
def password_role() -> Iterator[str]:
    """A login role with a password, so the doctor has one it must not print."""
    role = f"doctor_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{ROLE_PASSWORD}'")
        # The doctor reads alembic_version; the app's real user owns the tables.
        admin.execute(f"GRANT pg_read_all_data TO {role}")
    try:
        yield role
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def production(postgres_url: str, s3_endpoint: str, tmp_path: Path) -> dict[str, Any]:
    """Settings of a healthy production-like deployment: migrated PostgreSQL and a bucket."""
    return {
        "SQLALCHEMY_DATABASE_URI": postgres_url,
        "BUCKET": new_bucket(s3_endpoint, f"doctor-{os.urandom(4).hex()}"),
        "S3_ENDPOINT_URL": s3_endpoint,
    }


def test_all_checks_pass_on_a_healthy_deployment(production, tmp_path, password_role):
    host_part = production["SQLALCHEMY_DATABASE_URI"].split("@", 1)[1]
    url = f"postgresql://{password_role}:{ROLE_PASSWORD}@{host_part}"
    app = build(tmp_path, **{**production, "SQLALCHEMY_DATABASE_URI": url})

    result = doctor(app)

    assert result.exit_code == 0, result.output
    for name in (
        "configuration",
        "database host resolves",
        "database port answers",
        "database login",
        "database schema",
        "s3 endpoint resolves",
        "s3 endpoint answers",
        "s3 bucket exists",
        "s3 put and delete",
    ):
        assert any(line.startswith("OK") and name in line for line in result.output.splitlines())
    assert "all 9 checks passed" in result.output
    assert ROLE_PASSWORD not in result.output


def test_the_probe_object_is_deleted_again(production, tmp_path, s3_endpoint):
    import boto3

    app = build(tmp_path, **production)

    assert doctor(app).exit_code == 0

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="ap-northeast-1")
    assert s3.list_objects_v2(Bucket=production["BUCKET"]).get("KeyCount", 0) == 0


def test_all_checks_pass_on_the_embedded_sqlite_and_local_folder(tmp_path):
    app = build(tmp_path)
    with app.app_context():
        upgrade()

    result = doctor(app, "--json")

    assert result.exit_code == 0, result.output
    found = checks(result)
    assert found["database login"]["status"] == "ok"
    assert found["database schema"]["status"] == "ok"
    assert found["storage folder writable"]["status"] == "ok"
    assert list((tmp_path / "photos").iterdir()) == []  # the probe file is gone again
    # A file has no host or port to trace, and a folder no endpoint: no such steps.
    assert not [name for name in found if "resolves" in name or "answers" in name]


def test_a_storage_folder_that_cannot_be_written_fails_with_a_hint(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    app = build(tmp_path, LOCAL_STORAGE_DIR=str(tmp_path / "a-file" / "photos"))
    with app.app_context():
        upgrade()

    folder = failure(doctor(app, "--json"), "storage folder writable")

    assert "Not a directory" in folder["detail"]
    assert "LOCAL_STORAGE_DIR must be a writable folder" in folder["hint"]


def test_a_closed_database_port_fails_and_skips_what_depends_on_it(tmp_path):
    app = build(tmp_path, SQLALCHEMY_DATABASE_URI=f"postgresql://u:p@127.0.0.1:{free_port()}/d")

    result = doctor(app, "--json")

    assert result.exit_code == 1
    found = checks(result)
    assert found["database host resolves"]["status"] == "ok"
    port = found["database port answers"]
    assert port["status"] == "fail"
    assert "connection refused" in port["detail"]
    assert "DB_ENDPOINT and DB_PORT" in port["hint"]
    assert found["database login"]["status"] == "skip"
    # What depends on a failed step is skipped, naming the step that failed first.
    assert found["database schema"]["detail"] == "skipped: database port answers failed"


def test_a_database_that_never_answers_points_at_the_security_group(tmp_path):
    with silent_server() as url:
        port = url.rsplit(":", 1)[1]
        app = build(tmp_path, SQLALCHEMY_DATABASE_URI=f"postgresql://u:p@127.0.0.1:{port}/d")

        result = doctor(app, "--json")

    assert result.exit_code == 1
    login = checks(result)["database login"]
    assert login["status"] == "fail"
    assert "security group must allow TCP 5432" in login["hint"]
    assert "VPC connector" in login["hint"]


def test_an_unresolvable_database_host_fails_with_a_hint(tmp_path):
    app = build(tmp_path, SQLALCHEMY_DATABASE_URI="postgresql://u:p@db.invalid:5432/d")

    result = doctor(app, "--json")

    assert result.exit_code == 1
    resolved = checks(result)["database host resolves"]
    assert resolved["status"] == "fail"
    assert "DB_ENDPOINT" in resolved["hint"]


# The machine's PostgreSQL trusts 127.0.0.1, so a wrong password is accepted
# there; a role or database that does not exist is refused the same way a
# wrong password is on RDS, so those provoke the login failure.
@pytest.mark.parametrize(
    ("credentials", "hint"),
    [
        ("no_such_role_{suffix}:wrong-password-xyz@", "DB_USER/DB_PASSWORD or DB_SECRET"),
        ("postgres:wrong-password-xyz@", "DB_NAME"),
    ],
    ids=["unknown role", "unknown database"],
)
def test_a_refused_login_names_the_settings_to_check(tmp_path, postgres_url, credentials, hint):
    host_and_database = postgres_url.split("@", 1)[1]
    if "DB_NAME" in hint:
        host_and_database = host_and_database.rsplit("/", 1)[0] + "/no_such_database_here"
    url = "postgresql://" + credentials.format(suffix=uuid.uuid4().hex[:6]) + host_and_database
    app = build(tmp_path, SQLALCHEMY_DATABASE_URI=url)

    result = doctor(app, "--json")

    assert result.exit_code == 1
    login = checks(result)["database login"]
    assert login["status"] == "fail"
    assert hint in login["hint"]
    assert "wrong-password-xyz" not in result.output


@pytest.mark.parametrize("applied", [None, "0001"], ids=["empty database", "one migration"])
def test_a_schema_behind_says_to_run_flask_db_upgrade(tmp_path, applied):
    with postgres_database() as url:
        app = build(tmp_path, SQLALCHEMY_DATABASE_URI=url)
        if applied:
            with app.app_context():
                upgrade(revision=applied)
                db.engine.dispose()

        result = doctor(app, "--json")

    assert result.exit_code == 1
    schema = checks(result)["database schema"]
    assert schema["status"] == "fail"
    assert "flask db upgrade" in schema["hint"]
    assert (applied or "no migration applied") in schema["detail"]


def test_a_schema_newer_than_the_code_says_to_deploy_the_newer_release(tmp_path):
    with postgres_database() as url:
        app = build(tmp_path, SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            upgrade()
            with db.engine.begin() as connection:
                connection.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
            db.engine.dispose()

        schema = failure(doctor(app, "--json"), "database schema")

    assert "f00d, unknown to this release" in schema["detail"]
    assert "migrated by a newer release" in schema["hint"]


def test_a_user_that_cannot_read_the_schema_is_told_to_connect_as_its_owner(tmp_path, postgres_url):
    role = f"doctor_bare_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")  # no grants on the diary's tables
    try:
        url = f"postgresql://{role}@{postgres_url.split('@', 1)[1]}"
        result = doctor(build(tmp_path, SQLALCHEMY_DATABASE_URI=url), "--json")
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {role}")

    assert result.exit_code == 1
    found = checks(result)
    assert found["database login"]["status"] == "ok"
    assert "permission denied" in found["database schema"]["detail"]
    assert "connect as the owner of the diary's tables" in found["database schema"]["hint"]


def test_an_s3_that_never_answers_points_at_the_vpc_endpoint(tmp_path):
    with silent_server() as endpoint:
        app = build(tmp_path, BUCKET="photos", S3_ENDPOINT_URL=endpoint)
        with app.app_context():
            upgrade()

        result = doctor(app, "--json")

    assert result.exit_code == 1
    found = checks(result)
    answers = found["s3 endpoint answers"]
    assert answers["status"] == "fail"
    assert "no answer within 1 s" in answers["detail"]  # --timeout 1
    assert "S3 gateway VPC endpoint" in answers["hint"]
    assert "route table" in answers["hint"]
    assert "NAT gateway" in answers["hint"]
    assert found["s3 bucket exists"]["status"] == "skip"
    assert found["database schema"]["status"] == "ok"  # only storage is broken


def test_a_closed_s3_port_is_reported_as_refused(tmp_path):
    app = build(tmp_path, BUCKET="photos", S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")

    result = doctor(app, "--json")

    answers = checks(result)["s3 endpoint answers"]
    assert (result.exit_code, answers["status"]) == (1, "fail")
    assert "connection refused" in answers["detail"]
    assert "S3_ENDPOINT_URL" in answers["hint"]


def test_a_missing_bucket_fails_with_a_hint(tmp_path, s3_endpoint):
    app = build(tmp_path, BUCKET=f"missing-{os.urandom(4).hex()}", S3_ENDPOINT_URL=s3_endpoint)

    result = doctor(app, "--json")

    assert result.exit_code == 1
    found = checks(result)
    assert found["s3 endpoint answers"]["status"] == "ok"
    exists = found["s3 bucket exists"]
    assert exists["status"] == "fail"
    assert "check BUCKET" in exists["hint"]
    assert found["s3 put and delete"]["status"] == "skip"


def test_the_text_report_shows_each_hint_under_its_failure(tmp_path):
    app = build(tmp_path, SQLALCHEMY_DATABASE_URI=f"postgresql://u:p@127.0.0.1:{free_port()}/d")

    lines = doctor(app).output.splitlines()

    failed = next(index for index, line in enumerate(lines) if line.startswith("FAIL"))
    assert "database port answers" in lines[failed]
    assert lines[failed + 1].strip().startswith("hint: nothing listens there")
    assert lines[-1] == "1 of 6 checks failed"


def run_doctor_process(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("DB_")}
    return subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env={**clean, "SECRET_KEY": "doctor-" + os.urandom(8).hex(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_flask_doctor_runs_from_the_command_line(postgres_url, tmp_path):
    result = run_doctor_process(
        {"DATABASE_URL": postgres_url, "LOCAL_STORAGE_DIR": str(tmp_path)},
        "-m",
        "flask",
        "--app",
        "diary",
        "doctor",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 6 checks passed" in result.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MAX_UPLOAD_MB": "lots"}, "MAX_UPLOAD_MB"),
        ({"DB_SECRET": '{"password": "pw-in-broken-secret"'}, "DB_SECRET"),
        ({"DB_USER": "diary", "DB_PASSWORD": "pw-without-host"}, "DB_ENDPOINT"),
        (
            {"DB_ENDPOINT": "db.internal", "DB_USER": "diary", "DB_PASSWORD": "pw-no-bundle"},
            "DB_SSLROOTCERT",
        ),
    ],
)
def test_python_m_diary_doctor_reports_a_configuration_that_stops_the_app(env, named):
    result = run_doctor_process(env, "-m", "diary.commands.doctor")

    assert result.returncode == 1
    assert result.stdout.startswith("FAIL  configuration")
    assert named in result.stdout
    for value in env.values():
        if "pw" in value:
            assert value not in result.stdout + result.stderr
