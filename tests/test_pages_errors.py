"""Error pages in the site layout, in the reader's language."""

from __future__ import annotations

import io

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import Forbidden
from werkzeug.test import encode_multipart

from diary.accounts import create_user

from .pages_support import BROWSER, ENGLISH, JAPANESE, PASSWORD, main_text, sign_in


def test_a_missing_page_is_a_404_in_the_layout(client):
    response = client.get("/no/such/page", headers=JAPANESE)

    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert '<header class="site">' in response.text
    assert "見つかりません" in main_text(response.text)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [(ENGLISH, "larger than the limit of 1 MB"), (JAPANESE, "上限の 1 MB を超えています")],
)
def test_a_too_large_upload_is_a_413_page(app_with, headers, expected):
    app = app_with(MAX_UPLOAD_MB=1)
    with app.app_context():
        create_user("big@example.com", PASSWORD)
    client = app.test_client()
    sign_in(client, "big@example.com")

    # Encoded up front: the test client's own spooling of a large body would
    # leave a temporary file open when the app refuses to read it.
    boundary, body = encode_multipart(
        {"text": "big", "file": FileStorage(io.BytesIO(b"\xff" * (1024 * 1024 + 1)), "big.jpg")}
    )
    response = client.post(
        "/write",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=headers,
    )

    assert response.status_code == 413
    assert expected in main_text(response.text)


def test_a_forbidden_page_is_a_403_in_the_layout(app_with):
    app = app_with()

    def forbidden() -> str:
        raise Forbidden()

    app.add_url_rule("/forbidden-for-test", view_func=forbidden)

    response = app.test_client().get("/forbidden-for-test", headers=ENGLISH)

    assert response.status_code == 403
    assert "Not allowed" in main_text(response.text)


def test_a_crash_is_a_500_page_that_reveals_nothing(app_with):
    app = app_with(PROPAGATE_EXCEPTIONS=False)

    def crash() -> str:
        raise RuntimeError("secret internals: password=hunter2")

    app.add_url_rule("/crash-for-test", view_func=crash)

    response = app.test_client().get("/crash-for-test", headers=JAPANESE)

    assert response.status_code == 500
    assert "問題が発生しました" in main_text(response.text)
    assert "hunter2" not in response.text
    assert '<header class="site">' in response.text


def test_the_stylesheet_and_script_come_from_the_app(client):
    html = client.get("/login", headers=BROWSER).text

    assert 'href="/static/style.css"' in html and 'src="/static/app.js"' in html
    for asset in ("/static/style.css", "/static/app.js", "/static/favicon.svg"):
        with client.get(asset) as response:
            assert response.status_code == 200
