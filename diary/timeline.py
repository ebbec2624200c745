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

from . import entries, search, tags
from .errors import InvalidInput
from .extensions import db
from .models import Entry, Image, User

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
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            created_at, entry_id = json.loads(raw)
            parsed = cls(datetime.fromisoformat(created_at), int(entry_id))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise InvalidInput(
                "cursor", "The cursor is not valid; use next_cursor as given."
            ) from None
        if parsed.created_at.tzinfo is None:
            raise InvalidInput("cursor", "The cursor is not valid; use next_cursor as given.")
        return parsed


def parse_cursor(raw: str | None) -> Cursor | None:
    """The cursor a client sent back (API `cursor`, pages `before`), or None for the first page."""
    return Cursor.decode(raw) if raw else None


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidInput(
            "limit", "limit must be a whole number from 1 to %(n)s.", n=MAX_PAGE_SIZE
        )
    return int(raw)


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


_ENTRY_COLUMNS = (Entry.id, Entry.text, Entry.created_at, Entry.updated_at)
_PHOTO_COLUMNS = (
    Image.entry_id,
    Image.id,
    Image.storage_key,
    Image.content_type,
    Image.width,
    Image.height,
    Image.byte_size,
    Image.original_filename,
    Image.display_key,
    Image.display_width,
    Image.display_height,
    Image.thumb_key,
    Image.thumb_width,
    Image.thumb_height,
)


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
    query = entries.live_entries(user).with_only_columns(*_ENTRY_COLUMNS)
    if q:
        query = query.where(search.matching(user, q))
    if tag:
        query = query.where(tags.tagged_with(user, tag))
    return _page(query, limit, cursor)


def list_trash(user: User, *, limit: int, cursor: Cursor | None = None) -> EntryPage:
    """Trashed entries, newest first, paged by the same keyset cursor as the timeline."""
    query = entries.trashed_entries(user).with_only_columns(*_ENTRY_COLUMNS)
    return _page(query, limit, cursor)


def _page(query: sa.Select[tuple], limit: int, cursor: Cursor | None) -> EntryPage:
    """Newest first from `cursor`, one row more than asked to know if there is a next page.

    Two statements whatever the page size or photo count: the entries, then
    all their photos.
    """
    if cursor is not None:
        query = query.where(
            sa.tuple_(Entry.created_at, Entry.id) < sa.tuple_(cursor.created_at, cursor.id)
        )
    rows = db.session.execute(
        query.order_by(Entry.created_at.desc(), Entry.id.desc()).limit(limit + 1)
    ).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = Cursor(rows[-1].created_at, rows[-1].id).encode()
    photos = _photos_of([row.id for row in rows])
    items = [EntryView(*row, images=tuple(photos.get(row.id, ()))) for row in rows]
    return EntryPage(items, next_cursor)


def _photos_of(entry_ids: list[int]) -> dict[int, list[PhotoView]]:
    if not entry_ids:
        return {}
    photos: dict[int, list[PhotoView]] = {}
    query = (
        sa.select(*_PHOTO_COLUMNS)
        .where(Image.entry_id.in_(entry_ids))
        .order_by(Image.entry_id, Image.position, Image.id)
    )
    for entry_id, *columns in db.session.execute(query):
        photos.setdefault(entry_id, []).append(PhotoView(*columns))
    return photos
