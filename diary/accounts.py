"""Users and their API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import available_timezones

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import InvalidInput
from .extensions import db
from .models import ApiToken, User, utcnow
from .token_cache import current_token_cache

TOKEN_PREFIX = "diary_"  # noqa: S105 (a visible prefix, not a secret)
MIN_PASSWORD_LENGTH = 8
# Recording every use would turn each read into a write; once a minute is enough
# for "last used" to be useful.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_user(email: str, password: str, display_name: str = "") -> User:
    email = normalise_email(email)
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > 254:
        raise InvalidInput("email", "Enter a valid email address.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            "password", f"The password needs at least {MIN_PASSWORD_LENGTH} characters."
        )
    if db.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise InvalidInput("email", "An account with this email already exists.")
    user = User(
        email=email,
        password_hash=generate_password_hash(password),
        display_name=display_name.strip()[:100],
    )
    db.session.add(user)
    db.session.commit()
    return user


def find_user(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == normalise_email(email)))


def authenticate(email: str, password: str) -> User | None:
    user = find_user(email)
    if user is None:
        # Spend the same time as a real check so timing does not reveal accounts.
        check_password_hash(generate_password_hash("x"), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User, name: str) -> tuple[ApiToken, str]:
    """Create a token; the plain text is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("name", "Give the token a name of 1 to 100 characters.")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_token(plain))
    db.session.add(token)
    db.session.commit()
    return token, plain


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """The user a live token speaks for, as the token check read them; not an ORM object.

    `id` is the user's id, so domain functions that only need `user.id` accept
    it; `timeline_version` says whether a cached page of theirs is still
    current (diary/page_cache.py).
    """

    id: int
    timeline_version: int


_TOKEN_OWNER = (
    sa.select(ApiToken.id, ApiToken.user_id, ApiToken.last_used_at, User.timeline_version)
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == sa.bindparam("token_hash"), ApiToken.revoked_at.is_(None))
)


def owner_of_token(plain: str) -> TokenOwner | None:
    """The owner of a live token, or None for an unknown or revoked one.

    Every API request pays for this. A token this worker checked a moment ago
    is taken from the token cache while the change feed has had no notice for
    its owner (diary/token_cache.py): no database round trip at all.
    Otherwise it is one statement on a connection in autocommit mode, outside
    the request's session: no BEGIN and ROLLBACK round trips around it and no
    ORM object, which a cached page needs neither of.
    """
    token_hash = hash_token(plain)
    tokens = current_token_cache()
    if tokens is not None and (owner := tokens.get(token_hash)) is not None:
        return owner
    # Before the read: a change committed after it is then sure to void the entry.
    mark = tokens.mark() if tokens is not None else None
    autocommit = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with autocommit as connection:
        row = connection.execute(_TOKEN_OWNER, {"token_hash": token_hash}).first()
        if row is None:
            return None
        token_id, user_id, last_used_at, timeline_version = row
        now = utcnow()
        if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
            connection.execute(
                sa.update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now)
            )
    owner = TokenOwner(user_id, timeline_version)
    if tokens is not None and mark is not None:
        tokens.put(token_hash, owner, mark)
    return owner


def list_tokens(user: User) -> list[ApiToken]:
    return list(
        db.session.scalars(
            sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
        )
    )


def revoke_token(user: User, token_id: int) -> bool:
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        return False
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.commit()
    return True


# --- the account settings pages (issue 3) ----------------------------------

SUPPORTED_LANGUAGES = ("ja", "en")
MAX_DISPLAY_NAME = 100


def change_password(user: User, current_password: str, new_password: str) -> None:
    """Replace the password after checking the current one; other sessions end."""
    if not check_password_hash(user.password_hash, current_password):
        raise InvalidInput("current_password", "The current password is not right.")
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            "new_password", f"The password needs at least {MIN_PASSWORD_LENGTH} characters."
        )
    user.password_hash = generate_password_hash(new_password)
    # A stolen session cookie must not outlive the password it was made with.
    user.session_epoch += 1
    db.session.commit()


def update_profile(user: User, *, display_name: str, time_zone: str, language: str) -> None:
    """Display name, time zone ("" = the site default) and language ("" = the browser's)."""
    display_name = display_name.strip()
    if len(display_name) > MAX_DISPLAY_NAME:
        raise InvalidInput(
            "display_name", f"The name is longer than {MAX_DISPLAY_NAME} characters."
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
