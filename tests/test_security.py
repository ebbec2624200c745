"""What keeps the diary private: CSRF, sign-in throttling, security headers, configuration."""

from __future__ import annotations

import os
import socket

import pytest
import sqlalchemy as sa

from diary import ConfigError, create_app
from diary.config import from_env
from diary.extensions import db
from diary.models import ApiToken, Entry, User
from diary.web.security import bucket_origins

from .pages_support import BROWSER, PASSWORD, main_text, page, sign_in, write
from .servers import unavailable


def csrf_token(html: str) -> str:
    return html.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]


@pytest.fixture
def csrf_app(app_with):
    return app_with(WTF_CSRF_ENABLED=True)


def sign_in_with_csrf(client, email):
    token = csrf_token(page(client, "/login"))
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/write", {"text": "forged"}),
        ("/entries/{id}/edit", {"text": "forged"}),
        ("/entries/{id}/delete", {}),
        ("/settings", {"display_name": "forged", "time_zone": "", "language": ""}),
        (
            "/settings/password",
            {"current_password": PASSWORD, "new_password": "forged pw 1", "confirm": "forged pw 1"},
        ),
        ("/settings/tokens", {"name": "forged"}),
        ("/logout", {}),
        ("/trash/{id}/restore", {}),
        ("/trash/{id}/delete", {}),
        ("/settings/tokens/1/revoke", {}),
    ],
)
@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_a_form_posted_without_a_valid_csrf_token_is_rejected(csrf_app, path, data, token):
    from diary.accounts import create_user, issue_token
    from diary.timestamps import utcnow

    with csrf_app.app_context():
        user = create_user("victim@example.com", PASSWORD)
        issue_token(user, "existing")
        trashed_at = utcnow() if path.startswith("/trash") else None
        entry = Entry(user_id=user.id, text="original", deleted_at=trashed_at)
        db.session.add(entry)
        db.session.commit()
        entry_id = entry.id
    client = csrf_app.test_client()
    sign_in_with_csrf(client, "victim@example.com")
    if token is not None:
        data = {**data, "csrf_token": token}

    response = client.post(path.format(id=entry_id), data=data, headers=BROWSER)

    assert response.status_code == 400
    assert "The form has expired" in main_text(response.text)
    with csrf_app.app_context():
        entry = db.session.get(Entry, entry_id)
        assert entry is not None and entry.text == "original"
        assert entry.deleted_at == trashed_at
        tokens = db.session.scalars(sa.select(ApiToken)).all()
        assert [(t.name, t.revoked_at) for t in tokens] == [("existing", None)]
    # Still signed in: the forged sign-out did nothing either.
    assert client.get("/settings", headers=BROWSER).status_code == 200


def test_sign_in_itself_needs_the_csrf_token(csrf_app):
    from diary.accounts import create_user

    with csrf_app.app_context():
        create_user("victim@example.com", PASSWORD)

    response = csrf_app.test_client().post(
        "/login", data={"email": "victim@example.com", "password": PASSWORD}, headers=BROWSER
    )

    assert response.status_code == 400


def test_forms_with_the_token_go_through(csrf_app):
    from diary.accounts import create_user

    with csrf_app.app_context():
        create_user("writer@example.com", PASSWORD)
    client = csrf_app.test_client()
    sign_in_with_csrf(client, "writer@example.com")
    token = csrf_token(page(client, "/write"))

    response = client.post("/write", data={"text": "real", "csrf_token": token})

    assert response.status_code == 302


# --- sign-in throttling ----------------------------------------------------
# Redis outlives a test (and the limiter's key prefix is fixed by the first app
# that binds it), so every test uses addresses and accounts nobody used before.


def redis_url() -> str:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            pass
    except OSError:
        unavailable("Redis is not reachable at 127.0.0.1:6379")
    return "redis://127.0.0.1:6379"


def fresh_address() -> str:
    a, b, c = os.urandom(3)
    return f"10.{a}.{b}.{c}"


def fresh_email(name: str) -> str:
    return f"{name}-{os.urandom(4).hex()}@example.com"


@pytest.fixture(params=["memory", "redis", "database"])
def throttled_app(request, app_with):
    """Small limits, on in-process memory, the shared Redis and the app's own database."""
    storage = {"memory": "memory://", "database": "database://"}.get(request.param) or redis_url()
    return app_with(
        RATELIMIT_STORAGE_URI=storage,
        SIGNIN_LIMIT_PER_ADDRESS="5 per 15 minutes",
        SIGNIN_LIMIT_PER_ACCOUNT="3 per 15 minutes",
        # fresh_address() is in 10/8: those peers are the load balancer.
        TRUSTED_PROXY_CIDRS="10.0.0.0/8",
        SIGNIN_LIMIT_PER_DEVICE="2 per 15 minutes",
    )


