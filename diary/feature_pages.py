"""Pages for the diary features: search, tags, the calendar with "on this day", export.

A blueprint of its own ("features"), so it grows apart from the core pages;
its templates live in templates/features/ and extend base.html.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Flask, Response, render_template, request
from flask_login import current_user, login_required

from . import calendar, search, tags, timeline
from .errors import InvalidInput

bp = Blueprint("features", __name__)


def _cursor() -> timeline.Cursor | None:
    return timeline.parse_cursor(request.args.get("before"))


@bp.get("/search")
@login_required
def search_page() -> str | tuple[str, int]:
    """The search box and its results, newest first, the matches highlighted."""
    raw = request.args.get("q", "")
    try:
        query = search.parse_query(raw)
        page = (
            timeline.list_entries(
                current_user, limit=timeline.DEFAULT_PAGE_SIZE, cursor=_cursor(), q=query
            )
            if query
            else None
        )
    except InvalidInput as error:
        return render_template("features/search.html", q=raw, page=None, error=error), 400
    return render_template("features/search.html", q=raw, query=query, page=page, error=None)


@bp.get("/tags")
@login_required
def tag_list() -> str:
    return render_template("features/tags.html", tags=tags.list_tags(current_user))


@bp.get("/tags/<tag>")
@login_required
def tag_page(tag: str) -> str:
    wanted = tags.parse_tag(tag)
    page = timeline.list_entries(
        current_user, limit=timeline.DEFAULT_PAGE_SIZE, cursor=_cursor(), tag=wanted
    )
    return render_template("features/tag.html", tag=wanted, page=page)


@bp.get("/calendar")
@login_required
def calendar_page() -> str:
    """A month with its days that have entries linked, and "on this day" from earlier years."""
    zone = calendar.user_zone(current_user)
    today = datetime.now(zone).date()
    year, month = calendar.parse_month(request.args.get("month"), today)
    return render_template(
        "features/calendar.html",
        view=calendar.month_view(current_user, year, month),
        memories=calendar.on_this_day(current_user, today),
        today=today,
        zone=zone,
    )


@bp.get("/settings/export")
@login_required
def export_download() -> Response:
    from .api.features import export_response

    return export_response(current_user._get_current_object())


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_global(search.excerpt, "search_excerpt")
