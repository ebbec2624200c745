"""Diary entries: the rules shared by the JSON API, the pages and the original contract."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import make_transient_to_detached, selectinload
from werkzeug.datastructures import FileStorage

from . import search
from .errors import InvalidInput, NotFound
from .extensions import db
from .images import (
    IncomingImage,
    close_all,
    inspect_uploads,
    new_storage_prefix,
    object_keys,
    variant_key,
)
from .infra.storage import StorageUnavailable, current_storage
from .inputs import possible_id, storable
from .models import Entry, Image, User, is_live, is_trashed
from .timestamps import utcnow

log = logging.getLogger(__name__)

MAX_IMAGES_PER_ENTRY = 20


def clean_text(text: str | None, *, has_images: bool) -> str:
    text = (text or "").strip()
    # Werkzeug replaces undecodable bytes in form fields with U+FFFD.
    if "\ufffd" in text:
        raise InvalidInput("text", "The text is not valid UTF-8.")
    if "\x00" in text:
        raise InvalidInput("text", "The text contains a NUL character.")
    if not storable(text):
        # Only JSON ("\ud800") and files can carry one; no database can hold it.
        raise InvalidInput("text", "The text contains a lone surrogate, which is not Unicode.")
    limit = current_app.config["MAX_ENTRY_CHARS"]
    if len(text) > limit:
        raise InvalidInput("text", "The text is longer than %(n)s characters.", n=limit)
    if not text and not has_images:
        raise InvalidInput("text", "Write something or add a photo.")
    return text


def live_entries(user: User) -> sa.Select[tuple[Entry]]:
    """The user's live entries, to narrow further."""
    return sa.select(Entry).where(is_live(user))


def get_entry(user: User, entry_id: int) -> Entry:
    """The user's live entry; anything else (another user's, trashed, absent) is a 404."""
    if not possible_id(entry_id):
        raise NotFound("entry_id", "No such entry.")
    entry = db.session.scalar(
        live_entries(user).where(Entry.id == entry_id).options(selectinload(Entry.images))
    )
    if entry is None:
        raise NotFound("entry_id", "No such entry.")
    return entry


def chosen_files(uploads: Sequence[FileStorage]) -> list[FileStorage]:
    """The file parts that carry a photo.

    A browser's form with no file chosen sends one part with an empty name and
    no content: that is no photo, and is left out. A part with content but no
    file name comes from a client that lost the name on the way; it used to be
    dropped as if empty, the entry saved without the photo (201), so it is
    refused instead.
    """
    chosen = []
    for upload in uploads:
        if upload.filename:
            chosen.append(upload)
        elif _has_content(upload):
            raise InvalidInput(
                "file", "A file was sent without a file name; send each photo with its name."
            )
    return chosen


def _has_content(upload: FileStorage) -> bool:
    stream = upload.stream
    position = stream.tell()
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(position)
    return size > 0


def create_entry(user: User, text: str | None, uploads: Sequence[FileStorage] = ()) -> Entry:
    """Store the photos, then the row; if anything fails, nothing is left behind."""
    uploads = chosen_files(uploads)
    if len(uploads) > MAX_IMAGES_PER_ENTRY:
        raise InvalidInput("file", "At most %(n)s photos per entry.", n=MAX_IMAGES_PER_ENTRY)
    text = clean_text(text, has_images=bool(uploads))
    if not uploads:
        return _create_text_entry(user.id, text)
    incoming = inspect_uploads(uploads)

    # images=[]: the collection is known to be complete, so the entry can be
    # answered with as it is, without reading it back.
    entry = Entry(user_id=user.id, text=text, images=[])
    try:
        with photos_then_rows() as stored:
            attach_photos(entry, user.id, incoming, stored, start=0)
            db.session.add(entry)
            search.index_entry(entry)
    finally:
        close_all(incoming)
    return entry


def _create_text_entry(user_id: int, text: str) -> Entry:
    """An entry without photos, the common case, written without the ORM's unit of work.

    Its row, search terms and tags go in as plain statements (one on
    PostgreSQL); the Entry answered with is what the ORM would have read back,
    made without reading it. Saving text is the service's most frequent write;
    against the ORM's flush and two more round trips, this took the text POST
    from 1.62 to 1.29 ms of CPU in-process (`python -m bench.profile`).
    """
    now = utcnow()
    with photos_then_rows():  # no photos: the commit, or the rollback on failure
        entry_id = search.insert_entry(user_id, text, now)
    entry = Entry(
        id=entry_id,
        user_id=user_id,
        text=text,
        created_at=now,
        updated_at=now,
        deleted_at=None,
        images=[],
    )
    # Detached with every attribute loaded, as a committed entry read back would be:
    # added to a session it is the stored row, not a new one.
    make_transient_to_detached(entry)
    return entry


