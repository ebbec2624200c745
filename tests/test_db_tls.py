"""PostgreSQL over TLS, verified: a private server with a certificate from a test CA.

The server refuses TCP logins without TLS (as RDS does with rds.force_ssl), so
a login that works has used TLS. With the RDS-style variables the app verifies
the certificate by default; the wrong CA or a host name the certificate does not
name is refused before any password is sent, and nothing secret is printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from diary import create_app
from diary.commands.doctor import (
    HINT_DB_LOGIN,
    HINT_DB_TLS_CA,
    HINT_DB_TLS_HOSTNAME,
    HINT_DB_TLS_REQUIRED,
)
from diary.extensions import db

from .servers import PrivatePostgres, private_postgres
from .tls import TestCA, issue_server_certificate, new_ca

PASSWORD = "tls-db-pw-" + os.urandom(6).hex()


@dataclass
class TLSDatabase:
    server: PrivatePostgres
    ca: TestCA
    other_ca: TestCA


@pytest.fixture(scope="module")
def tls_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSDatabase]:
    """A PostgreSQL with a certificate for `localhost` only, signed by our CA."""
    directory = tmp_path_factory.mktemp("tls")
    ca = new_ca(directory, "diary-test-ca")
    other_ca = new_ca(directory, "some-other-ca")
    certificate = issue_server_certificate(ca, directory, ["localhost"])
    with private_postgres(password=PASSWORD, tls=certificate) as server:
        yield TLSDatabase(server, ca, other_ca)


def rds_style_env(database: TLSDatabase, endpoint: str, rootcert: Path) -> dict[str, str]:
    """The variables the deploy templates pass, DB_SSLMODE left to its default."""
    return {
        "DB_ENDPOINT": endpoint,
        "DB_PORT": str(database.server.port),
        "DB_SECRET": json.dumps({"username": "postgres", "password": PASSWORD}),
        "DB_NAME": "postgres",
        "DB_SSLROOTCERT": str(rootcert),
        "SECRET_KEY": "tls-" + os.urandom(8).hex(),
    }


def app_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], tmp_path: Path) -> Flask:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return create_app({"LOCAL_STORAGE_DIR": str(tmp_path / "photos")})


def session_tls(app: Flask) -> tuple[bool, str]:
    with app.app_context(), db.engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        ).one()
        return row.ssl, row.version


def dispose(app: Flask) -> None:
    with app.app_context():
        db.engine.dispose()


def test_rds_variables_verify_the_certificate_by_default_and_connect_over_tls(
    tls_database, monkeypatch, tmp_path
):
    app = app_from_env(
        monkeypatch, rds_style_env(tls_database, "localhost", tls_database.ca.path), tmp_path
    )
    try:
        connect_args = app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]
        assert connect_args["sslmode"] == "verify-full"
        assert connect_args["sslrootcert"] == str(tls_database.ca.path)

        ready = app.test_client().get("/readyz")

        assert ready.status_code == 200, ready.get_json()
        assert session_tls(app)[0] is True
    finally:
        dispose(app)


@pytest.mark.parametrize(
    ("endpoint", "ca", "reason"),
    [
        ("localhost", "other_ca", "certificate verify failed"),
        ("127.0.0.1", "ca", "does not match host name"),
    ],
    ids=["wrong-ca", "wrong-host-name"],
)
def test_a_certificate_that_does_not_verify_is_refused_without_leaking_the_password(
    tls_database, monkeypatch, tmp_path, capsys, endpoint, ca, reason
):
    app = app_from_env(
        monkeypatch, rds_style_env(tls_database, endpoint, getattr(tls_database, ca).path), tmp_path
    )
    try:
        ready = app.test_client().get("/readyz")
        with pytest.raises(sa.exc.OperationalError) as refused:
            session_tls(app)
    finally:
        dispose(app)

    assert ready.status_code == 503
    assert ready.get_json()["checks"]["database"]["state"] == "failed"
    assert reason in str(refused.value)
    logged = capsys.readouterr()
    assert reason in logged.out  # the readiness failure is logged with its cause
    for text in (logged.out, logged.err, ready.get_data(as_text=True), str(refused.value)):
        assert PASSWORD not in text


def test_database_url_asking_for_verification_uses_db_sslrootcert(
    tls_database, monkeypatch, tmp_path
):
    url = f"postgresql://postgres:{PASSWORD}@localhost:{tls_database.server.port}/postgres"
    env = {
        "DATABASE_URL": url + "?sslmode=verify-full",
        "DB_SSLROOTCERT": str(tls_database.ca.path),
        "SECRET_KEY": "tls-" + os.urandom(8).hex(),
    }
    app = app_from_env(monkeypatch, env, tmp_path)
    try:
        assert session_tls(app)[0] is True
    finally:
        dispose(app)


def doctor_checks(app: Flask) -> tuple[dict[str, dict[str, Any]], str]:
    try:
        result = app.test_cli_runner().invoke(args=["doctor", "--timeout", "2", "--json"])
    finally:
        dispose(app)
    return {check["name"]: check for check in json.loads(result.stdout)}, result.output


def test_the_doctor_reports_the_verified_tls_session(tls_database, monkeypatch, tmp_path):
    app = app_from_env(
        monkeypatch, rds_style_env(tls_database, "localhost", tls_database.ca.path), tmp_path
    )

    checks, _ = doctor_checks(app)

    assert checks["database login"]["status"] == "ok"
    assert "TLSv1.3, sslmode verify-full" in checks["database login"]["detail"]
    assert checks["database schema"]["status"] == "fail"  # the private server is not migrated


@pytest.mark.parametrize(
    ("endpoint", "ca", "hint"),
    [
        ("localhost", "other_ca", HINT_DB_TLS_CA),
        ("127.0.0.1", "ca", HINT_DB_TLS_HOSTNAME),
    ],
    ids=["wrong-ca", "wrong-host-name"],
)
def test_the_doctor_names_a_tls_failure_not_a_wrong_password(
    tls_database, monkeypatch, tmp_path, endpoint, ca, hint
):
    app = app_from_env(
        monkeypatch, rds_style_env(tls_database, endpoint, getattr(tls_database, ca).path), tmp_path
    )

    checks, output = doctor_checks(app)

    login = checks["database login"]
    assert login["status"] == "fail"
    assert login["hint"] == hint
    assert login["hint"] != HINT_DB_LOGIN
    assert checks["database schema"]["status"] == "skip"
    assert PASSWORD not in output


def test_the_doctor_says_when_the_server_insists_on_tls(tls_database, monkeypatch, tmp_path):
    env = rds_style_env(tls_database, "localhost", tls_database.ca.path)
    app = app_from_env(monkeypatch, {**env, "DB_SSLMODE": "disable"}, tmp_path)

    checks, output = doctor_checks(app)

    assert checks["database login"]["hint"] == HINT_DB_TLS_REQUIRED
    assert PASSWORD not in output
