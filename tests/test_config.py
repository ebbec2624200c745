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
        ({"API_PAGE_CACHE_MB": "-1"}, "API_PAGE_CACHE_MB"),
        ({"DB_PING_AFTER_IDLE_SECONDS": "0"}, "DB_PING_AFTER_IDLE_SECONDS"),
        ({"S3_READ_TIMEOUT": "nan"}, "S3_READ_TIMEOUT"),
        ({"API_TOKEN_CACHE_SECONDS": "-1"}, "API_TOKEN_CACHE_SECONDS"),
        ({"API_TOKEN_CACHE_SECONDS": "soon"}, "API_TOKEN_CACHE_SECONDS"),
        ({"REQUEST_BODY_TIMEOUT": "0"}, "REQUEST_BODY_TIMEOUT"),
        ({"REQUEST_BODY_TIMEOUT": "a minute"}, "REQUEST_BODY_TIMEOUT"),
        ({"REQUEST_HEADER_TIMEOUT": "-5"}, "REQUEST_HEADER_TIMEOUT"),
        ({"REQUEST_HEADER_TIMEOUT": "inf"}, "REQUEST_HEADER_TIMEOUT"),
    ],
)
def test_malformed_settings_stop_the_app_naming_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        from_env(env)


def test_the_token_cache_can_be_turned_off_but_not_stretched_past_a_minute():
    assert from_env({"API_TOKEN_CACHE_SECONDS": "0"})["API_TOKEN_CACHE_SECONDS"] == 0
    with pytest.raises(ConfigError, match="API_TOKEN_CACHE_SECONDS must be at most 60"):
        create_app({"TESTING": True, "API_TOKEN_CACHE_SECONDS": 3600})


def test_a_bad_db_secret_is_never_echoed():
    with pytest.raises(ConfigError) as error:
        from_env({"DB_SECRET": '{"password": "hunter2"'})
    assert "hunter2" not in str(error.value)


def test_secret_key_is_required_outside_debug_and_testing(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app()


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


def test_cached_pages_must_not_outlive_the_photo_urls_in_them():
    with pytest.raises(ConfigError, match="API_PAGE_CACHE_SECONDS"):
        create_app({"TESTING": True, "API_PAGE_CACHE_SECONDS": 300, "IMAGE_URL_EXPIRES": 900})
