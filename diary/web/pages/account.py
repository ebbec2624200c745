"""Signing in and out, signing up, and the account settings."""

from __future__ import annotations

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from ... import accounts
from ...errors import InvalidInput
from ...extensions import limiter, login_manager
from ...models import User
from ..api.archive import export_response
from . import throttling
from .common import bp, safe_next, show_error
from .forms import LoginForm, PasswordForm, ProfileForm, SignupForm

SESSION_EPOCH = "epoch"
# The problem+json detail for API-style clients; browsers get the translated error page.
SIGNIN_THROTTLED = "Too many failed sign-ins. Wait until Retry-After has passed and try again."
SIGNUP_THROTTLED = "Too many sign-up attempts. Wait until Retry-After has passed and try again."


def _begin_session(user: User) -> None:
    # A fresh session on sign-in: nothing from before (e.g. a planted session) carries over.
    session.clear()
    login_user(user)
    session[SESSION_EPOCH] = user.session_epoch


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["SIGNIN_LIMIT_PER_ADDRESS"],
    key_func=get_remote_address,
    methods=["POST"],
    deduct_when=throttling.failed_sign_in,
    exempt_when=throttling.trusted_device,
    scope="signin-address",
    error_message=SIGNIN_THROTTLED,
)
@limiter.limit(
    lambda: current_app.config["SIGNIN_LIMIT_PER_ACCOUNT"],
    key_func=throttling.account_key,
    methods=["POST"],
    deduct_when=throttling.failed_sign_in,
    exempt_when=throttling.trusted_device,
    scope="signin-account",
    error_message=SIGNIN_THROTTLED,
)
@limiter.limit(
    lambda: current_app.config["SIGNIN_LIMIT_PER_DEVICE"],
    key_func=throttling.device_key,
    methods=["POST"],
    deduct_when=throttling.failed_sign_in,
    exempt_when=throttling.untrusted_device,
    scope="signin-device",
    error_message=SIGNIN_THROTTLED,
)
def login() -> str | Response | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.email.data or "", form.password.data or "")
        except InvalidInput as error:  # an address no account can have, such as one with a NUL
            show_error(form, error, "email")
            status = error.status
        else:
            if user is not None:
                _begin_session(user)
                response = redirect(safe_next(request.args.get("next")))
                throttling.remember_device(response, user.email)
                return response
            form.password.errors.append(gettext("Email or password is not right."))
            status = 401
    elif form.errors:
        status = 400  # a field missing or sent as a file: not a failed password
    return render_template(
        "pages/login.html", form=form, allow_signup=current_app.config["ALLOW_SIGNUP"]
    ), status


@bp.post("/logout")
@login_required
def logout() -> Response:
    # Raising the epoch ends this session everywhere, even if its cookie was copied.
    accounts.end_sessions(current_user)
    logout_user()
    session.clear()
    flash(gettext("Signed out."))
    return redirect(url_for("pages.login"))


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["SIGNUP_LIMIT_PER_ADDRESS"],
    key_func=get_remote_address,
    methods=["POST"],
    exempt_when=throttling.signup_disabled,
    scope="signup-address",
    error_message=SIGNUP_THROTTLED,
)
@limiter.limit(
    lambda: current_app.config["SIGNUP_LIMIT_GLOBAL"],
    key_func=throttling.everyone,
    methods=["POST"],
    exempt_when=throttling.signup_disabled,
    scope="signup-global",
    error_message=SIGNUP_THROTTLED,
)
def signup() -> str | Response | tuple[str, int]:
    if not current_app.config["ALLOW_SIGNUP"]:
        abort(404)
    if current_user.is_authenticated:
        return redirect(url_for("legacy.index"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(
                form.email.data or "", form.password.data or "", form.display_name.data or ""
            )
        except InvalidInput as error:
            show_error(form, error, "email")
            return render_template("pages/signup.html", form=form), error.status
        _begin_session(user)
        flash(gettext("Welcome! Your diary is ready."))
        return redirect(url_for("legacy.index"))
    status = 400 if form.errors else 200
    return render_template("pages/signup.html", form=form), status


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings() -> str | Response | tuple[str, int]:
    default_timezone = current_app.config["DEFAULT_TIMEZONE"]
    form = ProfileForm(obj=current_user, default_timezone=default_timezone)
    if form.validate_on_submit():
        try:
            accounts.update_profile(
                current_user,
                display_name=form.display_name.data or "",
                time_zone=form.time_zone.data or "",
                language=form.language.data or "",
            )
        except InvalidInput as error:
            show_error(form, error, "display_name")
            return render_template("pages/settings.html", form=form), error.status
        # Said in the language just chosen: the locale is picked per request.
        flash(gettext("Settings saved."))
        return redirect(url_for("pages.settings"))
    status = 400 if form.errors else 200
    return render_template("pages/settings.html", form=form), status


@bp.route("/settings/password", methods=["GET", "POST"])
@login_required
def password() -> str | Response | tuple[str, int]:
    form = PasswordForm()
    live_tokens = [token for token in accounts.list_tokens(current_user) if not token.revoked_at]
    if form.validate_on_submit():
        try:
            revoked = accounts.change_password(
                current_user,
                form.current_password.data or "",
                form.new_password.data or "",
                revoke_tokens=bool(form.revoke_tokens.data),
            )
        except InvalidInput as error:
            show_error(form, error, "new_password")
            return render_template(
                "pages/password.html", form=form, live_tokens=live_tokens
            ), error.status
        # Other browsers are signed out; this one continues with the new epoch.
        session[SESSION_EPOCH] = current_user.session_epoch
        flash(gettext("Password changed. Other browsers have been signed out."))
        if revoked:
            flash(gettext("API tokens revoked: %(count)s.", count=revoked))
        return redirect(url_for("pages.settings"))
    status = 400 if form.errors else 200
    return render_template("pages/password.html", form=form, live_tokens=live_tokens), status


@bp.get("/settings/export")
@login_required
def export_download() -> Response:
    return export_response(current_user._get_current_object())


def end_stale_session() -> None:
    """Refuse a session cookie from before the user signed out or changed password."""
    if "_user_id" not in session:
        return
    if not current_user.is_authenticated or session.get(SESSION_EPOCH) != (
        current_user.session_epoch
    ):
        logout_user()
        session.clear()


def init_app(app: Flask) -> None:
    app.before_request(end_stale_session)
    login_manager.login_message = _l("Please sign in to see your diary.")
