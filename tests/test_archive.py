"""Export as one streamed ZIP; import it, Day One's export and the original service's data."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient

from diary import archive
from diary.errors import ContentTooLarge
from diary.extensions import db
from diary.infra.storage import current_storage
from diary.models import Image, User

from .conftest import image_bytes, new_bucket, row_counts, stored_keys
from .entries_support import add_entry
from .pages_support import sign_in

START = datetime(2016, 4, 1, 7, 30, 15, 123456, tzinfo=UTC)


def export_bytes(client: FlaskClient, headers: dict[str, str]) -> bytes:
    with client.get("/api/v1/export", headers=headers) as response:
        assert response.status_code == 200, response.text
        assert response.mimetype == "application/zip"
        assert "attachment" in response.headers["Content-Disposition"]
        return response.get_data()


def export_document(data: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive_file:
        return json.loads(archive_file.read("entries.json"))


def comparable(data: bytes) -> list[dict[str, Any]]:
    """What a round trip must keep: times, text, tags, photo bytes and metadata."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive_file:
        document = json.loads(archive_file.read("entries.json"))
        return [
            {
                "created_at": item["created_at"],
                "updated_at": item["updated_at"],
                "text": item["text"],
                "tags": item["tags"],
                "photos": [
                    (
                        archive_file.read(photo["path"]),
                        photo["content_type"],
                        photo["width"],
                        photo["height"],
                        photo["original_filename"],
                    )
                    for photo in item["photos"]
                ],
            }
            for item in document["entries"]
        ]


def import_via_api(client: FlaskClient, headers: dict[str, str], data: bytes, name: str) -> Any:
    return client.post(
        "/api/v1/import",
        data={"file": (io.BytesIO(data), name)},
        headers=headers,
        content_type="multipart/form-data",
    )


@pytest.fixture
def diary_with_photos(app: Flask, user: User) -> list[int]:
    red, blue = image_bytes("JPEG", color="red"), image_bytes("PNG", (30, 20), "blue")
    return [
        add_entry(app, user, "初日の日記 #日記", when=START),
        add_entry(
            app,
            user,
            "Beach day #travel #Summer",
            when=START + timedelta(days=400),
            photos=(red, blue),
        ),
        add_entry(app, user, "", when=START + timedelta(days=800), photos=(red,)),
        add_entry(app, user, "in Trash", when=START, trashed_at=START + timedelta(days=1)),
    ]


def test_the_export_holds_entries_json_markdown_and_the_original_photos(
    app: Flask, client: FlaskClient, auth: dict[str, str], diary_with_photos: list[int]
) -> None:
    data = export_bytes(client, auth)
    with zipfile.ZipFile(io.BytesIO(data)) as exported:
        assert exported.testzip() is None
        document = json.loads(exported.read("entries.json"))
        assert document["format"] == "diary-export"
        assert document["version"] == 1
        entries = document["entries"]
        assert [item["text"] for item in entries] == [
            "初日の日記 #日記",
            "Beach day #travel #Summer",
            "",
        ]
        assert entries[0]["created_at"] == "2016-04-01T07:30:15.123456Z"
        assert entries[1]["tags"] == ["travel", "summer"]
        markdown = exported.read(entries[1]["markdown"]).decode()
        assert markdown.startswith("---\nid: ")
        assert 'tags: ["travel", "summer"]' in markdown
        assert markdown.endswith("---\n\nBeach day #travel #Summer\n")
        photo = entries[1]["photos"][1]
        with app.app_context():
            image = db.session.scalars(
                db.select(Image).where(Image.entry_id == diary_with_photos[1], Image.position == 1)
            ).one()
            assert exported.read(photo["path"]) == current_storage().get(image.storage_key)
        assert photo["content_type"] == "image/png"
        assert (photo["width"], photo["height"]) == (30, 20)


