"""When S3 or the database fails, requests end quickly and leave nothing behind."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from diary.accounts import create_user, issue_token
from diary.extensions import db

from .conftest import image_bytes, row_counts, stored_keys
from .servers import silent_server


@pytest.fixture
def unreachable_s3_app(app_with, backend) -> Iterator[Flask]:
    """The app with its bucket behind a socket that accepts and never answers."""
    with silent_server() as endpoint:
        yield app_with(
            BUCKET="unreachable",
            S3_ENDPOINT_URL=endpoint,
            S3_CONNECT_TIMEOUT=0.5,
            S3_READ_TIMEOUT=0.5,
            S3_MAX_ATTEMPTS=1,
        )


def token_for(app: Flask) -> dict[str, str]:
    with app.app_context():
        token = issue_token(create_user("s3@example.com", "long enough pw"), "t")[1]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/", "/api/v1/entries"])
def test_photo_upload_to_unreachable_s3_is_a_503_with_nothing_written(
    unreachable_s3_app, path, caplog
):
    client = unreachable_s3_app.test_client()
    headers = token_for(unreachable_s3_app)

    with caplog.at_level(logging.ERROR, logger="diary"):
        response = client.post(
            path,
            data={"text": "with photo", "file": (io.BytesIO(image_bytes()), "a.jpg")},
            headers=headers,
        )

    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"]
    assert row_counts(unreachable_s3_app)["entries"] == 0
    assert "gateway VPC endpoint" in caplog.text  # the log names the likely cause


def test_text_entries_keep_working_while_s3_is_down(unreachable_s3_app):
    client = unreachable_s3_app.test_client()
    headers = token_for(unreachable_s3_app)

    assert client.post("/", data={"text": "no photo today"}, headers=headers).status_code == 200
    assert (
        client.post("/api/v1/entries", json={"text": "still here"}, headers=headers).status_code
        == 201
    )
    listed = client.get("/api/v1/entries", headers=headers)
    assert [e["text"] for e in listed.get_json()["items"]] == ["still here", "no photo today"]


def test_a_failed_database_write_deletes_the_uploaded_photos(app, client, auth, monkeypatch):
    """Photos go up before the row; if the commit fails, they must come down again."""

    def failing_commit() -> None:
        raise sa.exc.OperationalError("COMMIT", {}, Exception("database went away"))

    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as production would
    with app.app_context():
        monkeypatch.setattr(db.session, "commit", failing_commit)
        response = client.post(
            "/api/v1/entries",
            data={
                "text": "two photos",
                "file": [
                    (io.BytesIO(image_bytes()), "a.jpg"),
                    (io.BytesIO(image_bytes()), "b.jpg"),
                ],
            },
            headers=auth,
        )

    # A database that went away is a 503 the client may retry, not a 500.
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert stored_keys(app) == set()
    assert row_counts(app)["images"] == 0
