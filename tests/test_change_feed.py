"""Change notices and the token cache (issue 7): no database round trip for a token
checked a moment ago, yet never past a change or a revocation the feed has heard of.

The app fixtures never start the listener, so everywhere else in the suite every
request reads its token from the database. Here it is started on PostgreSQL, and
on both backends a feed is made to listen by hand (no thread, no notices) to
show what the worker's own writes do without any notice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from diary.accounts import TokenOwner
from diary.change_feed import APPLICATION_NAME, CHANNEL, STALE_AFTER, ChangeFeed
from diary.extensions import db
from diary.token_cache import TokenCache

from .conftest import count_statements, token_for_new_user
from .pages_support import BROWSER, sign_in
from .test_page_cache import PAGE, post, run_sql, texts

# Notices arrive in milliseconds; this only bounds a failing test.
NOTICE_DEADLINE = 5.0


def feed_of(app: Flask) -> ChangeFeed:
    return app.extensions["diary.change_feed"]


def eventually(condition: Callable[[], bool], deadline: float = NOTICE_DEADLINE) -> float:
    """Seconds until `condition` held; fails the test if it did not within `deadline`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < deadline, "the condition never held"
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def listening(postgres_app: Callable[..., Flask]) -> Iterator[Callable[..., Flask]]:
    """Apps on PostgreSQL whose change feed listens in a thread, as in a gunicorn worker."""
    started: list[Flask] = []

    def build(**overrides: object) -> Flask:
        # A long token lifetime: only a notice can explain a refreshed token.
        built = postgres_app(API_TOKEN_CACHE_SECONDS=60, **overrides)
        with built.app_context():
            feed_of(built).start(db.engine)
        eventually(lambda: feed_of(built).live)
        started.append(built)
        return built

    yield build
    for built in started:
        feed_of(built).stop()


def statements_for_page(app: Flask, client: FlaskClient, auth: dict[str, str]) -> list[str]:
    with count_statements(app) as statements:
        assert client.get(PAGE, headers=auth).status_code == 200
    return statements


# --- with the listener, on PostgreSQL ----------------------------------------


def test_a_page_asked_for_again_touches_no_database(listening):
    app = listening()
    client, auth = app.test_client(), token_for_new_user(app)
    post(client, auth, "first")
    texts(client, auth)

    assert statements_for_page(app, client, auth) == []


def test_a_change_made_elsewhere_is_seen_once_its_notice_arrives(listening, postgres_app):
    reader_app, writer_app = listening(), postgres_app()
    auth = token_for_new_user(reader_app)
    reader, writer = reader_app.test_client(), writer_app.test_client()
    post(reader, auth, "one")
    assert texts(reader, auth) == ["one"]
    assert texts(reader, auth) == ["one"]  # from the caches now

    post(writer, auth, "two")

    waited = eventually(lambda: texts(reader, auth) == ["two", "one"])
    assert waited < 1.0, f"the notice took {waited:.2f} s"


@pytest.mark.parametrize(
    "revoke",
    [
        "UPDATE api_tokens SET revoked_at = created_at",
        "DELETE FROM api_tokens",
        "DELETE FROM users",  # the tokens go with the account
    ],
)
def test_a_token_revoked_elsewhere_is_refused_once_its_notice_arrives(listening, revoke):
    app = listening()
    client, auth = app.test_client(), token_for_new_user(app)
    post(client, auth, "private")
    texts(client, auth)
    assert statements_for_page(app, client, auth) == []

    run_sql(app, revoke)

    eventually(lambda: client.get(PAGE, headers=auth).status_code == 401)
    refused = client.get(PAGE, headers=auth)
    assert refused.mimetype == "application/problem+json"


def test_recording_when_a_token_was_last_used_sends_no_notice(listening):
    app = listening()
    client, auth = app.test_client(), token_for_new_user(app)
    texts(client, auth)

    run_sql(app, "UPDATE api_tokens SET last_used_at = NULL")
    time.sleep(0.3)  # what a notice would take, many times over

    assert statements_for_page(app, client, auth) == []


def test_when_the_listener_loses_its_connection_requests_read_the_database_until_it_is_back(
    listening,
):
    app = listening()
    feed = feed_of(app)
    client, auth = app.test_client(), token_for_new_user(app)
    texts(client, auth)
    assert statements_for_page(app, client, auth) == []

    run_sql(
        app,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = :name AND datname = current_database()",
        name=APPLICATION_NAME,
    )
    eventually(lambda: not feed.live)

    assert len(statements_for_page(app, client, auth)) == 1  # the token, from the database
    eventually(lambda: feed.live)  # it reconnects by itself
    texts(client, auth)
    assert statements_for_page(app, client, auth) == []