def test_a_round_trip_into_an_empty_account_keeps_everything(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    diary_with_photos: list[int],
    make_user: Callable[..., User],
    make_token: Callable[[User], str],
    tmp_path: Path,
) -> None:
    first = export_bytes(client, auth)
    other = make_user("newhome@example.com")
    (tmp_path / "export.zip").write_bytes(first)
    result = app.test_cli_runner().invoke(
        args=["import", "--user", other.email, str(tmp_path / "export.zip")]
    )
    assert result.exit_code == 0, result.output
    assert "imported 3 entries" in result.output
    second = export_bytes(client, {"Authorization": f"Bearer {make_token(other)}"})
    assert comparable(second) == comparable(first)


def test_importing_the_same_file_twice_adds_nothing_the_second_time(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    diary_with_photos: list[int],
    make_user: Callable[..., User],
    make_token: Callable[[User], str],
) -> None:
    data = export_bytes(client, auth)
    other = {"Authorization": f"Bearer {make_token(make_user())}"}
    assert import_via_api(client, other, data, "x.zip").json == {"imported": 3, "skipped": 0}
    counts, keys = row_counts(app), stored_keys(app)
    assert import_via_api(client, other, data, "x.zip").json == {"imported": 0, "skipped": 3}
    assert row_counts(app) == counts
    assert stored_keys(app) == keys


def zip_of(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as out:
        for name, data in members.items():
            out.writestr(name, data)
    return buffer.getvalue()


def entries_json(*entries: dict[str, Any], **header: Any) -> bytes:
    document = {"format": "diary-export", "version": 1, **header, "entries": list(entries)}
    return json.dumps(document).encode()


GOOD = {"created_at": "2020-01-01T00:00:00Z", "text": "fine"}
PHOTO = {
    "created_at": "2020-02-01T00:00:00Z",
    "text": "pic",
    "photos": [{"path": "photos/1/1.jpg"}],
}


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"entries.json": entries_json(GOOD), "../../etc/passwd": b"x"}, "unsafe file name"),
        ({"entries.json": entries_json(GOOD), "/abs/path": b"x"}, "unsafe file name"),
        ({"entries.json": entries_json(GOOD), "photos\\1.jpg": b"x"}, "unsafe file name"),
        ({"entries.json": entries_json(GOOD), "bomb.bin": b"\0" * (20 * 1024 * 1024)}, "zip bomb"),
        ({"entries.json": b"not json"}, "not valid UTF-8 JSON"),
        ({"entries.json": entries_json(GOOD, format="other")}, "not a diary export"),
        ({"entries.json": entries_json(GOOD, version=2)}, "version 2"),
        ({"entries.json": b'{"format": "diary-export", "version": 1, "entries": {}}'}, "list"),
        ({"entries.json": entries_json(GOOD, {"text": "no time"})}, "created_at"),
        ({"entries.json": entries_json(GOOD, {**GOOD, "created_at": "yesterday"})}, "ISO 8601"),
        (
            {"entries.json": entries_json(GOOD, {**GOOD, "created_at": "0001-01-01T00:00+14:00"})},
            "created_at is out of range",
        ),
        ({"entries.json": b'{"entries": [' * 50_000}, "not valid UTF-8 JSON"),
        ({"entries.json": b'{"entries": [{"n": %s}]}' % (b"9" * 5000)}, "not valid UTF-8 JSON"),
        ({"entries.json": entries_json(GOOD, {**GOOD, "text": 5})}, "text must be a string"),
        ({"entries.json": entries_json(GOOD, {**GOOD, "text": ""})}, "Write something"),
        ({"entries.json": entries_json(GOOD, PHOTO)}, "not in the archive"),
        ({"entries.json": entries_json(GOOD, PHOTO), "photos/1/1.jpg": b"not an image"}, "image"),
        ({"notes.txt": b"hello"}, "neither a diary export"),
    ],
)
def test_bad_or_hostile_archives_are_refused_and_nothing_is_imported(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    members: dict[str, bytes],
    message: str,
) -> None:
    # A good photo first, so a later failure must also remove what was stored.
    data = zip_of({"photos/0.jpg": image_bytes(), **members})
    before_rows, before_keys = row_counts(app), stored_keys(app)
    response = import_via_api(client, auth, data, "hostile.zip")
    assert response.status_code == 400, response.text
    assert response.mimetype == "application/problem+json"
    assert message in response.json["errors"][0]["message"]
    assert row_counts(app) == before_rows
    assert stored_keys(app) == before_keys


