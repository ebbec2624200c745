"""Configuration from the environment: every source, and a clear refusal for bad values."""

from __future__ import annotations

import json

import pytest

from diary import ConfigError, create_app
from diary.config import database_url_from_env, describe_database, from_env

SECRET = {
    "username": "diary",
    "password": "p@ss:w/rd%",
    "host": "db.internal",
    "port": 5432,
    "dbname": "diary",
}


def test_no_database_settings_means_the_embedded_sqlite_default():
    assert database_url_from_env({}) is None


def test_database_url_is_used_as_given_with_the_psycopg_driver():
    assert database_url_from_env({"DATABASE_URL": "postgres://u:p@h:5433/d"}) == (
        "postgresql+psycopg://u:p@h:5433/d"
    )


def test_the_original_services_variables_build_a_url_with_an_escaped_password():
    url = database_url_from_env(
        {
            "DB_ENDPOINT": "db.internal",
            "DB_PORT": "5432",
            "DB_USER": "diary",
            "DB_PASSWORD": "p@ss:w/rd%",
            "DB_NAME": "diary",
        }
    )
    assert url == "postgresql+psycopg://diary:p%40ss%3Aw%2Frd%25@db.internal:5432/diary"


def test_db_secret_from_secrets_manager_fills_in_what_is_missing():
    url = database_url_from_env({"DB_SECRET": json.dumps(SECRET), "DB_ENDPOINT": "proxy.internal"})
    assert url == "postgresql+psycopg://diary:p%40ss%3Aw%2Frd%25@proxy.internal:5432/diary"


def test_db_secret_without_host_needs_db_endpoint():
    secret = {k: v for k, v in SECRET.items() if k != "host"}
    with pytest.raises(ConfigError, match="DB_ENDPOINT"):
        database_url_from_env({"DB_SECRET": json.dumps(secret)})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DB_SECRET": "{not json"}, "DB_SECRET"),
        ({"DB_SECRET": "[1, 2]"}, "DB_SECRET"),
        ({"DB_ENDPOINT": "h", "DB_USER": "u", "DB_PASSWORD": "p", "DB_PORT": "five"}, "DB_PORT"),
        ({"DB_ENDPOINT": "h"}, "DB_USER"),
        ({"DATABASE_URL": "mysql://u:p@h/d"}, "DATABASE_URL"),
        ({"DATABASE_URL": "::not a url::"}, "DATABASE_URL"),
        ({"MAX_UPLOAD_MB": "lots"}, "MAX_UPLOAD_MB"),
        ({"MAX_UPLOAD_MB": "0"}, "MAX_UPLOAD_MB"),
        ({"S3_READ_TIMEOUT": "-1"}, "S3_READ_TIMEOUT"),
        ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE"),
        ({"GUNICORN_THREADS": "many"}, "GUNICORN_THREADS"),
        ({"S3_READ_TIMEOUT": "nan"}, "S3_READ_TIMEOUT"),
        ({"REQUEST_BODY_TIMEOUT": "0"}, "REQUEST_BODY_TIMEOUT"),
        ({"REQUEST_BODY_TIMEOUT": "a minute"}, "REQUEST_BODY_TIMEOUT"),
        ({"REQUEST_HEADER_TIMEOUT": "-5"}, "REQUEST_HEADER_TIMEOUT"),
        ({"REQUEST_HEADER_TIMEOUT": "inf"}, "REQUEST_HEADER_TIMEOUT"),
    ],
)
def test_malformed_settings_stop_the_app_naming_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        from_env(env)


def test_postgresql_pool_has_one_checked_connection_per_request_thread():
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": "postgresql://diary@db.internal/diary",
        **from_env({"GUNICORN_THREADS": "6"}),
    }
    options = create_app(config).config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_size"] == 6
    assert options["max_overflow"] == 0
    assert options["pool_pre_ping"] is True


def test_a_bad_db_secret_is_never_echoed():
    with pytest.raises(ConfigError) as error:
        from_env({"DB_SECRET": '{"password": "hunter2"'})
    assert "hunter2" not in str(error.value)


def test_secret_key_is_required_outside_debug_and_testing(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/d.db"})


def test_the_start_up_line_names_database_and_storage_but_never_the_password(tmp_path, capsys):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": "postgresql://diary:s3cr3t-pw@db.internal:5432/diary",
            "LOCAL_STORAGE_DIR": str(tmp_path),
        }
    )

    logged = capsys.readouterr().out
    assert app.config["MAX_CONTENT_LENGTH"] == 20 * 1024 * 1024
    assert "postgresql+psycopg host=db.internal:5432 name=diary" in logged
    assert "local folder=" in logged
    assert "s3cr3t-pw" not in logged


def test_describe_database_for_sqlite_names_the_file():
    assert describe_database("sqlite:////tmp/x.sqlite3") == "sqlite file=/tmp/x.sqlite3"


def test_s3_settings_from_the_environment():
    config = from_env(
        {"BUCKET": "photos", "AWS_REGION": "us-east-1", "S3_ENDPOINT_URL": "http://127.0.0.1:9"}
    )
    assert (config["BUCKET"], config["AWS_REGION"], config["S3_ENDPOINT_URL"]) == (
        "photos",
        "us-east-1",
        "http://127.0.0.1:9",
    )


