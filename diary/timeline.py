"""Pages of entries, newest first: the keyset cursor and the views lists are made of.

Lists are the most frequent read there is (every API page, every timeline,
search and tag page), so they are read as plain rows into frozen views rather
than ORM objects: building 40 tracked instances for a page of 20 entries with
20 photos took about 1.6 ms of CPU (the whole API page, with the one-statement
token check, went from 4.1 to about 3 ms in-process; docs/performance.md).
The views carry the attribute names of Entry and Image, so the templates and
the API serialise either. Anything that changes an entry loads the ORM object
(diary.entries); nothing writes through a view.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from . import search, tags
from .errors import InvalidInput
from .extensions import db
from .inputs import possible_id, whole_number
from .models import Entry, Image, User, is_live, is_trashed
from .timestamps import in_diary_range

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the (created_at, id) of its last entry, opaque to clients."""

    created_at: datetime
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """The cursor a client sent back; anything this app could not have made is a 400.

        Which includes ids past the INTEGER column, Infinity, and dates whose
        conversion to UTC overflows: each was a 500 in the query.
        """
        invalid = InvalidInput("cursor", "The cursor is not valid; use next_cursor as given.")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            created_at, entry_id = json.loads(raw)
            moment = in_diary_range(datetime.fromisoformat(created_at))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError):
            raise invalid from None
        if moment is None or type(entry_id) is not int or not possible_id(entry_id):
            raise invalid
        return cls(moment, entry_id)


def parse_cursor(raw: str | None) -> Cursor | None:
    """The cursor a client sent back (API `cursor`, pages `before`), or None for the first page."""
    return Cursor.decode(raw) if raw else None


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    limit = whole_number(raw)
    if limit is None or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(
            "limit", "limit must be a whole number from 1 to %(n)s.", n=MAX_PAGE_SIZE
        )
    return limit


@dataclass(frozen=True, slots=True)
class PhotoView:
    """An Image as a list shows it; the attributes are Image's."""

    id: int
    storage_key: str
    content_type: str
    width: int
    height: int
    byte_size: int
    original_filename: str
    display_key: str | None
    display_width: int | None
    display_height: int | None
    thumb_key: str | None
    thumb_width: int | None
    thumb_height: int | None


@dataclass(frozen=True, slots=True)
class EntryView:
    """An Entry as a list shows it, with its photos in order; the attributes are Entry's."""

    id: int
    text: str
    created_at: datetime
    updated_at: datetime
    images: tuple[PhotoView, ...]


@dataclass
class EntryPage:
    items: list[EntryView]
    next_cursor: str | None


# Table columns, not ORM attributes: a plain (Core) statement skips the ORM's
# statement handling, which a list does not need (rows go into views).
_ENTRIES = Entry.__table__.c
_IMAGES = Image.__table__.c
_ENTRY_COLUMNS = (_ENTRIES.id, _ENTRIES.text, _ENTRIES.created_at, _ENTRIES.updated_at)
_PHOTO_COLUMNS = (
    _IMAGES.id,
    _IMAGES.storage_key,
    _IMAGES.content_type,
    _IMAGES.width,
    _IMAGES.height,
    _IMAGES.byte_size,
    _IMAGES.original_filename,
    _IMAGES.display_key,
    _IMAGES.display_width,
    _IMAGES.display_height,
    _IMAGES.thumb_key,
    _IMAGES.thumb_width,
    _IMAGES.thumb_height,
)


# The values each list statement takes: whose entries, how many, and from where.
_USER = sa.bindparam("user_id", type_=sa.Integer)
_BEFORE = sa.tuple_(_ENTRIES.created_at, _ENTRIES.id) < sa.tuple_(
    sa.bindparam("before_created_at", type_=_ENTRIES.created_at.type),
    sa.bindparam("before_id", type_=sa.Integer),
)


@dataclass(frozen=True)
class _PageStatements:
    """One list's statements: its first page and the pages after a cursor."""

    first: sa.Select[tuple]
    after_cursor: sa.Select[tuple]

    @classmethod
    def of(cls, which: sa.ColumnElement[bool]) -> _PageStatements:
        """Newest first, the page's entries joined with their photos, in one statement.

        One entry more than asked is read (`limit` is the page size plus one),
        to know whether there is a next page. An entry with photos comes back
        once per photo.
        """

        def statement(where: sa.ColumnElement[bool]) -> sa.Select[tuple]:
            page = (
                sa.select(*_ENTRY_COLUMNS)
                .where(where)
                .order_by(_ENTRIES.created_at.desc(), _ENTRIES.id.desc())
                .limit(sa.bindparam("limit", type_=sa.Integer))
                .subquery("page")
            )
            return (
                sa.select(page, *_PHOTO_COLUMNS)
                .outerjoin(Image.__table__, _IMAGES.entry_id == page.c.id)
                .order_by(page.c.created_at.desc(), page.c.id.desc(), _IMAGES.position, _IMAGES.id)
            )

        return cls(statement(which), statement(sa.and_(which, _BEFORE)))


# The timeline and the API's plain list, the most frequent reads there are, run
# statements built once: building one for each request was about a tenth of an
# API page's CPU.
_LIVE = _PageStatements.of(is_live(_USER))
_TRASH = _PageStatements.of(is_trashed(_USER))


def list_entries(
    user: User,
    *,
    limit: int,
    cursor: Cursor | None = None,
    q: str | None = None,
    tag: str | None = None,
) -> EntryPage:
    """One page of live entries. Keyset paging: the cost does not grow with the page number.

    `q` keeps the entries whose text contains it (diary.search), `tag` those
    carrying that #tag (diary.tags).
    """
    statements = _LIVE
    if q or tag:
        which = is_live(_USER)
        if q:
            which = sa.and_(which, search.matching(user, q))
        if tag:
            which = sa.and_(which, tags.tagged_with(user, tag))
        statements = _PageStatements.of(which)
    return _page(statements, user, limit, cursor)


def list_trash(user: User, *, limit: int, cursor: Cursor | None = None) -> EntryPage:
    """Trashed entries, newest first, paged by the same keyset cursor as the timeline."""
    return _page(_TRASH, user, limit, cursor)


def _page(statements: _PageStatements, user: User, limit: int, cursor: Cursor | None) -> EntryPage:
    """The page from `cursor` (the first page without one); the extra entry read is dropped."""
    values = {"user_id": user.id, "limit": limit + 1}
    if cursor is None:
        rows = db.session.execute(statements.first, values)
    else:
        values |= {"before_created_at": cursor.created_at, "before_id": cursor.id}
        rows = db.session.execute(statements.after_cursor, values)
    found: list[tuple[tuple, list[PhotoView]]] = []
    for entry_id, text, created_at, updated_at, photo_id, *photo in rows:
        if not found or found[-1][0][0] != entry_id:
            found.append(((entry_id, text, created_at, updated_at), []))
        if photo_id is not None:
            found[-1][1].append(PhotoView(photo_id, *photo))
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        last_id, _, last_created_at, _ = found[-1][0]
        next_cursor = Cursor(last_created_at, last_id).encode()
    return EntryPage(
        [EntryView(*entry, images=tuple(photos)) for entry, photos in found], next_cursor
    )