@contextmanager
def photos_then_rows() -> Iterator[list[str]]:
    """Photos are stored first, then the rows that refer to them are committed.

    Yields the list the block appends each stored key to. If anything in the
    block or the commit fails, the transaction is rolled back and exactly
    those objects are removed: a failed request leaves neither rows nor
    objects behind (an object whose removal fails is left to `storage gc`).
    """
    stored: list[str] = []
    try:
        yield stored
        db.session.commit()
    except BaseException:
        db.session.rollback()
        discard_objects(stored)
        raise


def attach_photos(
    entry: Entry, user_id: int, incoming: Sequence[IncomingImage], stored: list[str], *, start: int
) -> None:
    """Store each photo and add its row to the entry, positions from `start`.

    Keys are appended to `stored` as they land, so the caller's failure path
    can remove exactly what was uploaded.
    """
    for position, image in enumerate(incoming, start=start):
        keys = store_image(user_id, image)
        stored.extend(keys)
        entry.images.append(image_row(image, keys, position))


def store_image(user_id: int, image: IncomingImage) -> list[str]:
    """Upload every size of a photo under one fresh prefix; the keys, original first.

    If one size fails, the sizes already uploaded are removed before the error
    goes on, so the caller only ever has to clean up what this returned.
    """
    prefix = new_storage_prefix(user_id)
    keys: list[str] = []
    try:
        for variant in image.variants:
            key = variant_key(prefix, variant)
            current_storage().put(key, variant.stream, content_type=variant.content_type)
            keys.append(key)
    except BaseException:
        discard_objects(keys)
        raise
    return keys


def image_row(image: IncomingImage, keys: Sequence[str], position: int) -> Image:
    """The Image row for a stored photo: the original's facts and each size's."""
    row = Image(
        storage_key=keys[0],
        content_type=image.content_type,
        byte_size=image.byte_size,
        width=image.width,
        height=image.height,
        original_filename=image.original_filename,
        position=position,
    )
    for variant, key in zip(image.variants[1:], keys[1:], strict=True):
        record_size(row, variant.name, key, variant.width, variant.height, variant.byte_size)
    return row


def record_size(row: Image, size: str, key: str, width: int, height: int, byte_size: int) -> None:
    setattr(row, f"{size}_key", key)
    setattr(row, f"{size}_width", width)
    setattr(row, f"{size}_height", height)
    setattr(row, f"{size}_bytes", byte_size)


def discard_objects(keys: Sequence[str]) -> None:
    """Best-effort removal of objects whose row was never written."""
    if not keys:
        return
    try:
        current_storage().delete(keys)
    except StorageUnavailable:
        # `flask storage gc` finds objects without a row and removes them later.
        log.error("could not remove %d orphaned object(s): %s", len(keys), ", ".join(keys))


def update_entry_text(user: User, entry_id: int, text: str | None) -> Entry:
    entry = get_entry(user, entry_id)
    if text is None:
        raise InvalidInput("text", "Send the new text.")
    entry.text = clean_text(text, has_images=bool(entry.images))
    search.index_entry(entry)
    db.session.commit()
    return get_entry(user, entry_id)


def trash_entry(user: User, entry_id: int) -> None:
    """Soft delete: the entry leaves the timeline but can be restored."""
    entry = get_entry(user, entry_id)
    entry.deleted_at = utcnow()
    db.session.commit()


class LegacyRow(NamedTuple):
    id: int
    created_at: datetime
    updated_at: datetime
    text: str
    image_key: str | None


def _legacy_batch() -> tuple[sa.Select[tuple], sa.Select[tuple]]:
    """`GET /`'s statements, the first batch and each later one, built once.

    Plain (Core) statements on the tables with the user and the place in the
    keyset as bound parameters: building the statement for each request and
    running it through the ORM was about a quarter of `GET /`'s CPU.
    """
    entries, images = Entry.__table__.c, Image.__table__.c
    first_image = (
        sa.select(images.storage_key)
        .where(images.entry_id == entries.id)
        .order_by(images.position)
        .limit(1)
        .scalar_subquery()
    )
    first = (
        sa.select(entries.id, entries.created_at, entries.updated_at, entries.text, first_image)
        .where(is_live(sa.bindparam("user_id", type_=sa.Integer)))
        .order_by(entries.created_at, entries.id)
        .limit(sa.bindparam("batch_size", type_=sa.Integer))
    )
    after = sa.tuple_(entries.created_at, entries.id) > sa.tuple_(
        sa.bindparam("after_created_at", type_=entries.created_at.type),
        sa.bindparam("after_id", type_=sa.Integer),
    )
    return first, first.where(after)


