"""Error pages in the site layout, in the reader's language."""

from __future__ import annotations

import base64
import io
import re
from html import unescape

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import Forbidden
from werkzeug.test import encode_multipart

from diary.accounts import create_user
from diary.extensions import db
from diary.models import Image

from .conftest import image_bytes, row_counts
from .pages_support import (
    BROWSER,
    ENGLISH,
    JAPANESE,
    PASSWORD,
    main_text,
    photo,
    sign_in,
    write,
)


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


# --- bad input from a browser (or something pretending to be one) ----------


def field_error(html: str, field: str) -> str:
    """The error shown next to `field`, or "" when there is none."""
    found = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', html)
    return unescape(found.group(1)) if found else ""


@pytest.fixture
def browser(client, user):
    sign_in(client, user.email)
    return client


DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
# Each case builds its request afresh: file objects cannot be reused across backends.
SIGN_IN_ATTEMPTS = [
    # Flask-WTF merged file parts into the form: the address reached the rules as a file.
    pytest.param(
        lambda: {
            "data": {"email": (io.BytesIO(b"writer@example.com"), "email.txt"), "password": "x"}
        },
        "email",
        "Send this as text, not as a file.",
        id="email-as-a-file-part",
    ),
    # and read a JSON body as the form: a number for the address,
    pytest.param(
        lambda: {"json": {"email": 1, "password": "x"}},
        "email",
        "Send this as a string.",
        id="json-number",
    ),
    # or nothing at all: json.loads gave up (RecursionError).
    pytest.param(
        lambda: {"data": DEEP_JSON, "content_type": "application/json"},
        None,
        "The JSON is nested too deeply.",
        id="json-100k-deep",
    ),
    pytest.param(
        lambda: {"data": {"email": "writer\x00@example.com", "password": "x"}},
        "email",
        "Enter a valid email address.",
        id="nul-in-email",
    ),
]


@pytest.mark.parametrize(("request_kwargs", "field", "message"), SIGN_IN_ATTEMPTS)
def test_a_sign_in_the_form_cannot_read_is_a_400_next_to_the_field(
    client, user, request_kwargs, field, message
):
    response = client.post("/login", headers=ENGLISH, **request_kwargs())

    assert response.status_code == 400
    shown = field_error(response.text, field) if field else main_text(response.text)
    assert message in shown


def test_a_json_sign_in_with_a_lone_surrogate_is_read_like_undecodable_form_bytes(client, user):
    # Echoed into the page, the surrogate failed the response's UTF-8 encoding.
    response = client.post(
        "/login",
        data=b'{"email": "writer\\ud800@example.com", "password": "x"}',
        content_type="application/json",
        headers=ENGLISH,
    )

    assert response.status_code == 401
    assert 'value="writer\ufffd@example.com"' in response.text


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"email": "fresh\x00@example.com"}, "email", "Enter a valid email address."),
        ({"display_name": "Ann\x00"}, "display_name", "cannot contain control characters"),
        ({"display_name": "Ann\x1b[31m"}, "display_name", "cannot contain control characters"),
    ],
)
def test_a_sign_up_with_a_nul_is_refused_next_to_the_field(app_with, form, field, message):
    app = app_with(ALLOW_SIGNUP=True)
    data = {"email": "fresh@example.com", "password": PASSWORD, "confirm": PASSWORD, **form}

    response = app.test_client().post("/signup", data=data, headers=ENGLISH)

    assert response.status_code == 400
    assert message in field_error(response.text, field)


@pytest.mark.parametrize(
    ("path", "form", "field", "message"),
    [
        (
            "/settings",
            lambda: {"display_name": "Ann\x00", "time_zone": "", "language": ""},
            "display_name",
            "cannot contain control characters",
        ),
        (
            "/settings",
            lambda: {
                "display_name": (io.BytesIO(b"Ann"), "name.txt"),
                "time_zone": "",
                "language": "",
            },
            "display_name",
            "Send this as text, not as a file.",
        ),
        (
            "/settings/tokens",
            lambda: {"name": "phone\x00"},
            "name",
            "cannot contain control characters",
        ),
        (
            "/write",
            lambda: {"text": (io.BytesIO(b"words"), "words.txt")},
            "text",
            "Send this as text, not as a file.",
        ),
        (
            "/write",
            lambda: {"text": "x", "file": (io.BytesIO(image_bytes()), "")},
            "file",
            "without a file name",
        ),
    ],
)
def test_a_form_field_no_database_holds_is_refused_next_to_it(
    app, browser, path, form, field, message
):
    before = row_counts(app)

    response = browser.post(path, data=form(), headers=ENGLISH)

    assert response.status_code == 400
    assert message in field_error(response.text, field)
    assert row_counts(app) == before


