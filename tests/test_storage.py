"""When S3 or the database fails, requests end quickly and leave nothing behind."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from flask import Flask

from diary.accounts import create_user, issue_token
from diary.extensions import db
from diary.infra.storage import S3Storage, StorageUnavailable

from .conftest import image_bytes, row_counts, stored_keys
from .pages_support import JAPANESE, PASSWORD, main_text, photo, sign_in
from .servers import free_port, silent_server


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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def s3_storage(endpoint: str, bucket: str, **settings) -> S3Storage:
    """An S3Storage with short timeouts and one attempt unless `settings` say otherwise."""
    return S3Storage(
        **{
            "bucket": bucket,
            "region": "ap-northeast-1",
            "endpoint_url": endpoint,
            "connect_timeout": 0.5,
            "read_timeout": 0.5,
            "max_attempts": 1,
            "url_expires": 900,
            **settings,
        }
    )


def counted_s3(endpoint: str, bucket: str, monkeypatch, clock: FakeClock) -> tuple[S3Storage, list]:
    """An S3Storage whose put_object calls are recorded before they go out."""
    storage = s3_storage(endpoint, bucket, failure_cooldown=10, clock=clock)
    calls: list[str] = []
    put_object = storage.client.put_object

    def recorded(**params):
        calls.append(params["Key"])
        return put_object(**params)

    monkeypatch.setattr(storage.client, "put_object", recorded)
    return storage, calls


def test_after_s3_did_not_answer_storage_calls_fail_at_once_until_the_cool_down_ends(
    monkeypatch,
):
    clock = FakeClock()
    with silent_server() as endpoint:
        storage, calls = counted_s3(endpoint, "unreachable", monkeypatch, clock)

        with pytest.raises(StorageUnavailable, match="upload failed"):
            storage.put("1/a/original.jpg", io.BytesIO(b"x"), content_type="image/jpeg")
        clock.now += 9
        with pytest.raises(StorageUnavailable, match="not tried"):
            storage.put("1/b/original.jpg", io.BytesIO(b"x"), content_type="image/jpeg")
        with pytest.raises(StorageUnavailable, match="not tried"):
            storage.delete(["1/a/original.jpg"])
        assert calls == ["1/a/original.jpg"]  # the second upload never left the process

        clock.now += 2  # past the 10 s cool-down: one call tries S3 again...
        during_the_try: list[str] = []
        put_object = storage.client.put_object

        def others_meanwhile(**params):
            try:
                storage.put("1/d/original.jpg", io.BytesIO(b"x"), content_type="image/jpeg")
            except StorageUnavailable as error:
                during_the_try.append(str(error))
            return put_object(**params)

        monkeypatch.setattr(storage.client, "put_object", others_meanwhile)
        with pytest.raises(StorageUnavailable, match="upload failed"):
            storage.put("1/c/original.jpg", io.BytesIO(b"x"), content_type="image/jpeg")
        assert calls == ["1/a/original.jpg", "1/c/original.jpg"]
        # ...while the others still fail at once instead of all waiting on S3 together.
        assert len(during_the_try) == 1 and "not tried" in during_the_try[0]


@pytest.mark.parametrize("attempts", [1, 2])
def test_s3_max_attempts_counts_every_try_the_first_included(attempts):
    with silent_server() as endpoint:
        storage = s3_storage(
            endpoint, "unreachable", connect_timeout=0.2, read_timeout=0.2, max_attempts=attempts
        )
        sent: list[str] = []
        storage.client.meta.events.register(
            "before-send.s3.PutObject", lambda request, **_: sent.append(request.url)
        )
        with pytest.raises(StorageUnavailable):
            storage.put("1/a/original.jpg", io.BytesIO(b"x"), content_type="image/jpeg")

    assert len(sent) == attempts


def test_an_answer_from_s3_even_a_refusal_does_not_stop_the_next_call(s3_endpoint, monkeypatch):
    storage, calls = counted_s3(s3_endpoint, "no-such-bucket-here", monkeypatch, FakeClock())

    for key in ("1/a/original.jpg", "1/b/original.jpg"):
        with pytest.raises(StorageUnavailable, match="upload failed"):  # NoSuchBucket
            storage.put(key, io.BytesIO(b"x"), content_type="image/jpeg")

    assert calls == ["1/a/original.jpg", "1/b/original.jpg"]


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


def test_a_browser_whose_photo_cannot_be_stored_is_told_it_is_the_photo_storage(
    unreachable_s3_app,
):
    with unreachable_s3_app.app_context():
        create_user("writer@example.com", PASSWORD)
    client = unreachable_s3_app.test_client()
    sign_in(client, "writer@example.com")

    response = client.post(
        "/write",
        data={"text": "with a photo", "file": [photo()]},
        content_type="multipart/form-data",
        headers=JAPANESE,
    )

    assert response.status_code == 503
    assert "写真の保存先に接続できません" in main_text(response.text)
    assert "データベース" not in main_text(response.text)
    assert row_counts(unreachable_s3_app)["entries"] == 0


@contextmanager
def database_refusing_connections(app: Flask) -> Iterator[None]:
    """New connections go to a loopback port nobody listens on, as when PostgreSQL is down."""
    dead_port = free_port()

    def elsewhere(_dialect, _record, _cargs, params: dict) -> None:
        params["port"] = dead_port

    with app.app_context():
        engine = db.engine
        sa.event.listen(engine, "do_connect", elsewhere)
        engine.dispose()  # pooled connections would still reach the live server
        try:
            yield
        finally:
            sa.event.remove(engine, "do_connect", elsewhere)
            engine.dispose()


def test_a_signed_in_browser_gets_the_outage_page_while_the_database_is_down(postgres_app):
    app = postgres_app(PROPAGATE_EXCEPTIONS=False)  # answer as production would
    with app.app_context():
        create_user("reader@example.com", PASSWORD)
    client = app.test_client()
    sign_in(client, "reader@example.com")

    with database_refusing_connections(app):
        response = client.get("/", headers=JAPANESE)

        # It was a bare 500: the page's layout looked the user up again, inside the handler.
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        text = main_text(response.text)
        assert "データベースに接続できません" in text
        assert "写真の保存先" not in text
        # Shown as to a visitor: no navigation, no sign-out form.
        assert "サインアウト" not in response.text

    # The session survived the outage: the timeline is back, still signed in.
    after = client.get("/", headers=JAPANESE)
    assert after.status_code == 200 and "サインアウト" in after.text
