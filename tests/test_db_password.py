"""After RDS rotates the database password, the running service logs in with the new one.

A private PostgreSQL that checks passwords over TCP (as RDS does) and moto's
Secrets Manager on the same server as its S3 stand in for RDS and its secret.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import exc as sa_exc

from diary import create_app
from diary.extensions import db
from diary.infra.db_password import SecretPassword, login_refused

from .servers import PrivatePostgres, private_postgres

FIRST = "first-password-Aa1"
SECOND = "second/pass@word-Bb2"  # URL-unsafe, as Secrets Manager passwords often are


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres(password=FIRST) as server:
        yield server


@pytest.fixture
def secret_arn(s3_endpoint, monkeypatch) -> str:
    """An RDS-style secret on moto; boto3 in the app finds it through the endpoint variable."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", s3_endpoint)
    client = secrets_manager(s3_endpoint)
    secret = {"username": "postgres", "password": FIRST, "engine": "postgres"}
    return client.create_secret(Name=f"rds-{uuid.uuid4().hex}", SecretString=json.dumps(secret))[
        "ARN"
    ]


def secrets_manager(endpoint: str):
    return boto3.client("secretsmanager", endpoint_url=endpoint, region_name="ap-northeast-1")


def rotate(postgres: PrivatePostgres, endpoint: str, arn: str) -> None:
    """What RDS does: a new password on the server and in the secret."""
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"ALTER ROLE postgres PASSWORD '{SECOND}'")
    secrets_manager(endpoint).put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": "postgres", "password": SECOND})
    )


@contextmanager
def app_on(postgres: PrivatePostgres, tmp_path, **config) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": postgres.url,
            "LOCAL_STORAGE_DIR": str(tmp_path / "photos"),
            **config,
        }
    )
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


def select_one(app) -> int:
    with app.app_context():
        try:
            return db.session.scalar(sa.text("SELECT 1"))
        finally:
            db.session.remove()


def test_after_a_rotation_new_connections_log_in_with_the_re_read_secret(
    postgres, secret_arn, s3_endpoint, tmp_path, capsys
):
    with app_on(postgres, tmp_path, DB_SECRET_ARN=secret_arn) as app:
        assert select_one(app) == 1

        rotate(postgres, s3_endpoint, secret_arn)
        with app.app_context():
            db.engine.dispose()  # every connection from now on is a new login

        capsys.readouterr()
        assert select_one(app) == 1

        assert app.extensions["diary.db_password"].current == SECOND
        log = capsys.readouterr().out  # the app's JSON lines
        assert "re-read from DB_SECRET_ARN" in log
        assert SECOND not in log and FIRST not in log


def test_without_the_secret_arn_a_rotation_refuses_new_connections(
    postgres, s3_endpoint, secret_arn, tmp_path
):
    with app_on(postgres, tmp_path) as app:
        assert select_one(app) == 1

        rotate(postgres, s3_endpoint, secret_arn)
        with app.app_context():
            db.engine.dispose()

        with pytest.raises(sa_exc.OperationalError) as refused:
            select_one(app)
        assert login_refused(refused.value.orig)


def test_a_wrong_password_reads_the_secret_at_most_once_per_interval(
    postgres, secret_arn, s3_endpoint, tmp_path
):
    """The server changed but the secret did not: refused, without a Secrets Manager call each."""
    with app_on(postgres, tmp_path, DB_SECRET_ARN=secret_arn) as app:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute(f"ALTER ROLE postgres PASSWORD '{SECOND}'")
        password: SecretPassword = app.extensions["diary.db_password"]
        reads: list[str] = []
        client = password._secrets_manager()
        client.meta.events.register(
            "before-send.secrets-manager.GetSecretValue", lambda request, **_: reads.append("read")
        )

        for _ in range(3):
            with pytest.raises(sa_exc.OperationalError):
                select_one(app)

        assert reads == ["read"]
