"""Photos from local storage, served by the app after an ownership check.

With S3 the pages and API hand out presigned URLs instead and this route is
not used.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, abort, send_file

from ..extensions import db
from ..images import owner_of_key
from ..infra.storage import IMMUTABLE_CACHE_CONTROL, current_storage
from ..models import Entry, Image
from .auth import session_or_bearer_user

bp = Blueprint("media", __name__)


@bp.get("/media/<path:key>")
def photo(key: str) -> Response:
    storage = current_storage()
    user = session_or_bearer_user()
    # Another user's photo is a 404, exactly like one that does not exist;
    # with S3 the app serves no photos at all (clients get presigned URLs).
    if storage.local_path(key) is None or user is None or owner_of_key(key) != user.id:
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
    path = storage.local_path(key)
    if path is None or not path.is_file():
        abort(404)
    mimetype = image.content_type if key == image.storage_key else "image/webp"
    response = send_file(path, mimetype=mimetype, conditional=True, max_age=None)
    response.headers["Cache-Control"] = IMMUTABLE_CACHE_CONTROL
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