def test_a_failure_after_photos_were_stored_leaves_no_rows_and_no_objects(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    good = {**GOOD, "photos": [{"path": "photos/a.jpg"}]}
    bad = {**GOOD, "created_at": "2021-01-01T00:00:00Z", "photos": [{"path": "photos/b.jpg"}]}
    data = zip_of(
        {
            "entries.json": entries_json(good, bad),
            "photos/a.jpg": image_bytes(),
            "photos/b.jpg": b"GIF89a but broken",
        }
    )
    before_rows, before_keys = row_counts(app), stored_keys(app)
    response = import_via_api(client, auth, data, "x.zip")
    assert response.status_code == 400
    assert row_counts(app) == before_rows
    assert stored_keys(app) == before_keys


def test_a_member_larger_than_a_photo_may_be_is_refused(
    app_with: Callable[..., Flask], make_user: Callable[..., User], tmp_path: Path
) -> None:
    app = app_with(MAX_UPLOAD_MB=1)
    with app.app_context():
        from diary.accounts import create_user

        email = create_user("big@example.com", "correct horse battery").email
    huge = os.urandom(2 * 1024 * 1024)  # random bytes: no compression, ratio about 1
    path = tmp_path / "huge.zip"
    path.write_bytes(zip_of({"entries.json": entries_json(PHOTO), "photos/1/1.jpg": huge}))
    result = app.test_cli_runner().invoke(args=["import", "--user", email, str(path)])
    assert result.exit_code != 0
    assert "nothing imported" in result.output and "larger than" in result.output
    assert row_counts(app)["entries"] == 0


def test_the_archive_total_is_capped_before_anything_is_read(app: Flask, user: User) -> None:
    data = zip_of({"entries.json": entries_json(GOOD), "pad": os.urandom(4096)})
    with app.app_context():
        owner = db.session.get(User, user.id)
        with pytest.raises(ContentTooLarge, match="expands to more than"):
            archive.import_file(owner, io.BytesIO(data), max_total_bytes=1000)


def test_export_streams_with_flat_memory(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str]
) -> None:
    """Many entries and photos: the ZIP is far larger than the memory used to make it."""
    photo = os.urandom(1024 * 1024)
    with app.app_context():
        owner = db.session.get(User, user.id)
        keys = []
        for number in range(16):
            key = f"{owner.id}/flat{number:02d}/original.jpg"
            current_storage().put(key, io.BytesIO(photo), content_type="image/jpeg")
            keys.append(key)
    long_text = "日記の本文。" * 500  # about 9 KB of UTF-8 each
    ids = [add_entry(app, user, f"{n} {long_text}") for n in range(400)]
    with app.app_context():
        for number, key in enumerate(keys):
            db.session.add(
                Image(
                    entry_id=ids[number],
                    storage_key=key,
                    content_type="image/jpeg",
                    byte_size=len(photo),
                    width=1,
                    height=1,
                )
            )
        db.session.commit()

    tracemalloc.start()
    try:
        total = 0
        with client.get("/api/v1/export", headers=auth, buffered=False) as response:
            assert response.is_streamed
            for chunk in response.response:
                total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The photos alone are 16 MiB, the text about 7 MB before compression.
    assert total > 16 * 1024 * 1024
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for a {total}-byte export"


