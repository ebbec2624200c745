"""Users and their API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import cache
from zoneinfo import available_timezones

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import InvalidInput
from .extensions import db
from .inputs import possible_id, single_line
from .models import ApiToken, User
from .timestamps import utcnow

TOKEN_PREFIX = "diary_"  # noqa: S105 (a visible prefix, not a secret)
MIN_PASSWORD_LENGTH = 8
# Recording every use would turn each read into a write; once a minute is enough
# for "last used" to be useful.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str) -> None:
    """Refuse what cannot be an address: before any query, since PostgreSQL fails on a NUL."""
    if not single_line(email):
        raise InvalidInput("email", "Enter a valid email address.")


def check_name(field: str, name: str) -> None:
    """Names are one line of text: a control character (NUL, a newline) is refused."""
    if not single_line(name):
        raise InvalidInput(field, "The name cannot contain control characters such as NUL.")


def create_user(email: str, password: str, display_name: str = "") -> User:
    email = normalise_email(email)
    check_email(email)
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > 254:
        raise InvalidInput("email", "Enter a valid email address.")
    check_name("display_name", display_name.strip())
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            "password", "The password needs at least %(n)s characters.", n=MIN_PASSWORD_LENGTH
        )
    if db.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise InvalidInput("email", "An account with this email already exists.")
    user = User(
        email=email,
        password_hash=hash_password(password),
        display_name=display_name.strip()[:100],
    )
    db.session.add(user)
    db.session.commit()
    return user


def find_user(email: str) -> User | None:
    check_email(email)
    return db.session.scalar(sa.select(User).where(User.email == normalise_email(email)))


def hash_password(password: str) -> str:
    """The stored form of a password: Werkzeug's default, a memory-hard scrypt."""
    return generate_password_hash(password)


@cache
def _unknown_account_hash() -> str:
    # Made once per process, by the same function and parameters as every real
    # hash, so refusing an unknown email costs exactly what a wrong password does.
    return hash_password(secrets.token_urlsafe(16))


def authenticate(email: str, password: str) -> User | None:
    user = find_user(email)
    if user is None:
        # One hash check either way: timing does not tell which emails have accounts.
        check_password_hash(_unknown_account_hash(), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User, name: str) -> tuple[ApiToken, str]:
    """Create a token; the plain text is returned once and never stored."""
    name = name.strip()
    check_name("name", name)
    if not name or len(name) > 100:
        raise InvalidInput("name", "Give the token a name of 1 to 100 characters.")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_token(plain))
    db.session.add(token)
    db.session.commit()
    return token, plain


_TOKEN_USER = (
    sa.select(User, ApiToken.id, ApiToken.last_used_at)
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == sa.bindparam("token_hash"), ApiToken.revoked_at.is_(None))
)


def user_for_token(plain: str) -> User | None:
    """The owner of a live token, or None for an unknown or revoked one.

    Every API request pays for this: one statement on the token hash's unique
    index that loads the user with it. `last_used_at` is written at most once
    per LAST_USED_RESOLUTION and committed at once: nothing else has happened
    in the request yet, and a second connection for it could wait on a pool
    whose every connection is held by a request doing the same.
    """
    row = db.session.execute(_TOKEN_USER, {"token_hash": hash_token(plain)}).first()
    if row is None:
        return None
    user, token_id, last_used_at = row
    now = utcnow()
    if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
        db.session.execute(
            sa.update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now)
        )
        db.session.commit()
    return user


def list_tokens(user: User) -> list[ApiToken]:
    return list(
        db.session.scalars(
            sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
        )
    )


def revoke_token(user: User, token_id: int) -> bool:
    token = db.session.get(ApiToken, token_id) if possible_id(token_id) else None
    if token is None or token.user_id != user.id:
        return False
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.commit()
    return True


# --- account settings -------------------------------------------------------

SUPPORTED_LANGUAGES = ("ja", "en")
MAX_DISPLAY_NAME = 100


def change_password(
    user: User, current_password: str, new_password: str, *, revoke_tokens: bool
) -> int:
    """Replace the password after checking the current one; other sessions end.

    API tokens are separate credentials and survive unless `revoke_tokens` is
    given (the page offers it, ticked): then every live token is revoked in the
    same transaction. Returns how many were.
    """
    if not check_password_hash(user.password_hash, current_password):
        raise InvalidInput("current_password", "The current password is not right.")
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            "new_password", "The password needs at least %(n)s characters.", n=MIN_PASSWORD_LENGTH
        )
    user.password_hash = hash_password(new_password)
    # A stolen session cookie must not outlive the password it was made with.
    user.session_epoch += 1
    revoked = _revoke_live_tokens(user) if revoke_tokens else 0
    db.session.commit()
    return revoked


def _revoke_live_tokens(user: User) -> int:
    result = db.session.execute(
        sa.update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount


def update_profile(user: User, *, display_name: str, time_zone: str, language: str) -> None:
    """Display name, time zone ("" = the site default) and language ("" = the browser's)."""
    display_name = display_name.strip()
    check_name("display_name", display_name)
    if len(display_name) > MAX_DISPLAY_NAME:
        raise InvalidInput(
            "display_name", "The name is longer than %(n)s characters.", n=MAX_DISPLAY_NAME
        )
    if time_zone and time_zone not in available_timezones():
        raise InvalidInput("time_zone", "Choose a time zone from the list.")
    if language and language not in SUPPORTED_LANGUAGES:
        raise InvalidInput("language", "Choose a language from the list.")
    user.display_name = display_name
    user.time_zone = time_zone
    user.language = language
    db.session.commit()


def end_sessions(user: User) -> None:
    """Invalidate every browser session of the user (signing out)."""
    user.session_epoch += 1
    db.session.commit()
