"""Who is asking: bearer tokens for API clients, session cookies for browsers."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import Flask, Response, g, request
from flask_login import current_user

from ..accounts import user_for_token
from ..extensions import db, login_manager
from ..models import User
from .errors import problem

P = ParamSpec("P")
R = TypeVar("R")


def bearer_user() -> User | None:
    """The owner of the live token in the Authorization header, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return user_for_token(token.strip())


def unauthorized(detail: str) -> Response:
    return problem(
        401,
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="diary"'},
    )


def token_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Run the view with g.user set from the bearer token, or answer 401.

    The API deliberately ignores session cookies: a cookie-authenticated API
    would be open to cross-site request forgery.
    """

    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if "Authorization" not in request.headers:
            return unauthorized("Send an API token: Authorization: Bearer <token>.")
        user = bearer_user()
        if user is None:
            return unauthorized("The token is unknown or has been revoked.")
        g.user = user
        return view(*args, **kwargs)

    return wrapped


def session_or_bearer_user() -> User | None:
    """For resources both browsers and API clients fetch (photos)."""
    if current_user.is_authenticated:
        return current_user._get_current_object()
    return bearer_user()


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "pages.login"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return db.session.get(User, int(user_id)) if user_id.isdigit() else None