def test_the_cli_exports_to_a_file_with_a_progress_bar(
    app: Flask, user: User, diary_with_photos: list[int], tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "mine.zip"
    result = app.test_cli_runner().invoke(args=["export", "--user", user.email, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Exporting" in result.output
    assert "exported 3 entries" in result.output
    assert len(export_document(out.read_bytes())["entries"]) == 3
    assert [path.name for path in out.parent.iterdir()] == ["mine.zip"]  # no temporary left


def test_the_cli_refuses_an_unknown_user(app: Flask, tmp_path: Path) -> None:
    result = app.test_cli_runner().invoke(
        args=["export", "--user", "nobody@example.com", "--out", str(tmp_path / "x.zip")]
    )
    assert result.exit_code != 0
    assert "no user with email nobody@example.com" in result.output


def test_the_settings_page_download_is_the_same_export(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str], diary_with_photos: list[int]
) -> None:
    sign_in(client, user.email)
    with client.get("/settings/export") as response:
        assert response.status_code == 200
        assert response.mimetype == "application/zip"
        assert comparable(response.get_data()) == comparable(export_bytes(client, auth))


# --- Day One --------------------------------------------------------------


DAY_ONE = {
    "metadata": {"version": "1.0"},
    "entries": [
        {
            "uuid": "A1",
            "creationDate": "2019-05-01T22:10:00Z",
            "modifiedDate": "2019-05-02T08:00:00Z",
            "text": "山に登った\n\n![](dayone-moment://P1)",
            "tags": ["hiking", "山登り"],
            "photos": [{"identifier": "P1", "md5": "abc123", "type": "jpeg"}],
        },
        {
            "uuid": "A2",
            "creationDate": "2019-05-03T01:00:00Z",
            "text": "Rainy #home",
            "tags": ["home"],
        },
        {"uuid": "A3", "creationDate": "2019-05-04T01:00:00Z", "text": ""},
    ],
}


def test_a_day_one_zip_is_imported_with_tags_and_photos(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    photo = image_bytes(color="green")
    data = zip_of({"Journal.json": json.dumps(DAY_ONE).encode(), "photos/abc123.jpeg": photo})
    response = import_via_api(client, auth, data, "dayone.zip")
    assert response.json == {"imported": 2, "skipped": 0}
    items = client.get("/api/v1/entries", headers=auth).json["items"]
    assert [item["text"] for item in items] == ["Rainy #home", "山に登った\n\n#hiking #山登り"]
    assert items[1]["created_at"] == "2019-05-01T22:10:00Z"
    assert items[1]["updated_at"] == "2019-05-02T08:00:00Z"
    assert len(items[1]["images"]) == 1
    assert (
        client.get("/api/v1/entries?tag=山登り", headers=auth).json["items"][0]["id"]
        == items[1]["id"]
    )
    again = import_via_api(client, auth, data, "dayone.zip")
    assert again.json == {"imported": 0, "skipped": 2}


def test_day_one_json_alone_is_imported_when_it_has_no_photos(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    document = {**DAY_ONE, "entries": DAY_ONE["entries"][1:]}
    response = import_via_api(client, auth, json.dumps(document).encode(), "Journal.json")
    assert response.json == {"imported": 1, "skipped": 0}


def test_day_one_json_with_photos_asks_for_the_zip(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = import_via_api(client, auth, json.dumps(DAY_ONE).encode(), "Journal.json")
    assert response.status_code == 400
    assert "ZIP export" in response.json["errors"][0]["message"]


# --- the original service -------------------------------------------------


def import_original(app: Flask, user: User, path: Path, bucket: str, endpoint: str) -> Result:
    """`flask import` of the original service's JSON dump, its photos read from `bucket`."""
    arguments = ["import", "--user", user.email, str(path)]
    arguments += ["--source-bucket", bucket, "--source-endpoint", endpoint]
    return app.test_cli_runner().invoke(args=arguments)


def test_the_original_services_data_comes_over_with_photos_from_its_bucket(
    app: Flask,
    client: FlaskClient,
    user: User,
    auth: dict[str, str],
    s3_endpoint: str,
    tmp_path: Path,
) -> None:
    source = new_bucket(s3_endpoint, f"original-{os.urandom(4).hex()}")
    photo = image_bytes(color="purple")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="ap-northeast-1").put_object(
        Bucket=source, Key="dinner.jpg", Body=photo
    )
    legacy = [
        {
            "ID": 1,
            "CreatedAt": "2023-02-03T19:00:00.123456789+09:00",
            "UpdatedAt": "2023-02-03T19:00:00.123456789+09:00",
            "DeletedAt": None,
            "Text": "晩ごはん #夕食",
            "Img": "dinner.jpg",
        },
        {
            "ID": 2,
            "CreatedAt": "2023-02-04T08:00:00Z",
            "UpdatedAt": "2023-02-04T08:00:00Z",
            "DeletedAt": None,
            "Text": "no photo",
            "Img": "",
        },
    ]
    path = tmp_path / "original.json"
    path.write_text(json.dumps(legacy, ensure_ascii=False))
    result = import_original(app, user, path, source, s3_endpoint)
    assert result.exit_code == 0, result.output
    assert "imported 2 entries" in result.output
    items = client.get("/api/v1/entries", headers=auth).json["items"]
    assert [item["text"] for item in items] == ["no photo", "晩ごはん #夕食"]
    assert items[1]["created_at"] == "2023-02-03T10:00:00.123456Z"
    with app.app_context():
        image = db.session.scalars(db.select(Image)).one()
        assert current_storage().get(image.storage_key) == photo
    again = import_original(app, user, path, source, s3_endpoint)
    assert "imported 0 entries, skipped 2" in again.output


def test_an_original_photo_missing_from_its_bucket_imports_nothing(
    app: Flask, user: User, s3_endpoint: str, tmp_path: Path
) -> None:
    source = new_bucket(s3_endpoint, f"original-{os.urandom(4).hex()}")
    legacy = [
        {"ID": 1, "CreatedAt": "2023-02-03T10:00:00Z", "Text": "ok", "Img": ""},
        {"ID": 2, "CreatedAt": "2023-02-04T10:00:00Z", "Text": "gone", "Img": "gone.jpg"},
    ]
    path = tmp_path / "original.json"
    path.write_text(json.dumps(legacy))
    before = row_counts(app)
    result = import_original(app, user, path, source, s3_endpoint)
    assert result.exit_code != 0
    assert "'gone.jpg' is not in bucket" in result.output
    assert row_counts(app) == before


def test_an_original_photo_without_a_bucket_option_is_explained(
    app: Flask, user: User, tmp_path: Path
) -> None:
    path = tmp_path / "original.json"
    path.write_text(
        json.dumps([{"ID": 1, "CreatedAt": "2023-02-03T10:00:00Z", "Text": "t", "Img": "a.jpg"}])
    )
    result = app.test_cli_runner().invoke(args=["import", "--user", user.email, str(path)])
    assert result.exit_code != 0
    assert "--source-bucket" in result.output


# --- what one import may cost ------------------------------------------------


WHITESPACE = bytes.maketrans(bytes(range(256)), b" \t\n\r" * 64)


def padded_entries_json(pad_bytes: int) -> bytes:
    """Two entries with white space between them that barely compresses (random runs)."""
    first = json.dumps(GOOD).encode()
    second = json.dumps({**GOOD, "created_at": "2020-01-02T00:00:00Z"}).encode()
    padding = os.urandom(pad_bytes).translate(WHITESPACE)
    return b'{"format": "diary-export", "version": 1, "entries": [%s,%s%s]}' % (
        first,
        padding,
        second,
    )


def test_a_padded_entries_json_is_imported_in_memory_far_smaller_than_it(
    app: Flask, user: User
) -> None:
    """30 MB of entries.json: json.loads held its bytes, its text and more (2.5 GB for 96 MB)."""
    data = zip_of(
        {"entries.json": padded_entries_json(30 * 1024 * 1024)}, compression=zipfile.ZIP_STORED
    )
    with app.app_context():
        owner = db.session.get(User, user.id)
        tracemalloc.start()
        try:
            result = archive.import_file(owner, io.BytesIO(data))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result == archive.ImportResult(imported=2, skipped=0)
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for a {len(data)}-byte entries.json"


def test_an_entries_json_larger_than_a_diary_needs_is_refused(
    app: Flask, client: FlaskClient, auth: dict[str, str], tmp_path: Path, user: User
) -> None:
    """33 MiB: the old limit was 256 MiB, so a 96 MB document was parsed whole."""
    path = tmp_path / "big.zip"
    path.write_bytes(
        zip_of(
            {"entries.json": padded_entries_json(33 * 1024 * 1024)},
            compression=zipfile.ZIP_STORED,
        )
    )
    result = app.test_cli_runner().invoke(args=["import", "--user", user.email, str(path)])
    assert result.exit_code != 0
    assert "'entries.json' is larger than 33554432 bytes" in result.output
    assert row_counts(app)["entries"] == 0


def test_what_a_member_expands_to_is_counted_as_it_is_read_not_as_declared(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member that gives more than its directory entry declared is caught by its bytes."""
    data = zip_of({"entries.json": entries_json(GOOD)})
    real_open = zipfile.ZipFile.open

    def expanding(self, name, *args, **kwargs):
        member = real_open(self, name, *args, **kwargs)
        if getattr(name, "filename", name) == "entries.json":
            member.close()
            return io.BytesIO(b" " * (5 * 1024 * 1024) + entries_json(GOOD))
        return member

    monkeypatch.setattr(zipfile.ZipFile, "open", expanding)
    response = import_via_api(client, auth, data, "x.zip")
    assert response.status_code == 400, response.text
    assert "zip bomb" in response.json["detail"]
    assert row_counts(app)["entries"] == 0


@pytest.mark.parametrize(
    ("members", "path"),
    [
        pytest.param(
            {
                "entries.json": entries_json(
                    {**GOOD, "photos": [{"path": "photos/a.jpg"}]},
                    {**GOOD, "text": "again", "photos": [{"path": "photos/a.jpg"}]},
                ),
                "photos/a.jpg": image_bytes(),
            },
            "photos/a.jpg",
            id="diary-export",
        ),
        pytest.param(
            {
                "Journal.json": json.dumps(
                    {
                        "metadata": {},
                        "entries": [
                            {**DAY_ONE["entries"][0], "uuid": f"U{n}", "text": f"day {n}"}
                            for n in range(3)
                        ],
                    }
                ).encode(),
                "photos/abc123.jpeg": image_bytes(),
            },
            "photos/abc123.jpeg",
            id="day-one",
        ),
    ],
)
def test_a_photo_used_twice_is_refused_before_any_is_decoded(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    decodes: list[str],
    members: dict[str, bytes],
    path: str,
) -> None:
    """One member named by many records was decoded and stored once per record."""
    response = import_via_api(client, auth, zip_of(members), "x.zip")
    assert response.status_code == 400, response.text
    assert f"the photo '{path}' is already used by" in response.json["detail"]
    assert decodes == []
    assert row_counts(app)["images"] == 0 and stored_keys(app) == set()


def test_an_import_through_the_api_decodes_no_more_than_one_request_may(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    user: User,
    monkeypatch: pytest.MonkeyPatch,
    decodes: list[str],
    tmp_path: Path,
) -> None:
    """The budget of an upload request (MAX_REQUEST_PIXELS); the CLI imports any size."""
    photo_pixels = 64 * 48
    monkeypatch.setattr("diary.images.MAX_REQUEST_PIXELS", 2 * photo_pixels)
    records = [
        {**GOOD, "created_at": f"2020-01-0{n}T00:00:00Z", "photos": [{"path": f"photos/{n}.jpg"}]}
        for n in (1, 2, 3)
    ]
    members = {"entries.json": entries_json(*records)}
    members |= {
        f"photos/{n}.jpg": image_bytes(color=color)
        for n, color in ((1, "red"), (2, "blue"), (3, "green"))
    }
    data = zip_of(members)
    decodes.clear()  # only what the request decodes

    response = import_via_api(client, auth, data, "x.zip")

    assert response.status_code == 413, response.text
    assert "entry 3: 3.jpg: The photos of one request have more than" in response.json["detail"]
    # Two photos were decoded (original and sizes) before the third was refused unread.
    assert 0 < len(decodes) <= 2 * 2
    assert row_counts(app)["images"] == 0 and stored_keys(app) == set()

    (tmp_path / "x.zip").write_bytes(data)
    result = app.test_cli_runner().invoke(
        args=["import", "--user", user.email, str(tmp_path / "x.zip")]
    )
    assert result.exit_code == 0, result.output
    assert row_counts(app)["images"] == 3
