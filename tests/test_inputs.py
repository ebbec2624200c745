"""Bad input gets a clear problem and leaves nothing behind: no row, no object."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from .conftest import image_bytes, row_counts, stored_keys

NOTHING_WRITTEN = {"entries": 0, "images": 0}
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
# Ids are INTEGER columns: PostgreSQL failed on these instead of finding nothing.
IDS_PAST_THE_COLUMN = [2**31, 10**30]


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
    # Python's json reads a lone surrogate; neither UTF-8 nor PostgreSQL has one.
    pytest.param(
        lambda: {"data": b'{"text": "\\ud800 half a pair"}', "content_type": "application/json"},
        400,
        id="lone-surrogate",
    ),
    pytest.param(
        lambda: {"data": DEEP_JSON, "content_type": "application/json"}, 400, id="json-100k-deep"
    ),
    # Content without a file name used to be dropped: a 201 without the photo.
    pytest.param(
        lambda: {"data": {"text": "x", "file": (io.BytesIO(image_bytes()), "")}},
        400,
        id="file-without-name",
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


def assert_problem(response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.mimetype == "application/problem+json"
    if message is not None:
        assert message in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b'{"text": "\\ud800"}', "lone surrogate", id="lone-surrogate"),
        pytest.param(DEEP_JSON, "nested too deeply", id="json-100k-deep"),
    ],
)
def test_patch_with_text_no_database_holds_keeps_the_old_text(client, auth, body, message):
    entry = client.post("/api/v1/entries", json={"text": "kept"}, headers=auth).get_json()

    response = client.patch(
        f"/api/v1/entries/{entry['id']}",
        data=body,
        content_type="application/json",
        headers=auth,
    )

    assert_problem(response, 400, message)
    assert client.get(f"/api/v1/entries/{entry['id']}", headers=auth).get_json()["text"] == "kept"


@pytest.mark.parametrize("entry_id", IDS_PAST_THE_COLUMN)
@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_an_entry_id_past_the_column_is_not_found(client, auth, method, entry_id):
    response = getattr(client, method)(
        f"/api/v1/entries/{entry_id}", json={"text": "x"}, headers=auth
    )

    assert_problem(response, 404, "No such entry.")


def encoded_cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Cursors this app never hands out: each was a 500 (an overflow in int(), in
# the query or in the conversion to UTC) or read entries from the year 1.
BAD_CURSORS = [
    pytest.param(b'["2024-01-01T00:00:00+00:00", Infinity]', id="id-infinity"),
    pytest.param(b'["2024-01-01T00:00:00+00:00", 1000000000000000000000000000000]', id="id-1e30"),
    pytest.param(b'["2024-01-01T00:00:00+00:00", 2147483648]', id="id-past-int32"),
    pytest.param(b'["2024-01-01T00:00:00+00:00", 1.5]', id="id-not-whole"),
    pytest.param(b'["0001-01-01T00:00:00+14:00", 1]', id="year-1-east-of-utc"),
    pytest.param(b'["9999-12-31T23:59:59-14:00", 1]', id="year-9999-west-of-utc"),
    pytest.param(b'["1066-10-14T09:00:00+00:00", 1]', id="before-any-diary"),
    pytest.param(b"[" * 5_000 + b"]" * 5_000, id="nested-5000-deep"),
]


@pytest.mark.parametrize("raw", BAD_CURSORS)
def test_a_cursor_the_app_never_made_is_a_400(client, auth, raw):
    response = client.get(f"/api/v1/entries?cursor={encoded_cursor(raw)}", headers=auth)

    assert_problem(response, 400, "The cursor is not valid")


@pytest.mark.parametrize(
    "limit",
    [pytest.param("%C2%B2", id="superscript-two"), pytest.param("9" * 5000, id="5000-digits")],
)
def test_a_limit_that_is_not_a_plain_number_is_a_400(client, auth, limit):
    # "²".isdigit() is True but int("²") fails; int() refuses more than 4300 digits.
    response = client.get(f"/api/v1/entries?limit={limit}", headers=auth)

    assert_problem(response, 400, "limit must be a whole number")


def stored_filenames(client, auth) -> list[str]:
    items = client.get("/api/v1/entries", headers=auth).get_json()["items"]
    return [image["original_filename"] for item in items for image in item["images"]]


@pytest.mark.parametrize("path", ["/api/v1/entries", "/"])
def test_control_characters_are_stripped_from_a_photo_filename(client, auth, path):
    # The name is only a label (the photo is stored under our own key), so
    # what nobody typed is removed rather than the photo refused.
    response = client.post(
        path,
        data={"text": "x", "file": (io.BytesIO(image_bytes()), "din\x00ner\x1b.jpg")},
        headers=auth,
    )

    assert response.status_code in (200, 201), response.text
    assert stored_filenames(client, auth) == ["dinner.jpg"]


@pytest.mark.parametrize("path", ["/api/v1/entries", "/"])
def test_a_file_part_without_a_name_is_refused_but_no_file_chosen_is_no_photo(
    app, client, auth, path
):
    nameless = client.post(
        path, data={"text": "x", "file": (io.BytesIO(image_bytes()), "")}, headers=auth
    )
    assert_problem(nameless, 400, "without a file name")
    assert entry_rows(app) == NOTHING_WRITTEN
    assert stored_keys(app) == set()

    # What a browser sends for a file input left empty: no name, no content.
    no_file = client.post(path, data={"text": "x", "file": (io.BytesIO(b""), "")}, headers=auth)
    assert no_file.status_code in (200, 201), no_file.text
    assert entry_rows(app) == {"entries": 1, "images": 0}


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("{user}/a%00b/original.jpg", id="nul"),
        pytest.param("{user}/..%2F..%2F..%2Fetc%2Fpasswd", id="leaves-the-folder"),
        pytest.param("%C2%B2/x/original.jpg", id="superscript-owner"),
        pytest.param("9" * 5000 + "/x/original.jpg", id="5000-digit-owner"),
    ],
)
def test_a_media_key_no_photo_can_have_is_not_found(client, auth, user, key):
    response = client.get(f"/media/{key.format(user=user.id)}", headers=auth)

    assert_problem(response, 404)


# --- imports: every record checked before anything is written --------------


def zip_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def export_zip(*entries: dict, photos: dict[str, bytes] | None = None) -> bytes:
    document = {"format": "diary-export", "version": 1, "entries": list(entries)}
    return zip_with({"entries.json": json.dumps(document).encode(), **(photos or {})})


def import_file(client, auth, data: bytes, name: str = "export.zip"):
    return client.post(
        "/api/v1/import",
        data={"file": (io.BytesIO(data), name)},
        headers=auth,
        content_type="multipart/form-data",
    )


FINE = {"created_at": "2020-01-01T00:00:00Z", "text": "fine"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # astimezone(UTC) underflows: there is no UTC time for it.
        pytest.param(
            export_zip(FINE, {**FINE, "created_at": "0001-01-01T00:00:00+14:00"}),
            "entry 2: created_at is out of range: '0001-01-01T00:00:00+14:00'"
            " (a date from 1900 to today).",
            id="year-1-east-of-utc",
        ),
        pytest.param(
            export_zip(FINE, {**FINE, "created_at": "9999-12-31T23:59:59-14:00"}),
            "entry 2: created_at",
            id="year-9999-west-of-utc",
        ),
        pytest.param(
            export_zip(FINE, {**FINE, "created_at": "2999-01-01T00:00:00Z"}),
            "entry 2: created_at is out of range: '2999-01-01T00:00:00Z'",
            id="far-future",
        ),
        pytest.param(
            export_zip(FINE, {**FINE, "created_at": "1850-01-01T00:00:00Z"}),
            "entry 2: created_at",
            id="before-1900",
        ),
        pytest.param(
            export_zip(FINE, {**FINE, "updated_at": "0001-01-01T00:00:00+14:00"}),
            "entry 2: updated_at",
            id="updated-at-year-1",
        ),
        pytest.param(
            export_zip(FINE, {**FINE, "text": "\ud800"}),
            "entry 2: The text contains a lone surrogate",
            id="text-lone-surrogate",
        ),
        pytest.param(
            zip_with(
                {"entries.json": b'{"format": "diary-export", "entries": ' + DEEP_JSON + b"}"}
            ),
            "nested too deeply",
            id="json-file-100k-deep",
        ),
    ],
)
def test_an_import_with_a_record_no_database_holds_imports_nothing(
    app, client, auth, data, message
):
    response = import_file(client, auth, data)

    assert_problem(response, 400, message)
    assert entry_rows(app) == NOTHING_WRITTEN


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="original-service-100k-deep"),
        pytest.param(
            b'[{"ID": 1, "CreatedAt": "0001-01-01T00:00:00+14:00", "Text": "x"}]',
            id="original-service-year-1",
        ),
        pytest.param(
            b'{"metadata": {}, "entries": [{"creationDate": "0001-01-01T00:00:00+14:00",'
            b' "text": "x"}]}',
            id="day-one-year-1",
        ),
        # The refusal names the record by its uuid: a lone surrogate failed the response.
        pytest.param(
            b'{"metadata": {}, "entries": [{"uuid": "\\ud800", "creationDate": "x", "text": "x"}]}',
            id="day-one-uuid-lone-surrogate",
        ),
    ],
)
def test_a_json_import_no_database_holds_imports_nothing(app, client, auth, document):
    response = import_file(client, auth, document, "data.json")

    assert_problem(response, 400)
    assert "\ud800" not in response.get_json()["detail"]
    assert entry_rows(app) == NOTHING_WRITTEN


def test_an_imported_photo_keeps_its_name_without_control_characters(app, client, auth):
    photo = {"path": "photos/1.jpg", "original_filename": "din\x00ner.jpg"}
    data = export_zip({**FINE, "photos": [photo]}, photos={"photos/1.jpg": image_bytes()})

    response = import_file(client, auth, data)

    assert response.status_code == 200, response.text
    assert stored_filenames(client, auth) == ["dinner.jpg"]
