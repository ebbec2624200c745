"""The server-rendered diary: sign in, timeline, write, read."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response as BaseResponse

from . import entries
from .accounts import authenticate
from .errors import InvalidInput
from .forms import EntryForm, LoginForm
from .models import Image
from .storage import current_storage

bp = Blueprint("pages", __name__)


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect after sign-in is a phishing aid.
    if target and target.startswith("/") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("legacy.index")


@login_required
def timeline() -> str:
    """The timeline, reached at `/` by browsers (see legacy.index)."""
    raw_cursor = request.args.get("before")
    cursor = entries.Cursor.decode(raw_cursor) if raw_cursor else None
    page = entries.list_entries(current_user, limit=entries.DEFAULT_PAGE_SIZE, cursor=cursor)
    return render_template("pages/timeline.html", page=page, form=EntryForm())


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse:
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data or "", form.password.data or "")
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append("Email or password is not right.")
    return render_template("pages/login.html", form=form)


@bp.post("/logout")
@login_required
def logout() -> BaseResponse:
    logout_user()
    flash("Signed out.")
    return redirect(url_for("pages.login"))


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
            getattr(form, error.field, form.text).errors = [error.message]
            return render_template("pages/write.html", form=form), error.status
        flash("Saved.")
        return redirect(url_for("pages.entry", entry_id=entry.id))
    return render_template("pages/write.html", form=form)


@bp.get("/entries/<int:entry_id>")
@login_required
def entry(entry_id: int) -> str:
    return render_template("pages/entry.html", entry=entries.get_entry(current_user, entry_id))


def photo_url(image: Image) -> str:
    """Template helper: a presigned URL (S3) or the app's own URL (local)."""
    return current_storage().url(image.storage_key)


def no_store(response: Response) -> Response:
    """Diary pages are private: keep them out of shared caches."""
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "private, no-store")
    return response