def attempt(client, email, password, address, *, as_json=False):
    body = {"json": {"email": email, "password": password}}
    if not as_json:
        body = {"data": body["json"]}
    return client.post("/login", **body, headers=BROWSER, environ_base={"REMOTE_ADDR": address})


def owners_browser(app, email):
    """A browser that signed in to `email` once (so holds its device cookie) and signed out."""
    browser = app.test_client()
    assert attempt(browser, email, PASSWORD, fresh_address()).status_code == 302
    browser.post("/logout", headers=BROWSER)
    return browser


def make_account(app, name):
    from diary.accounts import create_user

    email = fresh_email(name)
    with app.app_context():
        create_user(email, PASSWORD)
    return email


def test_failed_sign_ins_lock_the_account_even_from_new_addresses(throttled_app):
    target = make_account(throttled_app, "target")
    bystander = make_account(throttled_app, "bystander")
    client = throttled_app.test_client()

    for _ in range(3):
        assert attempt(client, target, "guess", fresh_address()).status_code == 401
    blocked = attempt(client, target.upper(), PASSWORD, fresh_address())

    assert blocked.status_code == 429
    assert "Too many attempts" in main_text(blocked.text)
    assert "Retry-After" in blocked.headers
    assert client.get("/settings", headers=BROWSER).status_code == 302
    # Another account is not affected.
    assert attempt(client, bystander, PASSWORD, fresh_address()).status_code == 302


def test_an_attacker_rotating_addresses_cannot_lock_the_owner_out(throttled_app):
    owner = make_account(throttled_app, "owner")
    owners = owners_browser(throttled_app, owner)
    attacker = throttled_app.test_client()

    for _ in range(3):
        assert attempt(attacker, owner, "guess", fresh_address()).status_code == 401
    assert attempt(attacker, owner, "guess", fresh_address()).status_code == 429
    # The owner's browser is known to the account: their typo and their sign-in go through.
    assert attempt(owners, owner, "typo", fresh_address()).status_code == 401
    assert attempt(owners, owner, PASSWORD, fresh_address()).status_code == 302
    assert owners.get("/settings", headers=BROWSER).status_code == 200
    # The attacker is still refused, even with the right password.
    assert attempt(attacker, owner, PASSWORD, fresh_address()).status_code == 429


def test_the_owner_is_let_in_from_the_attackers_own_address(throttled_app):
    """A shared address (an office, a carrier's NAT) full of failures does not stop the owner."""
    owner = make_account(throttled_app, "shared-nat")
    owners = owners_browser(throttled_app, owner)
    attacker = throttled_app.test_client()
    shared = fresh_address()

    statuses = [
        attempt(attacker, fresh_email("guess"), "guess", shared).status_code for _ in range(6)
    ]

    assert statuses == [401] * 5 + [429]
    assert attempt(owners, owner, PASSWORD, shared).status_code == 302


def test_a_device_cookie_has_only_its_own_small_allowance(throttled_app):
    owner = make_account(throttled_app, "stolen-cookie")
    thief = owners_browser(throttled_app, owner)

    statuses = [attempt(thief, owner, "guess", fresh_address()).status_code for _ in range(3)]

    assert statuses == [401, 401, 429]
    # Counted against that cookie alone: another browser is still free to try.
    assert attempt(throttled_app.test_client(), owner, PASSWORD, fresh_address()).status_code == (
        302
    )


def test_the_device_cookie_is_signed_for_one_account_and_sent_only_to_sign_in(throttled_app):
    owner = make_account(throttled_app, "cookie-owner")
    other = make_account(throttled_app, "cookie-other")
    browser = throttled_app.test_client()

    response = attempt(browser, other, PASSWORD, fresh_address())

    cookie = next(
        value for value in response.headers.getlist("Set-Cookie") if value.startswith("diary_")
    )
    assert "Path=/login" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Max-Age=31536000" in cookie and other not in cookie
    attacker = throttled_app.test_client()
    for _ in range(3):
        attempt(attacker, owner, "guess", fresh_address())
    # A cookie for another account, or one tampered with, is no key to this account.
    assert attempt(browser, owner, PASSWORD, fresh_address()).status_code == 429
    value = browser.get_cookie("diary_device", path="/login").value
    browser.set_cookie("diary_device", value[:-2] + "xx", path="/login")
    assert attempt(browser, owner, PASSWORD, fresh_address()).status_code == 429


