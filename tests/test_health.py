"""/healthz says the process is alive; /readyz says whether the database and storage answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from diary import create_app

from .conftest import count_statements
from .servers import free_port, silent_server


def app_on_broken_database(tmp_path: Path, database_url: str, **config: object) -> Flask:
    """The app pointed at a database that is down: nothing may connect while building it."""
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "LOCAL_STORAGE_DIR": str(tmp_path / "photos"),
            **config,
        }
    )


def test_healthz_answers_ok_without_touching_the_database(app):
    client = app.test_client()

    with count_statements(app) as statements:
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"
    assert statements == []


def test_healthz_stays_ok_while_the_database_is_down(tmp_path):
    app = app_on_broken_database(tmp_path, f"postgresql://diary@127.0.0.1:{free_port()}/diary")

    assert app.test_client().get("/healthz").status_code == 200


def test_readyz_reports_each_check_with_its_time_when_all_is_well(app):
    response = app.test_client().get("/readyz")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "storage"}
    for check in body["checks"].values():
        assert check["state"] == "ok"
        assert isinstance(check["ms"], int | float) and check["ms"] >= 0
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_runs_select_1_on_the_database(app):
    with count_statements(app) as statements:
        app.test_client().get("/readyz")

    assert any(statement.strip().upper() == "SELECT 1" for statement in statements)


def test_readyz_is_503_naming_the_database_when_it_refuses_connections(tmp_path):
    app = app_on_broken_database(
        tmp_path, f"postgresql://diary:pw@127.0.0.1:{free_port()}/diary", READY_CHECK_TIMEOUT=1.0
    )

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["state"] == "failed"
    assert body["checks"]["storage"]["state"] == "ok"


def test_readyz_gives_up_on_a_database_that_never_answers(tmp_path):
    with silent_server() as url:
        port = url.rsplit(":", 1)[1]
        app = app_on_broken_database(
            tmp_path, f"postgresql://diary:pw@127.0.0.1:{port}/diary", READY_CHECK_TIMEOUT=0.5
        )

        response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["checks"]["database"]["state"] == "timeout"


def test_readyz_gives_up_on_an_s3_that_never_answers(app_with):
    with silent_server() as endpoint:
        app = app_with(BUCKET="photos", S3_ENDPOINT_URL=endpoint, READY_CHECK_TIMEOUT=0.5)

        response = app.test_client().get("/readyz")

    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["storage"]["state"] in ("timeout", "failed")
    assert checks["database"]["state"] == "ok"


@pytest.mark.parametrize("backend", ["postgresql+s3"], indirect=True)
def test_readyz_fails_storage_when_the_bucket_does_not_exist(app_with):
    app = app_with(BUCKET="no-such-bucket-anywhere")

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["checks"]["storage"]["state"] == "failed"


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_readyz_fails_storage_when_the_photo_folder_cannot_be_written(app_with, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app = app_with(LOCAL_STORAGE_DIR=str(blocker / "photos"))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["checks"]["storage"]["state"] == "failed"


def test_readyz_does_not_tell_anonymous_callers_why(tmp_path):
    app = app_on_broken_database(
        tmp_path,
        f"postgresql://diary:pw@db-host.internal.example:{free_port()}/d",
        READY_CHECK_TIMEOUT=1.0,
    )

    response = app.test_client().get("/readyz")

    assert "db-host.internal.example" not in response.get_data(as_text=True)
    assert set(response.get_json()["checks"]["database"]) == {"state", "ms"}
