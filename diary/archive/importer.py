"""Import records into a diary: all or nothing, and nothing twice.

Every record is checked before anything is written, photos are stored before
the rows, and if anything fails the rows are rolled back and the stored
photos removed. Each imported entry records a key (a hash of its time and
text), so importing the same file twice adds nothing the second time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import IO

import sqlalchemy as sa
from werkzeug.datastructures import FileStorage

from .. import search
from ..entries import MAX_IMAGES_PER_ENTRY, clean_text, image_row, photos_then_rows, store_image
from ..errors import ContentTooLarge, InvalidInput, Phrase
from ..extensions import db
from ..images import IncomingImage, PixelBudget, inspect_upload
from ..models import Entry, EntryImport, User
from .readers import (
    MAX_JSON_BYTES,
    MAX_TOTAL_BYTES,
    ImportResult,
    IncomingEntry,
    IncomingPhoto,
    SourceBucket,
    open_archive,
    read_day_one,
    read_diary_export,
    read_json_file,
)


def import_entries(
    user: User, records: Sequence[IncomingEntry], *, max_pixels: int | None = None
) -> ImportResult:
    """Add the records not imported before, all in one transaction; nothing on failure.

    With `max_pixels` (an import through the API), the photos together may
    decode at most that many pixels; each is checked before it is decoded.
    """
    # Check everything first, so a bad record at the end stores nothing.
    for record in records:
        if len(record.photos) > MAX_IMAGES_PER_ENTRY:
            raise InvalidInput(
                "file",
                "%(label)s: more than %(n)s photos.",
                label=record.label,
                n=MAX_IMAGES_PER_ENTRY,
            )
        try:
            record.text = clean_text(record.text, has_images=bool(record.photos))
        except InvalidInput as error:
            raise InvalidInput(
                "file", "%(label)s: %(error)s", label=record.label, error=error
            ) from None

    known = set(
        db.session.scalars(sa.select(EntryImport.import_key).where(EntryImport.user_id == user.id))
    )
    fresh: list[IncomingEntry] = []
    for record in records:
        if record.import_key not in known:
            known.add(record.import_key)
            fresh.append(record)

    budget = PixelBudget(max_pixels) if max_pixels is not None else None
    with photos_then_rows() as stored:
        for record in fresh:
            entry = Entry(
                user_id=user.id,
                text=record.text,
                created_at=record.created_at,
                updated_at=record.updated_at,
            )
            for position, photo in enumerate(record.photos):
                image = _checked_photo(photo, record.label, budget)
                try:
                    keys = store_image(user.id, image)
                finally:
                    image.close()
                stored.extend(keys)
                entry.images.append(image_row(image, keys, position))
            db.session.add(entry)
            search.index_entry(entry)
            db.session.add(
                EntryImport(user_id=user.id, import_key=record.import_key, entry_id=entry.id)
            )
    return ImportResult(imported=len(fresh), skipped=len(records) - len(fresh))


def _checked_photo(
    photo: IncomingPhoto, label: Phrase, budget: PixelBudget | None
) -> IncomingImage:
    data = photo.read()
    upload = FileStorage(io.BytesIO(data), filename=photo.original_filename)
    try:
        return inspect_upload(upload, budget=budget)
    except InvalidInput as error:
        name = photo.original_filename or Phrase("a photo")
        # A bad photo is bad input (400) like any bad record; one that would
        # decode too much stays a 413.
        values = {"label": label, "name": name, "error": error}
        if isinstance(error, ContentTooLarge):
            raise ContentTooLarge("file", "%(label)s: %(name)s: %(error)s", **values) from None
        raise InvalidInput("file", "%(label)s: %(name)s: %(error)s", **values) from None


def import_file(
    user: User,
    stream: IO[bytes],
    *,
    source: SourceBucket | None = None,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_pixels: int | None = None,
) -> ImportResult:
    """Import a diary export ZIP, a Day One export (ZIP or JSON) or the original service's JSON.

    The kind is told from the content, not the name. `max_pixels` bounds what
    the photos may decode in all (the API passes images.MAX_REQUEST_PIXELS).
    """
    head = stream.read(4)
    stream.seek(0)
    if head.startswith(b"PK"):
        with open_archive(stream, max_total_bytes=max_total_bytes) as archive:
            if "entries.json" in archive:
                records = read_diary_export(archive)
                return import_entries(user, records, max_pixels=max_pixels)
            journals = [
                name
                for name in archive.names()
                if name.endswith(".json") and "/" not in name.rstrip("/")
            ]
            if len(journals) != 1:
                raise InvalidInput(
                    "file",
                    "The archive is neither a diary export (entries.json) "
                    "nor a Day One export (one journal .json).",
                )
            with archive.member(journals[0], MAX_JSON_BYTES) as journal:
                records = read_day_one(journal, archive, journals[0])
            return import_entries(user, records, max_pixels=max_pixels)
    return import_entries(user, read_json_file(stream, source), max_pixels=max_pixels)
