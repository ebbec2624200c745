"""The original Go service's contract at `/`: its clients must keep working."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image as PILImage

from diary.web import legacy

from .conftest import image_bytes, stored_keys

LEGACY_KEYS = ["ID", "CreatedAt", "UpdatedAt", "DeletedAt", "Text", "Img"]


def test_post_returns_exactly_the_original_keys(client, auth):
    response = client.post("/", data={"text": "今日は朝からランニングをした"}, headers=auth)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == LEGACY_KEYS
    assert body["Text"] == "今日は朝からランニングをした"
    assert body["Img"] == ""
    assert body["DeletedAt"] is None
    assert body["CreatedAt"].endswith("Z")


def test_post_with_a_file_returns_the_stored_key_not_the_filename(app, client, auth, jpeg):
    response = client.post(
        "/", data={"text": "dinner", "file": (io.BytesIO(jpeg), "dinner.jpg")}, headers=auth
    )

    key = response.get_json()["Img"]
    assert key != "dinner.jpg"
    assert key in stored_keys(app)


def test_two_uploads_with_the_same_name_are_two_intact_images(app, client, auth):
    red, blue = image_bytes(color="red"), image_bytes(color="blue")
    first = client.post(
        "/", data={"text": "1", "file": (io.BytesIO(red), "dinner.jpg")}, headers=auth
    )
    second = client.post(
        "/", data={"text": "2", "file": (io.BytesIO(blue), "dinner.jpg")}, headers=auth
    )

    keys = first.get_json()["Img"], second.get_json()["Img"]
    assert keys[0] != keys[1]
    with app.app_context():
        from diary.infra.storage import current_storage

        colours = [
            PILImage.open(io.BytesIO(current_storage().get(key))).convert("RGB").getpixel((1, 1))
            for key in keys
        ]
    assert colours[0][0] > 200 and colours[0][2] < 50  # still red
    assert colours[1][2] > 200 and colours[1][0] < 50  # still blue


def test_get_lists_the_callers_entries_oldest_first(client, auth, make_user, make_token):
    for text in ("one", "two", "three"):
        client.post("/", data={"text": text}, headers=auth)
    stranger = {"Authorization": f"Bearer {make_token(make_user())}"}
    client.post("/", data={"text": "not yours"}, headers=stranger)

    response = client.get("/", headers=auth)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert [row["Text"] for row in body] == ["one", "two", "three"]
    assert all(list(row) == LEGACY_KEYS for row in body)


def test_get_is_streamed_in_bounded_pieces_not_built_in_memory(client, auth, monkeypatch):
    monkeypatch.setattr(legacy, "STREAM_CHUNK_CHARS", 200)
    for n in range(10):
        client.post("/", data={"text": f"entry {n}"}, headers=auth)

    response = client.get("/", headers=auth)

    assert response.is_streamed
    chunks = [c if isinstance(c, bytes) else c.encode() for c in response.response]
    assert 3 < len(chunks) < 10  # several pieces, but rows grouped, not one write each
    # A piece closes as soon as it reaches the size, so none exceeds it by more than a row.
    longest_row = max(len(json.dumps(item)) for item in json.loads(b"".join(chunks)))
    assert all(len(chunk) < 200 + longest_row + 2 for chunk in chunks)
    assert len(json.loads(b"".join(chunks))) == 10


def test_a_diary_that_fits_one_piece_is_one_ordinary_response(client, auth):
    for n in range(3):
        client.post("/", data={"text": f"entry {n}"}, headers=auth)

    response = client.get("/", headers=auth)

    # A Content-Length, not a chunked stream whose length is unknown at the start.
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert [row["Text"] for row in response.get_json()] == ["entry 0", "entry 1", "entry 2"]


def test_get_of_an_empty_diary_is_an_empty_array(client, auth):
    assert client.get("/", headers=auth).get_json() == []


def test_trashed_entries_are_not_listed(client, auth):
    entry_id = client.post("/", data={"text": "gone"}, headers=auth).get_json()["ID"]
    client.delete(f"/api/v1/entries/{entry_id}", headers=auth)

    assert client.get("/", headers=auth).get_json() == []


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("*/*", "application/json"),  # curl's default
        ("application/json", "application/json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
    ],
)
def test_content_negotiation_at_root(client, auth, accept, expected):
    response = client.get("/", headers={**auth, "Accept": accept})

    if expected == "text/html":
        # A browser without a session is sent to sign in, not given JSON.
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]
    else:
        assert response.status_code == 200
        assert response.mimetype == expected


def test_the_contract_needs_a_token(client):
    for response in (client.get("/"), client.post("/", data={"text": "x"})):
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def seed_entries(app, user, count: int) -> None:
    """Bulk rows straight into the table: this test is about reading them back."""
    from datetime import UTC, datetime, timedelta

    from diary.extensions import db
    from diary.models import Entry

    start = datetime(2020, 1, 1, tzinfo=UTC)
    with app.app_context():
        db.session.execute(
            db.insert(Entry),
            [
                {
                    "user_id": user.id,
                    "text": f"entry {n} " + "日記" * 100,
                    "created_at": start + timedelta(minutes=n),
                    "updated_at": start + timedelta(minutes=n),
                }
                for n in range(count)
            ],
        )
        db.session.commit()


def streamed_peak(client, auth) -> tuple[int, int]:
    """(rows, peak bytes allocated) while consuming GET / chunk by chunk."""
    import tracemalloc

    tracemalloc.start()
    try:
        rows = 0
        with client.get("/", headers=auth) as response:
            for chunk in response.response:
                rows += chunk.count(b'"ID"') if isinstance(chunk, bytes) else chunk.count('"ID"')
        return rows, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_get_memory_stays_flat_however_many_entries(app, client, auth, user):
    seed_entries(app, user, 1_000)
    small_rows, small_peak = streamed_peak(client, auth)
    seed_entries(app, user, 9_000)
    large_rows, large_peak = streamed_peak(client, auth)

    assert (small_rows, large_rows) == (1_000, 10_000)
    # Ten times the rows must not cost anything like ten times the memory:
    # rows are fetched in batches and written out as they come.
    assert large_peak < small_peak * 2


def test_get_reads_a_statement_per_batch_of_500_not_per_entry(app, client, auth, user):
    from .conftest import count_statements

    seed_entries(app, user, 10)
    client.get("/", headers=auth)  # the token's first use also records last_used_at
    with count_statements(app) as few:
        client.get("/", headers=auth).get_data()
    seed_entries(app, user, 990)
    with count_statements(app) as many:
        assert len(client.get("/", headers=auth).get_json()) == 1000

    # 1000 entries: two full batches and the empty read that ends them.
    assert len(many) == len(few) + 2
