"""The API page cache (issue 7): fast when nothing changed, never stale, never past a revocation.

A cached page is kept under its owner's timeline_version, which database
triggers raise on every change to entries and photos (migration 0005). These
apps never start the change feed, so the token check reads the version from
the database on every request; tests/test_change_feed.py covers the feed.
"""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from diary.extensions import db
from diary.models import User
from diary.page_cache import PageCache

from .conftest import count_statements
from .pages_support import BROWSER, sign_in

PAGE = "/api/v1/entries?limit=20"


def texts(client: FlaskClient, auth: dict[str, str]) -> list[str]:
    answer = client.get(PAGE, headers=auth)
    assert answer.status_code == 200, answer.get_json()
    return [item["text"] for item in answer.get_json()["items"]]


def post(client: FlaskClient, auth: dict[str, str], text: str) -> int:
    answer = client.post("/api/v1/entries", json={"text": text}, headers=auth)
    assert answer.status_code == 201
    return answer.get_json()["id"]


def run_sql(app: Flask, statement: str, **params: object) -> None:
    with app.app_context():
        db.session.execute(sa.text(statement), params)
        db.session.commit()


def timeline_version(app: Flask, user: User) -> int:
    with app.app_context():
        return db.session.get(User, user.id).timeline_version


def test_an_unchanged_page_is_served_again_after_only_the_token_check(app, client, auth):
    post(client, auth, "first")
    first = client.get(PAGE, headers=auth)

    with count_statements(app) as statements:
        again = client.get(PAGE, headers=auth)

    assert again.status_code == 200
    assert again.data == first.data
    assert again.mimetype == "application/json"
    assert len(statements) == 1, statements  # the token and its owner's timeline_version


def write_through_api(app, client, auth, entry_id, jpeg) -> None:
    post(client, auth, "written")


def photo_through_api(app, client, auth, entry_id, jpeg) -> None:
    answer = client.post(
        "/api/v1/entries",
        data={"text": "with a photo", "file": [(io.BytesIO(jpeg), "a.jpg")]},
        headers=auth,
    )
    assert answer.status_code == 201


def edit_through_api(app, client, auth, entry_id, jpeg) -> None:
    answer = client.patch(f"/api/v1/entries/{entry_id}", json={"text": "edited"}, headers=auth)
    assert answer.status_code == 200


def trash_through_api(app, client, auth, entry_id, jpeg) -> None:
    assert client.delete(f"/api/v1/entries/{entry_id}", headers=auth).status_code == 204


def edit_with_sql(app, client, auth, entry_id, jpeg) -> None:
    run_sql(app, "UPDATE entries SET text = 'edited' WHERE id = :id", id=entry_id)


def add_photo_row_with_sql(app, client, auth, entry_id, jpeg) -> None:
    run_sql(
        app,
        "INSERT INTO images (entry_id, storage_key, content_type, byte_size, width, height,"
        " original_filename, position, created_at)"
        " VALUES (:id, 'users/x/sql.jpg', 'image/jpeg', 1, 1, 1, 'sql.jpg', 0, CURRENT_TIMESTAMP)",
        id=entry_id,
    )


def delete_with_sql(app, client, auth, entry_id, jpeg) -> None:
    run_sql(app, "DELETE FROM entries WHERE id = :id", id=entry_id)


@pytest.mark.parametrize(
    "change",
    [
        write_through_api,
        photo_through_api,
        edit_through_api,
        trash_through_api,
        # Paths that never pass through the API code: the triggers still see them.
        edit_with_sql,
        add_photo_row_with_sql,
        delete_with_sql,
    ],
)
def test_the_next_request_after_any_change_sees_it(app, client, auth, jpeg, change):
    entry_id = post(client, auth, "original")
    before = client.get(PAGE, headers=auth).data
    assert client.get(PAGE, headers=auth).data == before  # cached now

    change(app, client, auth, entry_id, jpeg)

    assert client.get(PAGE, headers=auth).data != before


def test_restoring_from_trash_on_the_pages_is_seen_by_the_api(app, client, auth, user):
    entry_id = post(client, auth, "back again")
    client.delete(f"/api/v1/entries/{entry_id}", headers=auth)
    assert texts(client, auth) == []

    browser = app.test_client()
    sign_in(browser, user.email)
    assert browser.post(f"/trash/{entry_id}/restore", headers=BROWSER).status_code == 302

    assert texts(client, auth) == ["back again"]


def test_a_change_made_through_another_instance_is_seen(app_with, make_user, make_token):
    """Each instance (and worker) has its own cache; the version lives in the database."""
    here, there = app_with(), app_with()
    owner = make_user("shared@example.com")
    auth = {"Authorization": f"Bearer {make_token(owner)}"}
    reader, writer = here.test_client(), there.test_client()
    post(reader, auth, "one")
    assert texts(reader, auth) == ["one"]

    post(writer, auth, "two")

    assert texts(reader, auth) == ["two", "one"]