_LEGACY_FIRST_BATCH, _LEGACY_NEXT_BATCH = _legacy_batch()


def iter_legacy_rows(user: User, batch_size: int = 500) -> Iterator[LegacyRow]:
    """All live entries oldest first, as plain rows read a batch at a time.

    Used to stream the original `GET /`: memory stays flat however long the
    diary is, because neither the rows nor ORM objects are held. Batches are
    keyset pages of the timeline index, each an ordinary query: a diary of a
    few dozen entries is one statement, with no server-side cursor to open,
    fetch from and close. The first batch is read when iterated, inside the
    streamed response.
    """
    where = {"user_id": user.id, "batch_size": batch_size}

    def rows() -> Iterator[LegacyRow]:
        batch = db.session.execute(_LEGACY_FIRST_BATCH, where).all()
        while batch:
            yield from map(LegacyRow._make, batch)
            if len(batch) < batch_size:
                return
            last = batch[-1]
            batch = db.session.execute(
                _LEGACY_NEXT_BATCH,
                {**where, "after_created_at": last.created_at, "after_id": last.id},
            ).all()

    return rows()


# --- editing, Trash and permanent deletion -----------------------------------


def update_entry(
    user: User,
    entry_id: int,
    text: str | None,
    *,
    uploads: Sequence[FileStorage] = (),
    remove_image_ids: Sequence[int] = (),
    image_order: Sequence[int] = (),
) -> Entry:
    """Change the text, add photos, remove photos and reorder them in one step.

    `image_order` lists image ids in the wanted order; photos it leaves out keep
    their relative order after the listed ones, and new photos go last. New
    photos are stored before the row changes and removed again if anything
    fails; removed photos leave storage only once the change is committed.
    """
    entry = get_entry(user, entry_id)
    by_id = {image.id: image for image in entry.images}
    unknown = [image_id for image_id in (*remove_image_ids, *image_order) if image_id not in by_id]
    if unknown:
        # Another entry's photo, or one that does not exist: the same answer.
        raise InvalidInput("images", "A photo in the request does not belong to this entry.")
    uploads = chosen_files(uploads)
    removing = set(remove_image_ids)
    keeping = [image for image in entry.images if image.id not in removing]
    if len(keeping) + len(uploads) > MAX_IMAGES_PER_ENTRY:
        raise InvalidInput("file", "At most %(n)s photos per entry.", n=MAX_IMAGES_PER_ENTRY)
    entry.text = clean_text(text, has_images=bool(keeping or uploads))
    incoming = inspect_uploads(uploads)

    rank = {image_id: number for number, image_id in enumerate(image_order)}
    keeping.sort(key=lambda image: (rank.get(image.id, len(rank)), image.position, image.id))
    removed_keys = [
        key for image in entry.images if image.id in removing for key in object_keys(image)
    ]
    try:
        with photos_then_rows() as stored:
            for image in [image for image in entry.images if image.id in removing]:
                entry.images.remove(image)
            for position, image in enumerate(keeping):
                image.position = position
            attach_photos(entry, user.id, incoming, stored, start=len(keeping))
            entry.updated_at = utcnow()
            search.index_entry(entry)
    finally:
        close_all(incoming)
    discard_objects(removed_keys)
    return get_entry(user, entry_id)


def trashed_entries(user: User) -> sa.Select[tuple[Entry]]:
    """The user's entries in Trash: the complement of is_live."""
    return sa.select(Entry).where(is_trashed(user))


def get_trashed_entry(user: User, entry_id: int) -> Entry:
    """The user's entry in Trash; anything else is a 404."""
    if not possible_id(entry_id):
        raise NotFound("entry_id", "No such entry in Trash.")
    entry = db.session.scalar(
        trashed_entries(user).where(Entry.id == entry_id).options(selectinload(Entry.images))
    )
    if entry is None:
        raise NotFound("entry_id", "No such entry in Trash.")
    return entry


def restore_entry(user: User, entry_id: int) -> Entry:
    """Bring an entry back from Trash to the timeline, where it was."""
    entry = get_trashed_entry(user, entry_id)
    entry.deleted_at = None
    db.session.commit()
    return get_entry(user, entry_id)


def delete_entry_forever(user: User, entry_id: int) -> None:
    """Remove a trashed entry and its photos for good.

    The objects go first: if storage is unreachable the entry stays in Trash
    and the user can try again, rather than leaving photos nobody can reach.
    """
    entry = get_trashed_entry(user, entry_id)
    keys = [key for image in entry.images for key in object_keys(image)]
    if keys:
        current_storage().delete(keys)
    db.session.delete(entry)
    db.session.commit()
