"""Signing in and out, signing up, settings and API tokens, in both languages."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade
from werkzeug.urls import iri_to_uri

from diary import create_app
from diary.accounts import create_user, issue_token, revoke_token
from diary.extensions import db
from diary.models import ApiToken, User
from diary.web.pages.common import safe_next

from .conftest import app_builder
from .pages_support import (
    BROWSER,
    ENGLISH,
    JAPANESE,
    PASSWORD,
    main_text,
    page,
    set_user,
    sign_in,
)


def user_row(app, user_id):
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def test_signing_in_leads_to_the_timeline(client, user):
    response = client.post(
        "/login", data={"email": "Writer@Example.com ", "password": PASSWORD}, headers=BROWSER
    )

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "Timeline" in page(client, "/")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (ENGLISH, "Email or password is not right."),
        (JAPANESE, "メールアドレスまたはパスワードが正しくありません。"),
    ],
)
def test_a_wrong_password_is_refused_next_to_the_field_keeping_the_email(
    client, user, headers, message
):
    response = client.post(
        "/login", data={"email": user.email, "password": "wrong"}, headers=headers
    )

    assert response.status_code == 401
    assert 'id="password-error"' in response.text
    assert message in response.text
    assert f'value="{user.email}"' in response.text
    # The password typed is never sent back.
    assert 'value="wrong"' not in response.text


# What a phishing link could put after ?next=, each read back by a browser as
# another site: schemes, scheme-relative hosts however many slashes or
# backslashes lead, characters browsers drop (tabs, newlines, spaces, controls,
# invisible Unicode), percent-encoded and double-encoded forms, dot segments.
OFF_SITE_NEXT = [
    "https://evil.example/",
    "HTTPS://evil.example/",
    "http:evil.example",
    "https:/evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "//evil.example/",
    "///evil.example/",
    "////evil.example/",
    "/////evil.example",
    "//evil.example@diary.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    "//\\evil.example",
    " //evil.example",
    "  /\\evil.example",
    "\t//evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\x0b/evil.example",
    "/\x7f/evil.example",
    "/\u3000/evil.example",
    "/\u200b/evil.example",
    "/\u2028/evil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0D%0A/evil.example",
    "%2F%2Fevil.example",
    "%2f%2fevil.example",
    "/%2F/evil.example",
    "/%2fevil.example",
    "/%5Cevil.example",
    "/%5cevil.example",
    "%5C%5Cevil.example",
    "/%252F%252Fevil.example",
    "/%25252F%25252Fevil.example",
    "/%2525252F%2525252Fevil.example",
    "/%2e%2e//evil.example",
    "/.//evil.example",
    "/..//evil.example",
    "/./\\evil.example",
    "/" + "a" * 5000,
]
ON_SITE_NEXT = [
    "/",
    "/trash",
    "/entries/3/edit",
    "/search?q=日本",
    "/search?q=%2F%2Fevil.example",
    "/tags/旅行?cursor=abc",
    "/calendar/2024/5#day-3",
]


def resolved_by_a_browser(location: str) -> tuple[str, str]:
    """(host, path) a browser on https://diary.example/login reaches from a Location.

    As the WHATWG URL parser does for http(s): leading and trailing C0 controls
    and spaces go, tabs and newlines go anywhere, a backslash is a slash.
    """
    cleaned = location.strip("".join(map(chr, range(0x21))))
    cleaned = re.sub("[\t\n\r]", "", cleaned).replace("\\", "/")
    # After two slashes any further ones are skipped on the way to the host.
    cleaned = re.sub("^/{2,}", "//", cleaned)
    parts = urlsplit(urljoin("https://diary.example/login", cleaned))
    return parts.netloc, parts.path


@pytest.fixture(scope="module")
def redirect_app(tmp_path_factory):
    """One app for the many redirect cases: where sign-in leads is the same on every backend."""
    folder = tmp_path_factory.mktemp("redirects")
    config = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'diary.sqlite3'}",
        "LOCAL_STORAGE_DIR": str(folder / "photos"),
        "_migrate": True,
    }
    with app_builder(config) as build:
        app = build()
        with app.app_context():
            create_user("redirect@example.com", PASSWORD)
        yield app


@pytest.mark.parametrize("next_path", OFF_SITE_NEXT)
@pytest.mark.parametrize("signed_in", [False, True], ids=["signing-in", "already-signed-in"])
def test_sign_in_never_sends_the_reader_to_another_site(redirect_app, next_path, signed_in):
    client = redirect_app.test_client()
    if signed_in:
        sign_in(client, "redirect@example.com")
        response = client.get("/login", query_string={"next": next_path}, headers=BROWSER)
    else:
        response = client.post(
            "/login",
            query_string={"next": next_path},
            data={"email": "redirect@example.com", "password": PASSWORD},
            headers=BROWSER,
        )

    assert response.status_code == 302
    # The header as Werkzeug sent it, not the value the view chose.
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("next_path", ON_SITE_NEXT)
def test_sign_in_returns_to_the_page_asked_for_on_this_site(redirect_app, next_path):
    response = redirect_app.test_client().post(
        "/login",
        query_string={"next": next_path},
        data={"email": "redirect@example.com", "password": PASSWORD},
        headers=BROWSER,
    )

    location = response.headers["Location"]
    assert location == iri_to_uri(next_path)
    host, path = resolved_by_a_browser(location)
    assert host == "diary.example"
    assert path == urlsplit(iri_to_uri(next_path)).path


def test_the_browser_model_of_the_tests_sees_the_attacks():
    """The oracle above is not blind: the raw attack strings do leave the site."""
    for raw in ("////evil.example/", "/\\evil.example", "/\t/evil.example", " //evil.example"):
        assert resolved_by_a_browser(raw)[0] == "evil.example", raw


@pytest.mark.parametrize(
    "next_path", ["/\x00/evil.example", "\x00//evil.example", "/%00/evil.example", None, ""]
)
def test_safe_next_refuses_nul_and_nothing(redirect_app, next_path):
    with redirect_app.test_request_context("/login"):
        assert safe_next(next_path) == "/"


def test_signing_out_ends_the_session_even_for_a_copied_cookie(client, user):
    sign_in(client, user.email)
    copied = client.get_cookie("session").value

    response = client.post("/logout", headers=BROWSER)

    assert response.headers["Location"] == "/login"
    assert "Signed out." in page(client, "/login")
    assert client.get("/", headers=BROWSER).status_code == 302
    client.set_cookie("session", copied)
    assert client.get("/settings", headers=BROWSER).status_code == 302


@pytest.mark.parametrize("allow_signup", [False, True])
def test_sign_up_exists_only_when_allowed(app_with, allow_signup):
    client = app_with(ALLOW_SIGNUP=allow_signup).test_client()

    assert client.get("/signup", headers=BROWSER).status_code == (200 if allow_signup else 404)
    assert ("/signup" in page(client, "/login")) is allow_signup
    response = client.post(
        "/signup",
        data={"email": "new@example.com", "password": PASSWORD, "confirm": PASSWORD},
        headers=BROWSER,
    )
    assert response.status_code == (302 if allow_signup else 404)


def test_signing_up_creates_the_account_and_signs_in(app_with):
    app = app_with(ALLOW_SIGNUP=True)
    client = app.test_client()

    response = client.post(
        "/signup",
        data={
            "email": "New@Example.com",
            "display_name": "Hana",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
        headers=JAPANESE,
    )

    assert response.headers["Location"] == "/"
    assert "ようこそ" in page(client, "/", JAPANESE)
    with app.app_context():
        user = db.session.scalars(sa.select(User)).one()
        assert (user.email, user.display_name) == ("new@example.com", "Hana")
        # A memory-hard KDF, never a fast hash.
        assert user.password_hash.startswith("scrypt:")


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"email": "writer@example.com"}, "email", "An account with this email already exists."),
        ({"email": "not-an-address"}, "email", "Enter a valid email address."),
        ({"password": "short", "confirm": "short"}, "password", "At least 8 characters."),
        ({"confirm": "something else"}, "confirm", "The two passwords differ."),
        ({"email": ""}, "email", "This field is required."),
    ],
)
def test_sign_up_errors_appear_next_to_their_field_keeping_the_input(
    app_with, form, field, message
):
    app = app_with(ALLOW_SIGNUP=True)
    with app.app_context():
        create_user("writer@example.com", PASSWORD)
    data = {
        "email": "fresh@example.com",
        "display_name": "Kept Name",
        "password": PASSWORD,
        "confirm": PASSWORD,
        **form,
    }

    response = app.test_client().post("/signup", data=data, headers=ENGLISH)

    assert response.status_code == 400
    error = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', response.text)
    assert error and message in error.group(1)
    assert 'value="Kept Name"' in response.text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_settings_change_display_name_time_zone_and_language(app, client, user):
    sign_in(client, user.email)

    response = client.post(
        "/settings",
        data={"display_name": " 花子 ", "time_zone": "Europe/Paris", "language": "ja"},
        headers=ENGLISH,
    )

    assert response.headers["Location"] == "/settings"
    # The confirmation is already in the language just chosen, whatever the browser says.
    html = page(client, "/settings", ENGLISH)
    assert "設定を保存しました。" in html
    assert '<html lang="ja">' in html
    stored = user_row(app, user.id)
    assert (stored.display_name, stored.time_zone, stored.language) == (
        "花子",
        "Europe/Paris",
        "ja",
    )


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"language": "xx"}, "language"),
        ({"display_name": "x" * 101}, "display_name"),
    ],
)
def test_bad_settings_are_refused_next_to_their_field(app, client, user, form, field):
    sign_in(client, user.email)
    data = {"display_name": "Kept", "time_zone": "", "language": "", **form}

    response = client.post("/settings", data=data, headers=BROWSER)

    assert response.status_code == 400
    assert f'id="{field}-error"' in response.text
    assert user_row(app, user.id).time_zone == ""


def test_the_language_follows_the_browser_until_the_user_chooses(app, client, user):
    assert '<html lang="ja">' in page(client, "/login", JAPANESE)
    assert "サインイン" in main_text(page(client, "/login", JAPANESE))
    assert "Sign in" in main_text(page(client, "/login", ENGLISH))
    sign_in(client, user.email)
    set_user(app, user.id, language="en")

    assert "Timeline" in page(client, "/", JAPANESE)
    assert "タイムライン" not in page(client, "/", JAPANESE)


def test_changing_the_password_needs_the_current_one(app, client, user):
    sign_in(client, user.email)

    response = client.post(
        "/settings/password",
        data={
            "current_password": "guess",
            "new_password": "brand new pass",
            "confirm": "brand new pass",
        },
        headers=JAPANESE,
    )

    assert response.status_code == 400
    assert "現在のパスワードが正しくありません。" in response.text
    assert user_row(app, user.id).password_hash == user.password_hash


def change_password(client, **extra):
    return client.post(
        "/settings/password",
        data={
            "current_password": PASSWORD,
            "new_password": "brand new pass",
            "confirm": "brand new pass",
            **extra,
        },
        headers=BROWSER,
    )


def test_changing_the_password_signs_out_other_browsers(app, client, user):
    other_browser = app.test_client()
    sign_in(other_browser, user.email)
    sign_in(client, user.email)

    response = change_password(client)

    assert response.headers["Location"] == "/settings"
    assert "Password changed" in page(client, "/settings")
    assert other_browser.get("/", headers=BROWSER).status_code == 302
    fresh = app.test_client()
    assert fresh.post("/login", data={"email": user.email, "password": PASSWORD}).status_code == 401
    sign_in(fresh, user.email, "brand new pass")


def test_the_password_page_offers_to_revoke_the_live_tokens_ticked(app, client, user):
    with app.app_context():
        owner = db.session.get(User, user.id)
        issue_token(owner, "<b>phone</b>")
        old, _ = issue_token(owner, "old laptop")
        revoke_token(owner, old.id)
    sign_in(client, user.email)

    html = page(client, "/settings/password", JAPANESE)

    checkbox = re.search(r'<input[^>]*name="revoke_tokens"[^>]*>', html).group(0)
    assert "checked" in checkbox and 'type="checkbox"' in checkbox
    assert "すべての API トークンも無効にする" in html
    # Live tokens are named (escaped); revoked ones are not.
    assert "&lt;b&gt;phone&lt;/b&gt;" in html and "<b>phone" not in html
    assert "old laptop" not in html


def test_without_tokens_the_password_page_does_not_offer_to_revoke_them(client, user):
    sign_in(client, user.email)

    assert 'name="revoke_tokens"' not in page(client, "/settings/password")


def test_changing_the_password_revokes_the_api_tokens_when_ticked(app, client, user, make_token):
    token = make_token(user)
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/entries", headers=bearer).status_code == 200
    sign_in(client, user.email)

    response = change_password(client, revoke_tokens="y")

    assert response.headers["Location"] == "/settings"
    assert "API tokens revoked: 1." in main_text(page(client, "/settings"))
    assert api.get("/api/v1/entries", headers=bearer).status_code == 401
    assert "Revoked" in main_text(page(client, "/settings/tokens"))


def test_changing_the_password_keeps_the_api_tokens_when_unticked(app, client, user, make_token):
    token = make_token(user)
    sign_in(client, user.email)

    response = change_password(client)

    assert response.headers["Location"] == "/settings"
    bearer = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/entries", headers=bearer).status_code == 200
    assert "revoked" not in main_text(page(client, "/settings")).lower()


def test_a_refused_password_change_revokes_nothing(app, client, user, make_token):
    token = make_token(user)
    sign_in(client, user.email)

    response = change_password(client, current_password="guess", revoke_tokens="y")

    assert response.status_code == 400
    bearer = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/entries", headers=bearer).status_code == 200


def test_a_new_token_is_shown_once_and_works_for_the_api(app, client, user):
    sign_in(client, user.email)

    response = client.post("/settings/tokens", data={"name": "phone app"}, headers=BROWSER)

    assert response.status_code == 200
    token = re.search(r'id="new-token" type="text" value="(diary_[^"]+)"', response.text).group(1)
    assert response.headers["Cache-Control"] == "private, no-store"
    assert token not in page(client, "/settings/tokens")
    assert token not in str(client.get_cookie("session").value)
    api = app.test_client().get("/api/v1/entries", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200
    listing = main_text(page(client, "/settings/tokens"))
    assert "phone app" in listing and "Never" not in listing


def test_tokens_are_listed_with_their_last_use_in_japanese(client, user, make_token):
    make_token(user)
    sign_in(client, user.email)

    listing = main_text(page(client, "/settings/tokens", JAPANESE))

    assert "tests" in listing and "未使用" in listing


def test_revoking_a_token_stops_it(app, client, user, make_token):
    token = make_token(user)
    sign_in(client, user.email)
    with app.app_context():
        token_id = db.session.scalar(sa.select(ApiToken.id))

    response = client.post(f"/settings/tokens/{token_id}/revoke", headers=BROWSER)

    assert response.headers["Location"] == "/settings/tokens"
    assert "Token revoked" in page(client, "/settings/tokens")
    api = app.test_client().get("/api/v1/entries", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401


def test_another_users_token_cannot_be_revoked(app, client, user, make_user, make_token):
    make_token(make_user("other@example.com"))
    with app.app_context():
        token_id = db.session.scalar(sa.select(ApiToken.id))
    sign_in(client, user.email)

    assert client.post(f"/settings/tokens/{token_id}/revoke", headers=BROWSER).status_code == 404
    assert "tests" not in main_text(page(client, "/settings/tokens"))
    with app.app_context():
        assert db.session.get(ApiToken, token_id).revoked_at is None


@pytest.mark.parametrize("name", ["", "x" * 101])
def test_a_token_needs_a_sensible_name(app, client, user, name):
    sign_in(client, user.email)

    response = client.post("/settings/tokens", data={"name": name}, headers=BROWSER)

    assert response.status_code == 400
    assert 'id="name-error"' in response.text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_the_session_cookie_is_httponly_lax_and_secure_outside_development(tmp_path):
    app = create_app(
        {
            "SECRET_KEY": "not-the-dev-key-" + "x" * 16,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
            "LOCAL_STORAGE_DIR": str(tmp_path / "photos"),
            "WTF_CSRF_ENABLED": False,
        }
    )
    with app.app_context():
        upgrade()
        create_user("prod@example.com", PASSWORD)
    try:
        response = app.test_client().post(
            "/login",
            data={"email": "prod@example.com", "password": PASSWORD},
            base_url="https://diary.example",
        )
        cookies = {
            value.split("=", 1)[0]: value for value in response.headers.getlist("Set-Cookie")
        }
        session = cookies["session"]
        assert "HttpOnly" in session and "SameSite=Lax" in session and "Secure" in session
        device = cookies["diary_device"]
        assert "HttpOnly" in device and "SameSite=Strict" in device and "Secure" in device
    finally:
        with app.app_context():
            db.engine.dispose()
