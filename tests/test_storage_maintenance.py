"""`storage gc` finds objects without a row; `storage backfill` makes missing sizes."""

from __future__ import annotations

import io
import os

import sqlalchemy as sa

from diary.extensions import db
from diary.infra.storage import current_storage
from diary.models import Image

from .conftest import image_bytes, stored_keys


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