def test_json_sign_ins_count_against_their_own_account(throttled_app):
    """/login takes JSON as well as a form (Flask-WTF reads both); both count per account."""
    target = make_account(throttled_app, "json-target")
    bystander = make_account(throttled_app, "json-bystander")
    client = throttled_app.test_client()

    for _ in range(3):
        assert attempt(client, target, "guess", fresh_address(), as_json=True).status_code == 401

    assert attempt(client, target, "guess", fresh_address(), as_json=True).status_code == 429
    assert attempt(client, target, PASSWORD, fresh_address()).status_code == 429
    fresh = throttled_app.test_client()
    assert attempt(fresh, bystander, PASSWORD, fresh_address(), as_json=True).status_code == 302


def test_form_failures_count_for_json_sign_ins_too(throttled_app):
    target = make_account(throttled_app, "form-then-json")
    client = throttled_app.test_client()

    for _ in range(3):
        assert attempt(client, target, "guess", fresh_address()).status_code == 401

    assert attempt(client, target, PASSWORD, fresh_address(), as_json=True).status_code == 429


def test_failed_sign_ins_lock_out_the_address_across_accounts(throttled_app):
    client = throttled_app.test_client()
    address = fresh_address()

    statuses = [
        attempt(client, fresh_email("guess"), "guess", address).status_code for _ in range(6)
    ]

    assert statuses == [401] * 5 + [429]
    assert attempt(client, fresh_email("other"), "x", fresh_address()).status_code == 401


def test_the_throttle_page_is_in_japanese_for_japanese_browsers(throttled_app):
    client = throttled_app.test_client()
    address = fresh_address()
    for _ in range(5):
        attempt(client, fresh_email("guess"), "guess", address)

    blocked = client.post(
        "/login",
        data={"email": fresh_email("x"), "password": "guess"},
        headers={**BROWSER, "Accept-Language": "ja"},
        environ_base={"REMOTE_ADDR": address},
    )

    assert blocked.status_code == 429
    assert "試行回数が多すぎます" in main_text(blocked.text)


def test_successful_sign_ins_are_not_counted(throttled_app):
    email = make_account(throttled_app, "regular")
    client = throttled_app.test_client()
    address = fresh_address()

    for _ in range(8):
        assert attempt(client, email, PASSWORD, address).status_code == 302
        client.post("/logout", headers=BROWSER, environ_base={"REMOTE_ADDR": address})


def test_the_throttle_uses_the_address_forwarded_by_the_one_proxy(throttled_app):
    # fresh_address() is in the fixture's TRUSTED_PROXY_CIDRS; tests/test_proxies.py has
    # the peers whose X-Forwarded-For is ignored.
    client = throttled_app.test_client()
    proxy = fresh_address()

    def via_proxy(client_address):
        return client.post(
            "/login",
            data={"email": fresh_email("someone"), "password": "guess"},
            headers={**BROWSER, "X-Forwarded-For": client_address},
            environ_base={"REMOTE_ADDR": proxy},
        ).status_code

    # Ten clients behind one load balancer each have their own count.
    assert [via_proxy(fresh_address()) for _ in range(10)] == [401] * 10
    one_client = fresh_address()
    assert [via_proxy(one_client) for _ in range(6)] == [401] * 5 + [429]


def test_with_redis_the_counts_live_in_redis_where_every_instance_sees_them(app_with):
    import redis

    url = redis_url()
    client = app_with(RATELIMIT_STORAGE_URI=url).test_client()
    email = fresh_email("shared")

    assert attempt(client, email, "guess", fresh_address()).status_code == 401

    with redis.Redis.from_url(url) as server:
        keys = [key.decode() for key in server.scan_iter(match=f"*{email}*")]
    assert len(keys) == 1 and "signin-account" in keys[0]


# --- sign-up throttling -------------------------------------------------------


def sign_up(app, address, *, email=None, headers=BROWSER):
    return app.test_client().post(
        "/signup",
        data={"email": email or fresh_email("new"), "password": PASSWORD, "confirm": PASSWORD},
        headers=headers,
        environ_base={"REMOTE_ADDR": address},
    )


