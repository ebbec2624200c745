"""The JSON API, version 1, mounted at /api/v1."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import archive, entries, openapi, tags  # noqa: E402,F401  (routes register on bp)
