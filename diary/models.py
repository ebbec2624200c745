"""The tables: users, their entries, the entries' images and API tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db
from .timestamps import utcnow


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL keeps the zone; SQLite has no such type, so values are stored as
    naive UTC (which still sorts correctly) and made aware again when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased, so the unique constraint is case-insensitive on every backend.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    display_name: Mapped[str] = mapped_column(sa.String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Empty means "not chosen": the site default time zone, the browser's language.
    time_zone: Mapped[str] = mapped_column(sa.String(64), default="", server_default="")
    language: Mapped[str] = mapped_column(sa.String(8), default="", server_default="")
    # Raised when the user signs out or changes the password: every browser
    # session stamped with an older value is no longer accepted.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")

    entries: Mapped[list[Entry]] = relationship(back_populates="owner", lazy="raise")
    tokens: Mapped[list[ApiToken]] = relationship(back_populates="owner", lazy="raise")


class Entry(db.Model):
    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    owner: Mapped[User] = relationship(back_populates="entries", lazy="raise")
    images: Mapped[list[Image]] = relationship(
        back_populates="entry",
        order_by="Image.position",
        cascade="all, delete-orphan",
        lazy="raise",
    )

    __table_args__ = (
        # Serves the timeline and the API list: one user's live entries, newest
        # first, with (created_at, id) as the keyset cursor. A B-tree is read
        # backwards just as fast, so plain columns serve the DESC order (and keep
        # the index comparable by `flask db check`).
        sa.Index(
            "ix_entries_user_timeline",
            "user_id",
            "created_at",
            "id",
            postgresql_where=sa.text("deleted_at IS NULL"),
            sqlite_where=sa.text("deleted_at IS NULL"),
        ),
    )


def is_live(user: User | sa.BindParameter[int]) -> sa.ColumnElement[bool]:
    """The one definition of a live entry: the user's, on the timeline, not in Trash.

    Every list, count, search, tag, calendar and export reads entries through
    it; ix_entries_user_timeline above is the index it is served by. `user`
    may be a bound parameter standing for the user's id, in a statement built
    once and run for every request. The columns are the table's, so a plain
    (Core) statement stays one; an ORM statement takes them just the same.
    """
    columns = Entry.__table__.c
    return sa.and_(columns.user_id == _user_id(user), columns.deleted_at.is_(None))


def is_trashed(user: User | sa.BindParameter[int]) -> sa.ColumnElement[bool]:
    """The user's entries in Trash: the complement of is_live, taking `user` the same ways."""
    columns = Entry.__table__.c
    return sa.and_(columns.user_id == _user_id(user), columns.deleted_at.is_not(None))


def _user_id(user: User | sa.BindParameter[int]) -> int | sa.BindParameter[int]:
    return user if isinstance(user, sa.BindParameter) else user.id


class Image(db.Model):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        sa.ForeignKey("entries.id", ondelete="CASCADE"), index=True
    )
    storage_key: Mapped[str] = mapped_column(sa.String(512), unique=True)
    content_type: Mapped[str] = mapped_column(sa.String(100))
    byte_size: Mapped[int] = mapped_column(sa.BigInteger)
    width: Mapped[int]
    height: Mapped[int]
    original_filename: Mapped[str] = mapped_column(sa.String(255), default="")
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The sizes made from the original, beside it under the same key prefix.
    # Empty for photos stored before sizes existed, until `flask storage backfill`.
    display_key: Mapped[str | None] = mapped_column(sa.String(512))
    display_width: Mapped[int | None]
    display_height: Mapped[int | None]
    display_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    thumb_key: Mapped[str | None] = mapped_column(sa.String(512))
    thumb_width: Mapped[int | None]
    thumb_height: Mapped[int | None]
    thumb_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)

    entry: Mapped[Entry] = relationship(back_populates="images", lazy="raise")


class ApiToken(db.Model):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    # Only the SHA-256 of the token is kept: a leaked database leaks no tokens.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    owner: Mapped[User] = relationship(back_populates="tokens", lazy="raise")


# --- search, tags and imports -------------------------------------------------


class EntryTerm(db.Model):
    """One character bigram (or single character) of an entry's text, for search.

    Japanese has no spaces, so words cannot be split out; every pair of
    adjacent characters is indexed instead, and a query matches the entries
    holding all of its pairs. The primary key (user_id, term, entry_id) is the
    B-tree the search reads: one user's entries for one term, without touching
    anyone else's rows, on any PostgreSQL (no extension needed) and on SQLite.
    """

    __tablename__ = "entry_terms"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    term: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        sa.ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class EntryTag(db.Model):
    """A `#tag` written in an entry's text, lower-cased; kept in step with the text."""

    __tablename__ = "entry_tags"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        sa.ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class EntryImport(db.Model):
    """Which imported record an entry came from, so importing a file twice adds nothing."""

    __tablename__ = "entry_imports"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # sha256 of the record's creation time and text: the same entry from the
    # same (or another) source has the same key.
    import_key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        sa.ForeignKey("entries.id", ondelete="CASCADE"), index=True
    )


# --- sign-in throttling -------------------------------------------------------


class RateLimitCounter(db.Model):
    """One fixed-window count of a throttle, when RATELIMIT_STORAGE_URI is database://.

    diary/infra/rate_limits.py keeps these: the key is the limit's (e.g. failed
    sign-ins of one account in the current 15 minutes), `hits` the count so far,
    and the window ends at `expires_at`, when the next hit starts a new one.
    """

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    hits: Mapped[int]
    # Serves the periodic delete of windows that have ended.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