def test_writing_keeps_a_photo_named_with_a_nul_and_a_form_without_a_file(app, browser):
    # A file input left empty sends a part with no name and no content: no photo.
    no_file = browser.post(
        "/write", data={"text": "words", "file": (io.BytesIO(b""), "")}, headers=ENGLISH
    )
    named = browser.post(
        "/write",
        data={"text": "x", "file": (io.BytesIO(image_bytes()), "din\x00ner.jpg")},
        headers=ENGLISH,
    )

    assert (no_file.status_code, named.status_code) == (302, 302)
    with app.app_context():
        assert db.session.scalars(sa.select(Image.original_filename)).all() == ["dinner.jpg"]


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"remove": "²"}, 400),
        ({"remove": "9" * 5000}, 400),
        ({"image": "²"}, 400),
        # A move arrow naming no photo shows the form again, the photos as they were.
        ({"image": "{image}", "move": "²:up"}, 200),
        ({"image": "{image}", "move": "9" * 5000 + ":up"}, 200),
    ],
)
def test_an_edit_with_numbers_int_cannot_read_is_not_a_500(app, browser, form, status):
    entry_id = write(browser, "words", photo())
    with app.app_context():
        image_id = db.session.scalar(sa.select(Image.id))
    data = {"text": "words"}
    data.update(
        {key.format(image=image_id): value.format(image=image_id) for key, value in form.items()}
    )

    response = browser.post(f"/entries/{entry_id}/edit", data=data, headers=ENGLISH)

    assert response.status_code == status


BIG = 2**31  # past the INTEGER id columns: PostgreSQL failed instead of finding nothing


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/entries/{BIG}"),
        ("get", f"/entries/{BIG}/edit"),
        ("post", f"/entries/{BIG}/edit"),
        ("post", f"/entries/{BIG}/delete"),
        ("post", f"/trash/{BIG}/restore"),
        ("post", f"/trash/{BIG}/delete"),
        ("post", f"/settings/tokens/{BIG}/revoke"),
        ("get", f"/entries/{10**30}"),
    ],
)
def test_an_id_past_the_column_is_a_404_page(browser, method, path):
    response = getattr(browser, method)(path, data={"text": "x"}, headers=ENGLISH)

    assert response.status_code == 404
    assert response.mimetype == "text/html"


@pytest.mark.parametrize(
    ("month", "headers", "message"),
    [
        ("1-1", ENGLISH, "Choose a month from 1900-01 to 9000-12."),
        ("9999-12", ENGLISH, "Choose a month from 1900-01 to 9000-12."),
        ("9999-12", JAPANESE, "1900-01 から 9000-12 までの月を選んでください。"),
        # date() raised OverflowError, not ValueError, for a 20-digit year.
        ("99999999999999999999-1", ENGLISH, "month must look like 2024-05."),
    ],
)
def test_a_month_the_calendar_cannot_show_is_a_400_page(browser, month, headers, message):
    response = browser.get(f"/calendar?month={month}", headers=headers)

    assert response.status_code == 400
    assert message in main_text(response.text)


def cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("path", ["/", "/trash", "/search?q=x&", "/tags/x"])
@pytest.mark.parametrize(
    "before",
    [
        pytest.param(cursor(b'["2024-01-01T00:00:00+00:00", Infinity]'), id="id-infinity"),
        pytest.param(cursor(b'["2024-01-01T00:00:00+00:00", 2147483648]'), id="id-past-int32"),
        pytest.param(cursor(b'["0001-01-01T00:00:00+14:00", 1]'), id="year-1"),
        pytest.param(cursor(b"[" * 5_000 + b"]" * 5_000), id="nested-5000-deep"),
    ],
)
def test_a_before_cursor_the_app_never_made_is_a_400_page(browser, path, before):
    separator = "" if path.endswith("&") else "?"
    response = browser.get(f"{path}{separator}before={before}", headers=ENGLISH)

    assert response.status_code == 400
    assert "The cursor is not valid" in unescape(main_text(response.text))
