"""API tokens: create one (shown once), see when each was last used, revoke."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from werkzeug.wrappers import Response as BaseResponse

from ... import accounts
from ...errors import InvalidInput
from .common import bp, show_error
from .forms import TokenForm


@bp.route("/settings/tokens", methods=["GET", "POST"])
@login_required
def tokens() -> str | tuple[str, int]:
    form = TokenForm()
    new_token = None
    status = 200
    if form.validate_on_submit():
        try:
            _, new_token = accounts.issue_token(current_user, form.name.data or "")
        except InvalidInput as error:
            show_error(form, error, "name")
            status = error.status
        else:
            # Shown in this response only: a flash message would put the token
            # into the (signed, not encrypted) session cookie.
            form = TokenForm(formdata=None)
    elif form.errors:
        status = 400
    return render_template(
        "pages/tokens.html",
        form=form,
        tokens=accounts.list_tokens(current_user),
        new_token=new_token,
    ), status


@bp.post("/settings/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> BaseResponse:
    if not accounts.revoke_token(current_user, token_id):
        abort(404)
    flash(gettext("Token revoked. Programs using it can no longer sign in."))
    return redirect(url_for("pages.tokens"))
