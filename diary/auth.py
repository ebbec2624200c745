"""Who is asking: bearer tokens for API clients, session cookies for browsers."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import sqlalchemy as sa
from flask import Flask, Response, g, request
from flask_login import current_user

from .accounts import TokenOwner, owner_of_token
from .errors import problem
from .extensions import db, login_manager
from .models import User

P = ParamSpec("P")
R = TypeVar("R")


def bearer_owner() -> TokenOwner | None:
    """The owner of the live token in the Authorization header, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return owner_of_token(token.strip())


def bearer_user() -> User | None:
    owner = bearer_owner()
    return db.session.get(User, owner.id) if owner is not None else None


def known_user_id() -> int | None:
    """The signed-in user, if the request already looked them up (never a query of its own)."""
    owner = g.get("owner")  # API requests: the token check's plain row
    if owner is not None:
        return owner.id
    user = g.get("user") or g.get("_login_user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    # The identity map key, not `user.id`: after a rollback (the database just
    # went away) the attribute is expired and reading it would query again,
    # turning the 503 being answered into a 500 while logging it.
    state = sa.inspect(user, raiseerr=False)
    identity = state.identity if state is not None else None
    return identity[0] if identity else None


def unauthorized(detail: str) -> Response:
    return problem(
        401,
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="diary"'},
    )


def _with_token(view: Callable[P, R], *, load_user: bool) -> Callable[P, R | Response]:
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if "Authorization" not in request.headers:
            return unauthorized("Send an API token: Authorization: Bearer <token>.")
        owner = bearer_owner()
        if owner is None:
            return unauthorized("The token is unknown or has been revoked.")
        g.owner = owner
        if load_user:
            g.user = db.session.get(User, owner.id)
            if g.user is None:  # the account went between the two statements
                return unauthorized("The token is unknown or has been revoked.")
        return view(*args, **kwargs)

    return wrapped


def token_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Run the view with g.owner and g.user (the ORM User) set from the bearer token, or 401.

    The API deliberately ignores session cookies: a cookie-authenticated API
    would be open to cross-site request forgery.
    """
    return _with_token(view, load_user=True)


def token_owner_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """As token_required, with g.owner only: for reads that need just the user's id.

    Saves loading the user, a statement, on the API's most frequent request.
    """
    return _with_token(view, load_user=False)


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
