"""Bad input gets a clear problem and leaves nothing behind: no row, no object."""

from __future__ import annotations

import io

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from .conftest import image_bytes, row_counts, stored_keys

NOTHING_WRITTEN = {"entries": 0, "images": 0}


def entry_rows(app) -> dict[str, int]:
    counts = row_counts(app)
    return {"entries": counts["entries"], "images": counts["images"]}


# Each case builds its request afresh: file objects cannot be reused across backends.
BAD_API_POSTS = [
    pytest.param(
        lambda: {"data": b"{not json", "content_type": "application/json"}, 400, id="malformed-json"
    ),
    pytest.param(
        lambda: {"data": b'"just a string"', "content_type": "application/json"},
        400,
        id="json-not-object",
    ),
    pytest.param(lambda: {"json": {"text": 42}}, 400, id="text-not-string"),
    pytest.param(lambda: {"json": {"text": ""}}, 400, id="empty-text"),
    pytest.param(lambda: {"json": {}}, 400, id="no-text"),
    pytest.param(lambda: {"json": {"text": "x" * 20_001}}, 400, id="text-over-limit"),
    pytest.param(
        lambda: {"data": b"text=hi", "content_type": "text/plain"}, 400, id="wrong-content-type"
    ),
    pytest.param(
        lambda: {
            "data": '{"text": "caf\u00e9"}'.encode("latin-1"),
            "content_type": "application/json",
        },
        400,
        id="json-not-utf8",
    ),
    pytest.param(
        lambda: {
            "data": {"text": "x", "file": (io.BytesIO(b"just words, not a picture"), "photo.jpg")}
        },
        415,
        id="text-file-named-jpg",
    ),
    pytest.param(
        lambda: {
            "data": {"text": "x", "file": (io.BytesIO(b"<html><script>alert(1)</script>"), "a.png")}
        },
        415,
        id="html-named-png",
    ),
    pytest.param(
        lambda: {"data": {"text": "x", "file": (io.BytesIO(image_bytes()[:200]), "cut.jpg")}},
        415,
        id="truncated-jpeg",
    ),
    pytest.param(
        lambda: {
            "data": {
                "text": "x",
                "file": [
                    (io.BytesIO(image_bytes()), "good.jpg"),
                    (io.BytesIO(b"GIF89a but not really"), "bad.gif"),
                ],
            }
        },
        415,
        id="second-photo-bad",
    ),
]


@pytest.mark.parametrize(("request_kwargs", "status"), BAD_API_POSTS)
def test_bad_entries_are_refused_and_nothing_is_stored(app, client, auth, request_kwargs, status):
    response = client.post("/api/v1/entries", headers=auth, **request_kwargs())

    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert entry_rows(app) == NOTHING_WRITTEN
    assert stored_keys(app) == set()


def test_non_utf8_form_text_is_refused(app, client, auth):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\n\xff\xfe caf\xe9\r\n--b--\r\n'
    )
    response = client.post(
        "/", data=body, content_type="multipart/form-data; boundary=b", headers=auth
    )

    assert response.status_code == 400
    assert "UTF-8" in response.get_json()["detail"]
    assert entry_rows(app) == NOTHING_WRITTEN


@pytest.mark.parametrize("path", ["/", "/api/v1/entries"])
def test_an_upload_over_the_limit_is_413_and_stores_nothing(app_with, path):
    app = app_with(MAX_UPLOAD_MB=1)
    client = app.test_client()
    with app.app_context():
        from diary.accounts import create_user, issue_token

        token = issue_token(create_user("big@example.com", "long enough pw"), "t")[1]
    oversized = image_bytes("PNG", (2000, 2000)) + b"\0" * (1024 * 1024)

    # Encoded up front: the test client's own spooling of a large body would
    # leave a temporary file open when the app refuses to read it.
    boundary, body = encode_multipart(
        {"text": "big", "file": FileStorage(io.BytesIO(oversized), "big.png")}
    )
    response = client.post(
        path,
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert "1 MB" in response.get_json()["detail"]
    assert entry_rows(app) == NOTHING_WRITTEN
    assert stored_keys(app) == set()


def test_patch_with_bad_text_keeps_the_old_text(client, auth):
    entry = client.post("/api/v1/entries", json={"text": "kept"}, headers=auth).get_json()

    response = client.patch(
        f"/api/v1/entries/{entry['id']}", json={"text": "y" * 20_001}, headers=auth
    )

    assert response.status_code == 400
    assert client.get(f"/api/v1/entries/{entry['id']}", headers=auth).get_json()["text"] == "kept"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/nowhere", 404),
        ("put", "/api/v1/entries", 405),
        ("post", "/api/v1/entries/1", 405),
        ("get", "/api/v1/entries/not-a-number", 404),
    ],
)
def test_routing_errors_on_the_api_are_problems(client, auth, method, path, status):
    response = getattr(client, method)(path, headers=auth)

    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == status
    if status == 405:
        assert "Allow" in response.headers