def test_the_triggers_name_the_owner_of_each_change(postgres_app):
    app = postgres_app()
    client, auth = app.test_client(), token_for_new_user(app)
    entry_id = post(client, auth, "to be noticed")
    with app.app_context():
        user_id = db.session.scalar(sa.text("SELECT id FROM users"))
        url = db.engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        client.patch(f"/api/v1/entries/{entry_id}", json={"text": "edited"}, headers=auth)
        run_sql(app, "UPDATE api_tokens SET last_used_at = NULL")  # no notice
        run_sql(app, "UPDATE api_tokens SET revoked_at = created_at")

        heard = [notice.payload for notice in listener.notifies(timeout=1.0)]

    assert heard == [str(user_id), str(user_id)]


# --- without any notice: the worker's own writes, on both backends -------------


@pytest.fixture
def feed_without_listener(app: Flask) -> ChangeFeed:
    """The app's feed marked as listening, with no thread: no notice will ever come."""
    feed = feed_of(app)
    feed.listening()
    feed._clock = lambda: feed._heartbeat  # never goes stale
    return feed


def test_this_workers_own_write_is_seen_by_its_next_request(
    app, client, auth, feed_without_listener
):
    entry_id = post(client, auth, "before")
    texts(client, auth)
    assert statements_for_page(app, client, auth) == []

    client.patch(f"/api/v1/entries/{entry_id}", json={"text": "after"}, headers=auth)

    assert texts(client, auth) == ["after"]


def test_a_revocation_on_the_account_page_is_refused_by_the_next_request(
    app, client, auth, user, feed_without_listener
):
    texts(client, auth)
    browser = app.test_client()
    sign_in(browser, user.email)
    with app.app_context():
        token_id = db.session.scalar(sa.text("SELECT id FROM api_tokens"))

    revoked = browser.post(f"/settings/tokens/{token_id}/revoke", headers=BROWSER)

    assert revoked.status_code in (302, 303)
    assert client.get(PAGE, headers=auth).status_code == 401


def test_unknown_tokens_are_never_kept(app, client, feed_without_listener):
    for guess in range(20):
        client.get(PAGE, headers={"Authorization": f"Bearer guess-{guess}"})

    assert len(app.extensions["diary.token_cache"]) == 0


def test_with_the_token_cache_off_every_request_reads_its_token(app_with, make_user, make_token):
    app = app_with(API_TOKEN_CACHE_SECONDS=0)
    feed_of(app).listening()
    client = app.test_client()
    auth = {"Authorization": f"Bearer {make_token(make_user('off@example.com'))}"}
    texts(client, auth)

    assert len(statements_for_page(app, client, auth)) == 1


# --- the feed and the cache themselves ---------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


OWNER = TokenOwner(id=7, timeline_version=3)


def listening_feed(clock: Clock) -> ChangeFeed:
    feed = ChangeFeed(clock=clock)
    feed.listening()
    return feed


def test_a_feed_that_is_not_listening_gives_no_mark():
    assert ChangeFeed().mark() is None


def test_a_notice_for_the_owner_voids_what_was_read_before_it_and_no_other():
    clock = Clock()
    feed = listening_feed(clock)
    mark = feed.mark()

    feed.changed(8)
    assert feed.unchanged_since(mark, 7)
    feed.changed(7)
    assert not feed.unchanged_since(mark, 7)
    assert feed.unchanged_since(feed.mark(), 7)  # read after the notice: good


@pytest.mark.parametrize(
    "event",
    [
        lambda feed, clock: feed.lost(),
        lambda feed, clock: feed.everything_changed(),
        lambda feed, clock: feed._take("not a user id"),
        lambda feed, clock: feed.listening(),  # reconnected: notices may have been missed
        lambda feed, clock: setattr(clock, "now", clock.now + STALE_AFTER),  # no ping answered
    ],
)
def test_what_may_have_missed_notices_voids_every_mark(event):
    clock = Clock()
    feed = listening_feed(clock)
    mark = feed.mark()

    event(feed, clock)

    assert not feed.unchanged_since(mark, 7)


def test_a_token_is_trusted_for_its_lifetime_at_most():
    clock = Clock()
    tokens = TokenCache(listening_feed(clock), ttl=5, clock=clock)
    tokens.put("hash", OWNER, tokens.mark())

    clock.now += 4.9
    tokens.feed.beat()
    assert tokens.get("hash") == OWNER
    clock.now += 0.1
    assert tokens.get("hash") is None
    assert len(tokens) == 0


def test_the_least_recently_used_token_makes_way():
    clock = Clock()
    tokens = TokenCache(listening_feed(clock), ttl=5, max_tokens=2, clock=clock)
    for name in ("a", "b"):
        tokens.put(name, OWNER, tokens.mark())
    assert tokens.get("a") == OWNER

    tokens.put("c", OWNER, tokens.mark())

    assert tokens.get("b") is None
    assert tokens.get("a") == OWNER
    assert tokens.get("c") == OWNER
