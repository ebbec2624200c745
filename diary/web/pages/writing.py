"""Timeline, writing, reading, editing and moving entries to Trash."""

from __future__ import annotations

from collections.abc import Sequence

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from werkzeug.wrappers import Response as BaseResponse

from ... import entries
from ...errors import InvalidInput
from ...inputs import whole_number
from ...models import Image
from ...timeline import DEFAULT_PAGE_SIZE, list_entries, parse_cursor
from .common import bp, group_by_day, show_error
from .forms import EditEntryForm, EntryForm


@login_required
def timeline() -> str:
    """The timeline, reached at `/` by browsers (see legacy.index): newest first, by day."""
    cursor = parse_cursor(request.args.get("before"))
    page = list_entries(current_user, limit=DEFAULT_PAGE_SIZE, cursor=cursor)
    first_page = cursor is None
    return render_template(
        "pages/timeline.html",
        page=page,
        days=group_by_day(page.items),
        # Only an empty diary shows the form, for its first entry.
        form=EntryForm() if first_page and not page.items else None,
        first_page=first_page,
    )


@bp.route("/write", methods=["GET", "POST"])
@login_required
def write() -> str | BaseResponse | tuple[str, int]:
    form = EntryForm()
    if form.validate_on_submit():
        try:
            entry = entries.create_entry(
                current_user, form.text.data, request.files.getlist("file")
            )
        except InvalidInput as error:
            show_error(form, error, "text")
            return render_template("pages/write.html", form=form), error.status
        flash(gettext("Saved."))
        return redirect(url_for("pages.entry", entry_id=entry.id))
    status = 400 if form.errors else 200
    return render_template("pages/write.html", form=form), status


@bp.get("/entries/<int:entry_id>")
@login_required
def entry(entry_id: int) -> str:
    return render_template("pages/entry.html", entry=entries.get_entry(current_user, entry_id))


def _image_ids(name: str) -> list[int]:
    ids = []
    for value in request.form.getlist(name):
        image_id = whole_number(value)  # "²" passes str.isdigit() but not int()
        if image_id is None:
            raise InvalidInput("images", "A photo in the request does not belong to this entry.")
        ids.append(image_id)
    return ids


def _moved(order: list[int], move: str) -> list[int]:
    """`order` with one photo moved a place: `move` is "<image id>:up" or "<image id>:down"."""
    raw_id, _, direction = move.partition(":")
    order = list(order)
    image_id = whole_number(raw_id)
    if image_id not in order or direction not in ("up", "down"):
        return order
    here = order.index(image_id)
    there = here - 1 if direction == "up" else here + 1
    if 0 <= there < len(order):
        order[here], order[there] = order[there], order[here]
    return order


def _in_form_order(images: Sequence[Image]) -> list[Image]:
    """The entry's photos in the order the posted form lists them, moved a place if a
    move arrow sent it; the stored order when the form lists other photos (or none)."""
    by_id = {image.id: image for image in images}
    numbers = (whole_number(value) for value in request.form.getlist("image"))
    posted = [number for number in numbers if number is not None]
    if sorted(posted) != sorted(by_id):
        return list(images)
    if "move" in request.form:
        posted = _moved(posted, request.form["move"])
    return [by_id[image_id] for image_id in posted]


@bp.route("/entries/<int:entry_id>/edit", methods=["GET", "POST"])
@login_required
def edit(entry_id: int) -> str | BaseResponse | tuple[str, int]:
    entry = entries.get_entry(current_user, entry_id)
    form = EditEntryForm(obj=entry)
    # Shown again (after a move or a refusal), the photos keep the order on the form.
    images = _in_form_order(entry.images)
    if request.method == "POST" and "move" in request.form:
        # A move arrow without JavaScript: the form again with the photo moved and what
        # was typed kept; nothing is saved until Save.
        removing = set(request.form.getlist("remove"))
        return render_template(
            "pages/edit.html", form=form, entry=entry, images=images, removing=removing
        )
    if form.validate_on_submit():
        try:
            entries.update_entry(
                current_user,
                entry_id,
                form.text.data,
                uploads=request.files.getlist("file"),
                remove_image_ids=_image_ids("remove"),
                # The order of the photos on the form, as the arrows (or dragging) left it.
                image_order=_image_ids("image"),
            )
        except InvalidInput as error:
            show_error(form, error, "text")
            removing = set(request.form.getlist("remove"))
            return render_template(
                "pages/edit.html", form=form, entry=entry, images=images, removing=removing
            ), error.status
        flash(gettext("Saved."))
        return redirect(url_for("pages.entry", entry_id=entry_id))
    status = 400 if form.errors else 200
    return render_template(
        "pages/edit.html", form=form, entry=entry, images=images, removing=set()
    ), status


@bp.post("/entries/<int:entry_id>/delete")
@login_required
def delete(entry_id: int) -> BaseResponse:
    # CSRFProtect has checked the form's token before the view runs.
    entries.trash_entry(current_user, entry_id)
    flash(gettext("Moved to Trash. You can restore it from there."))
    return redirect(url_for("legacy.index"))
