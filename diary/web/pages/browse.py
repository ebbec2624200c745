"""Finding entries again: search, tags, and the calendar with "on this day"."""

from __future__ import annotations

from datetime import datetime

from flask import render_template, request
from flask_login import current_user, login_required

from ... import calendar, search, tags, timeline
from ...errors import InvalidInput
from .common import bp


def _cursor() -> timeline.Cursor | None:
    return timeline.parse_cursor(request.args.get("before"))


@bp.get("/search", endpoint="search")
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
        return render_template("pages/search.html", q=raw, page=None, error=error), 400
    return render_template("pages/search.html", q=raw, query=query, page=page, error=None)


@bp.get("/tags", endpoint="tags")
@login_required
def tag_list() -> str:
    return render_template("pages/tags.html", tags=tags.list_tags(current_user))


@bp.get("/tags/<tag>", endpoint="tag")
@login_required
def tag_page(tag: str) -> str:
    wanted = tags.parse_tag(tag)
    page = timeline.list_entries(
        current_user, limit=timeline.DEFAULT_PAGE_SIZE, cursor=_cursor(), tag=wanted
    )
    return render_template("pages/tag.html", tag=wanted, page=page)


@bp.get("/calendar", endpoint="calendar")
@login_required
def calendar_page() -> str:
    """A month with its days that have entries linked, and "on this day" from earlier years."""
    zone = calendar.user_zone(current_user)
    today = datetime.now(zone).date()
    year, month = calendar.parse_month(request.args.get("month"), today)
    return render_template(
        "pages/calendar.html",
        view=calendar.month_view(current_user, year, month),
        memories=calendar.on_this_day(current_user, today),
        today=today,
        zone=zone,
    )