# --- PostgreSQL TLS: DB_SSLMODE, DB_SSLROOTCERT -------------------------------

RDS_VARIABLES = {"DB_ENDPOINT": "db.abc.ap-northeast-1.rds.amazonaws.com", "DB_USER": "u"}


@pytest.fixture
def ca_bundle(tmp_path):
    """A file that looks like a CA bundle (the server tests verify against real ones)."""
    path = tmp_path / "bundle.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return path


def connect_args_from(monkeypatch, env, **config):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app({"TESTING": True, **config})
    return app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]


@pytest.mark.parametrize(
    "env",
    [
        {**RDS_VARIABLES, "DB_PASSWORD": "p"},
        {"DB_SECRET": json.dumps(SECRET)},
    ],
    ids=["DB_ENDPOINT", "DB_SECRET"],
)
def test_the_rds_variables_verify_the_server_certificate_by_default(env, monkeypatch, ca_bundle):
    assert from_env(env)["DB_SSLMODE"] == "verify-full"

    connect_args = connect_args_from(monkeypatch, {**env, "DB_SSLROOTCERT": str(ca_bundle)})

    assert connect_args["sslmode"] == "verify-full"
    assert connect_args["sslrootcert"] == str(ca_bundle)


def test_database_url_keeps_what_the_url_says_unless_db_sslmode_is_set(monkeypatch, ca_bundle):
    url = "postgresql://u:p@db.internal/d?sslmode=require"
    assert "DB_SSLMODE" not in from_env({"DATABASE_URL": url})
    connect_args = connect_args_from(
        monkeypatch, {"DATABASE_URL": url, "DB_SSLROOTCERT": str(ca_bundle)}
    )
    # No verification asked, so not even the bundle the image names is passed on.
    assert "sslmode" not in connect_args and "sslrootcert" not in connect_args

    monkeypatch.setenv("DB_SSLMODE", "verify-ca")
    connect_args = connect_args_from(monkeypatch, {"DATABASE_URL": url})
    assert (connect_args["sslmode"], connect_args["sslrootcert"]) == ("verify-ca", str(ca_bundle))


def test_db_sslmode_can_be_lowered_for_the_rds_variables(monkeypatch):
    env = {**RDS_VARIABLES, "DB_PASSWORD": "p", "DB_SSLMODE": "require"}
    connect_args = connect_args_from(monkeypatch, env)
    assert connect_args["sslmode"] == "require"
    assert "sslrootcert" not in connect_args


def test_system_means_the_operating_systems_trusted_cas(monkeypatch):
    env = {**RDS_VARIABLES, "DB_PASSWORD": "p", "DB_SSLROOTCERT": "system"}
    assert connect_args_from(monkeypatch, env)["sslrootcert"] == "system"


def test_tls_settings_do_not_apply_to_sqlite(monkeypatch, tmp_path):
    monkeypatch.setenv("DB_SSLMODE", "verify-full")
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/d.db"})
    assert "connect_args" not in app.config["SQLALCHEMY_ENGINE_OPTIONS"]


@pytest.mark.parametrize("value", ["verify_full", "VERIFY-FULL", "on", "true", "ssl"])
def test_an_unknown_sslmode_is_a_config_error(value):
    with pytest.raises(ConfigError, match="DB_SSLMODE must be one of disable, allow, prefer"):
        from_env({"DB_SSLMODE": value})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "DB_SSLROOTCERT is not set"),
        ({"DB_SSLROOTCERT": "/nonexistent/rds-global-bundle.pem"}, "DB_SSLROOTCERT must be"),
        ({"DB_SSLMODE": "verify-ca", "DB_SSLROOTCERT": "/nonexistent/ca.pem"}, "DB_SSLROOTCERT"),
        ({"DB_SSLROOTCERT": "{not_pem}"}, "DB_SSLROOTCERT must be a readable PEM file"),
    ],
    ids=["unset", "missing", "missing-verify-ca", "not-pem"],
)
def test_verification_without_a_usable_ca_bundle_stops_the_app(monkeypatch, tmp_path, env, message):
    not_pem = tmp_path / "global-bundle.pem"
    not_pem.write_text("<html>Access denied</html>")  # what a proxy might have served
    env = {name: value.format(not_pem=not_pem) for name, value in env.items()}
    with pytest.raises(ConfigError, match=message):
        connect_args_from(monkeypatch, {**RDS_VARIABLES, "DB_PASSWORD": "p", **env})


def test_a_missing_ca_bundle_is_no_error_when_nothing_is_verified(monkeypatch):
    env = {**RDS_VARIABLES, "DB_PASSWORD": "p", "DB_SSLMODE": "require"}
    env["DB_SSLROOTCERT"] = "/nonexistent/ca.pem"
    assert connect_args_from(monkeypatch, env)["sslmode"] == "require"


def test_a_verifying_database_url_names_its_own_bundle_or_needs_db_sslrootcert(monkeypatch):
    url = "postgresql://u:p@db.internal/d?sslmode=verify-full"
    with pytest.raises(ConfigError, match="DB_SSLROOTCERT is not set"):
        connect_args_from(monkeypatch, {"DATABASE_URL": url})
    with pytest.raises(ConfigError, match="sslrootcert in DATABASE_URL"):
        connect_args_from(monkeypatch, {"DATABASE_URL": url + "&sslrootcert=/nonexistent.pem"})