def test_sign_ups_from_one_address_are_throttled(app_with):
    signup_app = app_with(ALLOW_SIGNUP=True, SIGNUP_LIMIT_PER_ADDRESS="3 per hour")
    address = fresh_address()
    taken = make_account(signup_app, "taken")
    # Failures count too: they are how an address finds out which emails have accounts.
    assert sign_up(signup_app, address, email=taken).status_code == 400
    assert sign_up(signup_app, address).status_code == 302
    assert sign_up(signup_app, address).status_code == 302

    page_response = sign_up(signup_app, address)
    api_response = sign_up(signup_app, address, headers={"Accept": "application/json"})

    assert page_response.status_code == 429
    assert page_response.mimetype == "text/html"
    assert "Too many attempts" in main_text(page_response.text)
    assert int(page_response.headers["Retry-After"]) > 0
    assert api_response.status_code == 429
    assert api_response.mimetype == "application/problem+json"
    problem = api_response.get_json()
    assert problem["status"] == 429 and "Too many sign-up attempts" in problem["detail"]
    assert int(api_response.headers["Retry-After"]) > 0
    assert sign_up(signup_app, fresh_address()).status_code == 302


def test_sign_ups_are_throttled_site_wide(app_with):
    signup_app = app_with(ALLOW_SIGNUP=True, SIGNUP_LIMIT_GLOBAL="5 per hour")
    statuses = [sign_up(signup_app, fresh_address()).status_code for _ in range(6)]

    assert statuses == [302] * 5 + [429]
    with signup_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 5


def test_a_disabled_sign_up_is_not_counted(app_with):
    app = app_with(ALLOW_SIGNUP=False, SIGNUP_LIMIT_PER_ADDRESS="1 per hour")
    address = fresh_address()

    assert [sign_up(app, address).status_code for _ in range(3)] == [404] * 3


# --- security headers --------------------------------------------------------


def test_pages_carry_a_strict_content_security_policy_and_friends(app, client, user):
    sign_in(client, user.email)
    response = client.get("/", headers=BROWSER)

    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'self'"
    assert policy["img-src"].split()[:2] == ["'self'", "blob:"]
    if app.config["BUCKET"]:
        assert app.config["S3_ENDPOINT_URL"] in policy["img-src"].split()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers


def test_the_pages_have_no_inline_script_or_style(client, user):
    sign_in(client, user.email)
    write(client, "hello")

    for path in ("/", "/write", "/trash", "/settings", "/settings/tokens", "/entries/1/edit"):
        html = page(client, path)
        assert "<script>" not in html and " style=" not in html and "<style" not in html
        assert "http://" not in html.split("<main")[0] and "https://" not in html.split("<main")[0]


def test_hsts_only_when_the_request_came_over_https(app_with):
    # The test client connects from 127.0.0.1: trusted here as the proxy would be.
    client = app_with(TRUSTED_PROXY_CIDRS="127.0.0.1/32").test_client()
    plain = client.get("/login", headers=BROWSER)
    proxied = client.get("/login", headers={**BROWSER, "X-Forwarded-Proto": "https"})

    assert "Strict-Transport-Security" not in plain.headers
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, []),
        (
            {"BUCKET": "diary-photos", "AWS_REGION": "ap-northeast-1"},
            [
                "https://diary-photos.s3.ap-northeast-1.amazonaws.com",
                "https://diary-photos.s3.amazonaws.com",
            ],
        ),
        (
            {"BUCKET": "my.photos", "AWS_REGION": "eu-west-1"},
            ["https://s3.eu-west-1.amazonaws.com"],
        ),
        ({"BUCKET": "b", "S3_ENDPOINT_URL": "http://127.0.0.1:9000/"}, ["http://127.0.0.1:9000"]),
    ],
)
def test_images_are_allowed_from_the_buckets_origin_only(config, expected):
    assert bucket_origins(config) == expected


# --- configuration -----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DEFAULT_TIMEZONE": "Tokyo"}, "DEFAULT_TIMEZONE"),
        ({"ALLOW_SIGNUP": "maybe"}, "ALLOW_SIGNUP"),
        ({"RATELIMIT_STORAGE_URI": "ftp://x"}, "RATELIMIT_STORAGE_URI"),
        ({"SESSION_COOKIE_SECURE": "sometimes"}, "SESSION_COOKIE_SECURE"),
    ],
)
def test_bad_page_settings_stop_the_app_naming_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        from_env(env)


def test_an_unknown_default_time_zone_in_the_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="DEFAULT_TIMEZONE"):
        create_app(
            {
                "TESTING": True,
                "DEFAULT_TIMEZONE": "Nowhere/Special",
                "LOCAL_STORAGE_DIR": str(tmp_path),
            }
        )


def test_page_settings_from_the_environment():
    config = from_env(
        {
            "ALLOW_SIGNUP": "true",
            "DEFAULT_TIMEZONE": "Europe/Berlin",
            "RATELIMIT_STORAGE_URI": "redis://cache:6379/0",
        }
    )

    assert config["ALLOW_SIGNUP"] is True
    assert config["DEFAULT_TIMEZONE"] == "Europe/Berlin"
    assert config["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/0"
