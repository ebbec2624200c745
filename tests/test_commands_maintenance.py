"""`storage gc` finds objects without a row; `storage backfill` makes missing sizes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from diary.extensions import db
from diary.infra.storage import current_storage
from diary.models import Image

from .conftest import image_bytes, row_counts, stored_keys


def post_photo(client, auth) -> dict:
    data = {"text": "p", "file": (io.BytesIO(image_bytes(size=(900, 600))), "p.jpg")}
    response = client.post("/api/v1/entries", data=data, headers=auth)
    assert response.status_code == 201
    return response.get_json()


def put_orphan(app, key: str) -> None:
    with app.app_context():
        current_storage().put(key, io.BytesIO(image_bytes()), content_type="image/jpeg")


def test_gc_reports_orphans_and_deletes_only_when_asked(app, client, auth, runner, user):
    post_photo(client, auth)
    kept = stored_keys(app)
    orphan = f"{user.id}/{os.urandom(16).hex()}/original.jpg"
    put_orphan(app, orphan)

    report = runner.invoke(args=["storage", "gc", "--grace-hours", "0"])

    assert report.exit_code == 0, report.output
    assert "1 orphaned" in report.output and orphan in report.output
    assert stored_keys(app) == kept | {orphan}  # reported, not deleted

    deleted = runner.invoke(args=["storage", "gc", "--grace-hours", "0", "--delete"])

    assert deleted.exit_code == 0, deleted.output
    assert stored_keys(app) == kept


def test_gc_leaves_young_objects_alone(app, runner, user):
    orphan = f"{user.id}/{os.urandom(16).hex()}/original.jpg"
    put_orphan(app, orphan)

    result = runner.invoke(args=["storage", "gc", "--delete"])  # default grace: 24 hours

    assert "0 orphaned" in result.output
    assert orphan in stored_keys(app)


def test_backfill_makes_the_missing_sizes(app, client, auth, runner):
    post_photo(client, auth)
    with app.app_context():
        row = db.session.scalars(sa.select(Image)).one()
        current_storage().delete([row.display_key, row.thumb_key])
        row.display_key = row.thumb_key = None
        db.session.commit()

    result = runner.invoke(args=["storage", "backfill"])

    assert result.exit_code == 0, result.output
    assert "made sizes for 1 photos" in result.output
    with app.app_context():
        row = db.session.scalars(sa.select(Image)).one()
        assert (row.display_width, row.display_height) == (900, 600)
        assert (row.thumb_width, row.thumb_height) == (400, 267)
        assert {row.display_key, row.thumb_key} <= stored_keys(app)


def test_deleting_an_entry_forever_removes_every_size(app, client, auth):
    entry = post_photo(client, auth)
    assert len(stored_keys(app)) == 3
    client.delete(f"/api/v1/entries/{entry['id']}", headers=auth)
    with app.app_context():
        from diary.entries import delete_entry_forever
        from diary.models import User

        delete_entry_forever(db.session.get(User, 1), entry["id"])

    assert stored_keys(app) == set()


KILLED_IMPORT = """
import json, os, sys

from diary import create_app
from diary.archive import importer
from diary.extensions import db
from diary.models import User

config, user_id, path = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
app = create_app({"TESTING": True, **config})
stored = []
store_image = importer.store_image


def store_then_die(owner_id, image):
    keys = store_image(owner_id, image)
    stored.extend(keys)
    if len(stored) >= 6:  # two photos, every size of each
        # As a worker killed by a timeout or the OOM killer: no except, no finally.
        os._exit(9)
    return keys


importer.store_image = store_then_die
with app.app_context(), open(path, "rb") as stream:
    importer.import_file(db.session.get(User, user_id), stream)
sys.exit("the import finished")
"""


def test_what_a_killed_import_stored_is_found_and_removed_by_gc(
    app, backend, user, runner, tmp_path
):
    """The import's rows die with its transaction; its objects wait for `storage gc`."""
    from .test_archive import entries_json, zip_of

    records = [
        {"created_at": f"2020-01-0{n}T00:00:00Z", "text": f"day {n}", "photos": [{"path": p}]}
        for n, p in ((1, "photos/1.jpg"), (2, "photos/2.jpg"), (3, "photos/3.jpg"))
    ]
    members = {f"photos/{n}.jpg": image_bytes(color=c) for n, c in ((1, "red"), (2, "blue"))}
    members["photos/3.jpg"] = image_bytes(color="green")
    (tmp_path / "diary.zip").write_bytes(
        zip_of({"entries.json": entries_json(*records), **members})
    )
    config = {key: value for key, value in backend.items() if not key.startswith("_")}
    script = tmp_path / "killed_import.py"
    script.write_text(KILLED_IMPORT)

    killed = subprocess.run(
        [
            sys.executable,
            str(script),
            json.dumps(config),
            str(user.id),
            str(tmp_path / "diary.zip"),
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert killed.returncode == 9, killed.stderr
    left = stored_keys(app)
    assert len(left) == 6 and all(key.startswith(f"{user.id}/") for key in left)
    assert row_counts(app)["entries"] == 0 and row_counts(app)["images"] == 0
    with app.app_context():
        assert db.session.scalar(sa.text("SELECT count(*) FROM entry_imports")) == 0

    report = runner.invoke(args=["storage", "gc", "--grace-hours", "0"])

    assert report.exit_code == 0, report.output
    assert "6 orphaned" in report.output
    assert all(key in report.output for key in left)

    deleted = runner.invoke(args=["storage", "gc", "--grace-hours", "0", "--delete"])

    assert deleted.exit_code == 0, deleted.output
    assert stored_keys(app) == set()
