"""/api/v1/export and /api/v1/import: thin views over diary.archive."""

from __future__ import annotations

from itertools import chain

from flask import Response, g, jsonify, request, stream_with_context

from ... import archive, images
from ...errors import InvalidInput
from ...timestamps import utcnow
from ..auth import token_required
from . import bp


def export_response(user: object) -> Response:
    """The export ZIP as a streamed download (shared with the settings page)."""
    chunks = stream_with_context(archive.export_zip(user))  # type: ignore[arg-type]
    # Start it here, so a failure before the first byte is an ordinary error
    # response rather than a broken download.
    first = next(chunks)
    name = f"diary-export-{utcnow():%Y%m%d}.zip"
    return Response(
        chain([first], chunks),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
        direct_passthrough=True,
    )


@bp.get("/export")
@token_required
def export() -> Response:
    return export_response(g.user)


@bp.post("/import")
@token_required
def import_() -> Response:
    upload = request.files.get("file")
    if upload is None or not (upload.filename or upload.content_length):
        raise InvalidInput("file", "Send the export as multipart/form-data field file.")
    # A request may decode only so much, photos of an import included; larger
    # archives are imported with `flask --app diary import`.
    result = archive.import_file(g.user, upload.stream, max_pixels=images.MAX_REQUEST_PIXELS)
    return jsonify(imported=result.imported, skipped=result.skipped)
