"""The server-rendered diary: timeline, writing, Trash, search, tags, calendar, settings.

One blueprint, "pages", split by area into modules. `timeline()` is called by
`legacy.index` when a browser asks for `/`.
"""

from __future__ import annotations

from flask import Flask

# Importing the area modules registers their routes on `bp`.
from . import account, browse, photos, tokens, trash, writing  # noqa: F401
from .common import (
    bp,
    entry_excerpt,
    month_name,
    no_store,
    photo_box,
    photo_srcset,
    photo_tiles,
    photo_url,
    text_lang,
)
from .writing import timeline

__all__ = ["bp", "init_app", "no_store", "photo_srcset", "photo_url", "timeline"]


def init_app(app: Flask) -> None:
    """Template helpers and the per-request checks the pages rely on."""
    from flask_babel import get_locale

    from ...markdown import render_markdown

    app.add_template_filter(render_markdown, "markdown")
    app.add_template_filter(text_lang)
    app.add_template_filter(month_name)
    app.add_template_global(entry_excerpt)
    app.add_template_global(photo_srcset)
    app.add_template_global(photo_box)
    app.add_template_global(photo_tiles)
    app.add_template_global(lambda: str(get_locale() or "en"), "current_locale")
    account.init_app(app)