def test_a_revoked_token_is_refused_although_its_page_is_cached(app, client, auth, user):
    post(client, auth, "private")
    texts(client, auth)
    texts(client, auth)

    run_sql(app, "UPDATE api_tokens SET revoked_at = created_at WHERE user_id = :id", id=user.id)

    answer = client.get(PAGE, headers=auth)
    assert answer.status_code == 401
    assert answer.mimetype == "application/problem+json"


def test_each_page_size_and_cursor_is_kept_apart(app, client, auth):
    for text in ("one", "two", "three"):
        post(client, auth, text)
    for _ in range(2):  # the second round comes from the cache
        assert texts(client, auth) == ["three", "two", "one"]
        first = client.get("/api/v1/entries?limit=1", headers=auth).json
        assert [i["text"] for i in first["items"]] == ["three"]
        second = client.get(
            f"/api/v1/entries?limit=1&cursor={first['next_cursor']}", headers=auth
        ).json
        assert [i["text"] for i in second["items"]] == ["two"]


@pytest.mark.parametrize("query", ["q=ramen", "tag=food"])
def test_search_and_tag_pages_are_read_afresh(app, client, auth, query):
    """They read the search index too, which reindex rebuilds without touching entries."""
    post(client, auth, "ramen #food")
    client.get(f"{PAGE}&{query}", headers=auth)

    with count_statements(app) as statements:
        answer = client.get(f"{PAGE}&{query}", headers=auth)

    assert [item["text"] for item in answer.json["items"]] == ["ramen #food"]
    assert len(statements) == 3  # token, entries, photos


def test_another_users_page_is_never_served(app, client, auth, make_user, make_token):
    post(client, auth, "mine")
    texts(client, auth)
    stranger = {"Authorization": f"Bearer {make_token(make_user('other@example.com'))}"}

    assert texts(client, stranger) == []


def test_pages_expire_before_the_photo_urls_in_them(app, client, auth):
    cache = app.extensions["diary.page_cache"]
    now = [1000.0]
    cache._clock = lambda: now[0]
    post(client, auth, "old urls")
    texts(client, auth)

    now[0] += app.config["API_PAGE_CACHE_SECONDS"]
    with count_statements(app) as statements:
        texts(client, auth)

    assert len(statements) > 1  # read again, with URLs signed afresh


def test_with_no_cache_every_request_reads_the_page(app_with, make_user, make_token):
    app = app_with(API_PAGE_CACHE_MB=0)
    assert app.extensions["diary.page_cache"] is None
    client = app.test_client()
    auth = {"Authorization": f"Bearer {make_token(make_user('nocache@example.com'))}"}
    post(client, auth, "uncached")
    texts(client, auth)

    with count_statements(app) as statements:
        assert texts(client, auth) == ["uncached"]

    assert len(statements) == 3  # token, entries, photos


def test_timeline_version_rises_with_each_write_statement(app, client, auth, user):
    """PostgreSQL raises it once per statement, however many rows; SQLite once per row."""
    for text in ("a", "b", "c"):
        post(client, auth, text)
    before = timeline_version(app, user)

    run_sql(app, "UPDATE entries SET text = text || '!' WHERE user_id = :id", id=user.id)

    risen = timeline_version(app, user) - before
    with app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
    assert risen == (1 if postgres else 3)


def test_a_write_to_one_users_entries_leaves_other_users_versions(app, client, auth, make_user):
    other = make_user("bystander@example.com")
    before = timeline_version(app, other)

    post(client, auth, "not yours")

    assert timeline_version(app, other) == before


# --- the cache itself ------------------------------------------------------


def test_the_least_recently_used_page_makes_way_within_the_byte_budget():
    cache = PageCache(max_bytes=10, ttl=60)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # now b is the least recently used

    cache.put("c", b"cccc")

    assert cache.get("b") is None
    assert cache.get("a") == b"aaaa"
    assert cache.get("c") == b"cccc"
    assert cache.size == 8


def test_a_page_larger_than_the_budget_is_not_kept():
    cache = PageCache(max_bytes=3, ttl=60)
    cache.put("big", b"four")
    assert cache.get("big") is None
    assert cache.size == 0


def test_a_page_is_dropped_after_its_time():
    now = [0.0]
    cache = PageCache(max_bytes=100, ttl=5, clock=lambda: now[0])
    cache.put("page", b"body")
    now[0] = 4.9
    assert cache.get("page") == b"body"
    now[0] = 5.0
    assert cache.get("page") is None
    assert cache.size == 0
