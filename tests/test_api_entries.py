"""The JSON API: write, read, page, edit and trash entries."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
import requests
from flask.testing import FlaskClient

from diary.extensions import db
from diary.models import Entry

from .conftest import count_statements, image_bytes, row_counts, stored_keys


def post_entry(client: FlaskClient, auth: dict[str, str], text: str = "hello", **kw) -> dict:
    response = client.post("/api/v1/entries", json={"text": text}, headers=auth, **kw)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_a_json_entry_is_created_with_location_and_read_back(client, auth):
    response = client.post(
        "/api/v1/entries", json={"text": "今日は朝からランニングをした"}, headers=auth
    )

    assert response.status_code == 201
    entry = response.get_json()
    assert response.headers["Location"] == f"/api/v1/entries/{entry['id']}"
    assert entry["text"] == "今日は朝からランニングをした"
    assert entry["images"] == []
    assert entry["created_at"].endswith("Z")
    assert client.get(response.headers["Location"], headers=auth).get_json() == entry


def test_a_text_entry_goes_in_with_its_words_and_tags_in_one_statement_on_postgresql(
    app, client, auth
):
    """Saving text is the most frequent write: row and index travel together."""
    post_entry(client, auth, "first")  # the token's first use is recorded once, here

    with count_statements(app) as counted:
        entry = post_entry(client, auth, "朝の散歩 #walk")

    writes = [statement for statement in counted if "INSERT" in statement]
    on_postgresql = app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    assert len(writes) == (1 if on_postgresql else 3)  # SQLite: row, terms, tags
    assert len(counted) == len(writes) + 1  # and the token lookup
    for query in ({"q": "散歩"}, {"tag": "walk"}, {"q": "散歩", "tag": "walk"}):
        listed = client.get("/api/v1/entries", query_string=query, headers=auth).get_json()
        assert listed["items"] == [entry], query


def test_a_multipart_entry_stores_every_photo_in_order(app, client, auth):
    response = client.post(
        "/api/v1/entries",
        data={
            "text": "two photos",
            "file": [
                (io.BytesIO(image_bytes("JPEG", (30, 20))), "a.jpg"),
                (io.BytesIO(image_bytes("PNG", (10, 40))), "b.png"),
            ],
        },
        headers=auth,
    )

    assert response.status_code == 201, response.get_json()
    images = response.get_json()["images"]
    assert [
        (i["original_filename"], i["content_type"], i["width"], i["height"]) for i in images
    ] == [
        ("a.jpg", "image/jpeg", 30, 20),
        ("b.png", "image/png", 10, 40),
    ]
    # Each photo is stored as its cleaned original, a display size and a thumbnail.
    assert len(stored_keys(app)) == 6


def test_photo_urls_serve_the_stored_bytes(app, client, auth, jpeg):
    response = client.post(
        "/api/v1/entries", data={"text": "", "file": (io.BytesIO(jpeg), "x.jpg")}, headers=auth
    )
    url = response.get_json()["images"][0]["url"]

    if url.startswith("http"):  # presigned S3 URL, fetched like a browser would
        fetched = requests.get(url, timeout=5)
        assert fetched.status_code == 200
        assert fetched.content == jpeg
    else:  # local storage, served by the app behind the ownership check
        with client.get(url, headers=auth) as fetched:
            assert fetched.status_code == 200
            assert fetched.data == jpeg
            assert "immutable" in fetched.headers["Cache-Control"]


def test_entries_list_newest_first_in_keyset_pages(client, auth):
    created = [post_entry(client, auth, f"entry {n}")["id"] for n in range(5)]

    first = client.get("/api/v1/entries?limit=2", headers=auth).get_json()
    second = client.get(f"/api/v1/entries?limit=2&cursor={first['next_cursor']}", headers=auth)
    third = client.get(
        f"/api/v1/entries?limit=2&cursor={second.get_json()['next_cursor']}", headers=auth
    ).get_json()

    seen = [e["id"] for page in (first, second.get_json(), third) for e in page["items"]]
    assert seen == list(reversed(created))
    assert third["next_cursor"] is None


def test_entries_with_the_same_timestamp_are_paged_without_loss(app, client, auth, user):
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    with app.app_context():
        db.session.add_all(
            Entry(user_id=user.id, text=f"same {n}", created_at=moment) for n in range(5)
        )
        db.session.commit()

    ids, cursor = [], ""
    while True:
        page = client.get(f"/api/v1/entries?limit=2&cursor={cursor}", headers=auth).get_json()
        ids += [e["id"] for e in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert ids == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=abc", "limit=-1", "cursor=%%%", "cursor=bm9wZQ"]
)
def test_bad_paging_parameters_are_a_400_problem(client, auth, query):
    response = client.get(f"/api/v1/entries?{query}", headers=auth)

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["errors"][0]["field"] in ("limit", "cursor")


def test_patch_replaces_the_text_and_moves_updated_at(client, auth):
    entry = post_entry(client, auth, "first draft")

    response = client.patch(f"/api/v1/entries/{entry['id']}", json={"text": "final"}, headers=auth)

    assert response.status_code == 200
    assert response.get_json()["text"] == "final"
    assert response.get_json()["updated_at"] >= entry["updated_at"]


def test_delete_moves_to_trash_and_the_entry_disappears(app, client, auth):
    entry = post_entry(client, auth)

    assert client.delete(f"/api/v1/entries/{entry['id']}", headers=auth).status_code == 204
    assert client.get(f"/api/v1/entries/{entry['id']}", headers=auth).status_code == 404
    assert client.get("/api/v1/entries", headers=auth).get_json()["items"] == []
    assert row_counts(app)["entries"] == 1  # kept for restore from Trash


def test_statements_per_page_do_not_grow_with_entries_or_photos(app, client, auth, user, jpeg):
    """The list must load images with one extra query, never one per entry."""
    for n in range(6):
        client.post(
            "/api/v1/entries",
            data={
                "text": str(n),
                "file": [(io.BytesIO(jpeg), "a.jpg"), (io.BytesIO(jpeg), "b.jpg")],
            },
            headers=auth,
        )

    def statements(limit: int) -> int:
        with count_statements(app) as counted:
            assert client.get(f"/api/v1/entries?limit={limit}", headers=auth).status_code == 200
        return len(counted)

    assert statements(1) == statements(6)
