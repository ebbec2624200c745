"""/api/v1/tags: the caller's tags with how many live entries carry each."""

from __future__ import annotations

from flask import Response, g, jsonify

from ... import tags
from ..auth import token_required
from . import bp


@bp.get("/tags")
@token_required
def list_tags() -> Response:
    return jsonify(
        items=[{"tag": item.tag, "count": item.count} for item in tags.list_tags(g.user)]
    )
