"""Fixtures: an app on each backend pair, clients, and factories for data."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from PIL import Image as PILImage

from diary import create_app
from diary.accounts import create_user, issue_token
from diary.extensions import db
from diary.infra.storage import current_storage
from diary.models import User

from .servers import moto_s3_server, postgres_database

# boto3 must never find real credentials or config on a developer's machine.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_CONFIG_FILE="/dev/null",
    AWS_SHARED_CREDENTIALS_FILE="/dev/null",
)
for _name in (
    "DATABASE_URL",
    "DB_SECRET",
    "DB_ENDPOINT",
    "DB_SSLMODE",
    "DB_SSLROOTCERT",
    "BUCKET",
    "S3_ENDPOINT_URL",
):
    os.environ.pop(_name, None)

TABLES = ("images", "api_tokens", "entries", "users")
# Emptied with TABLES for each test on PostgreSQL, but not what a request leaves behind:
# the throttles' counts (RATELIMIT_STORAGE_URI=database://, the default there).
SCRATCH_TABLES = ("rate_limit_counters",)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            upgrade()
            db.engine.dispose()
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_server() as endpoint:
        yield endpoint


def new_bucket(endpoint: str, name: str) -> str:
    boto3.client("s3", endpoint_url=endpoint, region_name="ap-northeast-1").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"}
    )
    return name


def _sqlite_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'diary.sqlite3'}",
        "LOCAL_STORAGE_DIR": str(tmp_path / "photos"),
    }


@pytest.fixture(params=["sqlite+local", "postgresql+s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Each test runs on the embedded default and on the production pair."""
    if request.param == "sqlite+local":
        return {**_sqlite_config(tmp_path), "_migrate": True}
    postgres = request.getfixturevalue("postgres_url")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = new_bucket(endpoint, f"diary-{os.urandom(6).hex()}")
    return {
        "SQLALCHEMY_DATABASE_URI": postgres,
        "BUCKET": bucket,
        "S3_ENDPOINT_URL": endpoint,
        "_truncate": True,
    }


def make_app(config: dict[str, Any]) -> Flask:
    options = {key: value for key, value in config.items() if not key.startswith("_")}
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, **options})
    with app.app_context():
        if config.get("_migrate"):
            upgrade()
        if config.get("_truncate"):
            with db.engine.begin() as connection:
                # CASCADE empties every table that refers to these, whoever adds one.
                tables = ", ".join(TABLES + SCRATCH_TABLES)
                connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return app


@contextmanager
def app_builder(config: dict[str, Any]) -> Iterator[Callable[..., Flask]]:
    """Build apps on `config` with extra settings; their pools are closed afterwards."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        apps.append(make_app({**config, **overrides}))
        return apps[-1]

    yield build
    for built in apps:
        with built.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app_with(backend: dict[str, Any]) -> Iterator[Callable[..., Flask]]:
    """Build the app on this test's backend with extra settings, e.g. a smaller upload limit."""
    with app_builder(backend) as build:
        yield build


@pytest.fixture
def postgres_app(postgres_url: str) -> Iterator[Callable[..., Flask]]:
    """Apps on PostgreSQL alone, for what SQLite does not have (pools that go stale, outages)."""
    with app_builder({"SQLALCHEMY_DATABASE_URI": postgres_url, "_truncate": True}) as build:
        yield build


@pytest.fixture
def app(app_with: Callable[..., Flask]) -> Flask:
    return app_with()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


# --- factories -------------------------------------------------------------


@pytest.fixture
def make_user(app: Flask) -> Callable[..., User]:
    def make(email: str | None = None, password: str = "correct horse battery") -> User:
        with app.app_context():
            user = create_user(email or f"user-{os.urandom(4).hex()}@example.com", password)
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return make


@pytest.fixture
def make_token(app: Flask) -> Callable[[User], str]:
    def make(user: User) -> str:
        with app.app_context():
            return issue_token(db.session.get(User, user.id), "tests")[1]

    return make


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    return make_user("writer@example.com")


@pytest.fixture
def auth(user: User, make_token: Callable[[User], str]) -> dict[str, str]:
    """Headers of an API client signed in as `user`."""
    return {"Authorization": f"Bearer {make_token(user)}"}


def token_for_new_user(app: Flask, email: str | None = None) -> dict[str, str]:
    """Headers of an API client signed in as a new user of `app`."""
    with app.app_context():
        user = create_user(email or f"user-{os.urandom(4).hex()}@example.com", "correct horse")
        return {"Authorization": f"Bearer {issue_token(user, 'tests')[1]}"}


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every frame decoded (Pillow makes a decoder for each), by decoder name."""
    made: list[str] = []
    real = PILImage._getdecoder

    def counting(mode, decoder_name, *args, **kwargs):
        made.append(decoder_name)
        return real(mode, decoder_name, *args, **kwargs)

    monkeypatch.setattr(PILImage, "_getdecoder", counting)
    return made


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def jpeg() -> bytes:
    return image_bytes()


# --- observing what was stored ---------------------------------------------


def stored_keys(app: Flask) -> set[str]:
    with app.app_context():
        return {stored.key for stored in current_storage().iter_objects()}


def row_counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            table: db.session.scalar(sa.text(f"SELECT count(*) FROM {table}")) for table in TABLES
        }


@contextmanager
def count_statements(app: Flask) -> Iterator[list[str]]:
    """Collect the SQL statements the app runs inside the block."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
