"""Trash: entries moved out of the timeline, to restore or delete for good."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from werkzeug.wrappers import Response as BaseResponse

from ... import entries, timeline
from .common import bp


@bp.get("/trash")
@login_required
def trash() -> str:
    cursor = timeline.parse_cursor(request.args.get("before"))
    page = timeline.list_trash(current_user, limit=timeline.DEFAULT_PAGE_SIZE, cursor=cursor)
    return render_template("pages/trash.html", page=page)


@bp.post("/trash/<int:entry_id>/restore")
@login_required
def restore(entry_id: int) -> BaseResponse:
    entries.restore_entry(current_user, entry_id)
    flash(gettext("Restored to the timeline."))
    return redirect(url_for("pages.entry", entry_id=entry_id))


@bp.post("/trash/<int:entry_id>/delete")
@login_required
def delete_forever(entry_id: int) -> BaseResponse:
    entries.delete_entry_forever(current_user, entry_id)
    flash(gettext("Deleted for good, with its photos."))
    return redirect(url_for("pages.trash"))
