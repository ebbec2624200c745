"""Photos from local storage, served by the app after an ownership check.

With S3 the pages and API hand out presigned URLs instead and this route is
not used.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Response, abort, send_file

from ..extensions import db
from ..images import owner_of_key
from ..infra.storage import IMMUTABLE_CACHE_CONTROL, current_storage
from ..inputs import storable
from ..models import Entry, Image
from .auth import session_or_bearer_user

bp = Blueprint("media", __name__)


def _local_file(key: str) -> Path | None:
    """The file of `key` in local storage; None with S3, or for a key no photo has.

    A NUL in the key fails the path (and PostgreSQL), a `..` that leaves the
    folder is refused by the storage: both were 500s, and are no photo.
    """
    if not storable(key):
        return None
    try:
        return current_storage().local_path(key)
    except ValueError:
        return None


@bp.get("/media/<path:key>")
def photo(key: str) -> Response:
    user = session_or_bearer_user()
    path = _local_file(key)
    # Another user's photo is a 404, exactly like one that does not exist;
    # with S3 the app serves no photos at all (clients get presigned URLs).
    if path is None or user is None or owner_of_key(key) != user.id:
        abort(404)
    image = db.session.scalar(
        sa.select(Image)
        .join(Entry)
        .where(
            sa.or_(Image.storage_key == key, Image.display_key == key, Image.thumb_key == key),
            Entry.user_id == user.id,
        )
    )
    if image is None:
        abort(404)
    if not path.is_file():
        abort(404)
    mimetype = image.content_type if key == image.storage_key else "image/webp"
    response = send_file(path, mimetype=mimetype, conditional=True, max_age=None)
    response.headers["Cache-Control"] = IMMUTABLE_CACHE_CONTROL
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
