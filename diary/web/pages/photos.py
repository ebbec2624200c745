"""The photo viewer: one photo of an entry at display size, with the previous and next."""

from __future__ import annotations

from flask import abort, render_template
from flask_login import current_user, login_required

from ... import entries
from .common import bp


@bp.get("/entries/<int:entry_id>/photos/<int:number>")
@login_required
def photo(entry_id: int, number: int) -> str:
    """Photo `number` (from 1, in the entry's order) of the reader's own live entry."""
    entry = entries.get_entry(current_user, entry_id)
    if not 1 <= number <= len(entry.images):
        abort(404)
    return render_template(
        "pages/photo.html", entry=entry, image=entry.images[number - 1], number=number
    )
