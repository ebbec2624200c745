"""/api/v1/entries: thin views over diary.entries."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request, url_for

from ... import entries, search, tags, timeline
from ...errors import InvalidInput
from ...infra.storage import current_storage
from ...models import Entry
from ...timeline import EntryView
from ...timestamps import rfc3339
from ..auth import token_required
from . import bp


def entry_json(entry: Entry | EntryView) -> dict[str, Any]:
    storage = current_storage()
    return {
        "id": entry.id,
        "text": entry.text,
        "created_at": rfc3339(entry.created_at),
        "updated_at": rfc3339(entry.updated_at),
        "images": [
            {
                "id": image.id,
                "url": storage.url(image.storage_key),
                "content_type": image.content_type,
                "width": image.width,
                "height": image.height,
                "bytes": image.byte_size,
                "original_filename": image.original_filename,
                # Sizes fall back to the original for photos not yet backfilled.
                "display_url": storage.url(image.display_key or image.storage_key),
                "thumbnail_url": storage.url(image.thumb_key or image.storage_key),
            }
            for image in entry.images
        ],
    }


def json_body() -> dict[str, Any]:
    """The JSON object of the request, or a clear 400 for anything else."""
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidInput("body", "The body is not valid UTF-8 JSON.")
    if not isinstance(body, dict):
        raise InvalidInput("body", "The body must be a JSON object.")
    return body


def text_member(body: dict[str, Any]) -> str | None:
    text = body.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidInput("text", "text must be a string.")
    return text


@bp.get("/entries")
@token_required
def list_entries() -> Response:
    limit = timeline.parse_limit(request.args.get("limit"))
    cursor = timeline.parse_cursor(request.args.get("cursor"))
    q = search.parse_query(request.args.get("q"))
    tag = tags.parse_tag(request.args.get("tag"))
    page = timeline.list_entries(g.user, limit=limit, cursor=cursor, q=q, tag=tag)
    return jsonify(items=[entry_json(e) for e in page.items], next_cursor=page.next_cursor)


@bp.post("/entries")
@token_required
def create_entry() -> tuple[Response, int, dict[str, str]]:
    if request.mimetype == "multipart/form-data":
        entry = entries.create_entry(
            g.user, request.form.get("text"), request.files.getlist("file")
        )
    elif request.is_json:
        entry = entries.create_entry(g.user, text_member(json_body()))
    else:
        raise InvalidInput(
            "Content-Type", "Send multipart/form-data (text, file) or application/json."
        )
    location = url_for("api.get_entry", entry_id=entry.id)
    return jsonify(entry_json(entry)), 201, {"Location": location}


@bp.get("/entries/<int:entry_id>")
@token_required
def get_entry(entry_id: int) -> Response:
    return jsonify(entry_json(entries.get_entry(g.user, entry_id)))


@bp.patch("/entries/<int:entry_id>")
@token_required
def update_entry(entry_id: int) -> Response:
    if not request.is_json:
        raise InvalidInput("Content-Type", 'Send application/json: {"text": "..."}.')
    entry = entries.update_entry_text(g.user, entry_id, text_member(json_body()))
    return jsonify(entry_json(entry))


@bp.delete("/entries/<int:entry_id>")
@token_required
def delete_entry(entry_id: int) -> tuple[str, int]:
    entries.trash_entry(g.user, entry_id)
    return "", 204
