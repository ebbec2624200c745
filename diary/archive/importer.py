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
from ..errors import ContentTooLarge, InvalidInput
from ..extensions import db
from ..images import IncomingImage, inspect_upload
from ..models import Entry, EntryImport, User
from .readers import (
    MAX_JSON_BYTES,
    MAX_TOTAL_BYTES,
    ImportResult,
    IncomingEntry,
    IncomingPhoto,
    SourceBucket,
    _load_json,
    _read_member,
    _refuse,
    open_archive,
    read_day_one,
    read_diary_export,
    read_original_service,
)


def import_entries(user: User, records: Sequence[IncomingEntry]) -> ImportResult:
    """Add the records not imported before, all in one transaction; nothing on failure."""
    # Check everything first, so a bad record at the end stores nothing.
    for record in records:
        if len(record.photos) > MAX_IMAGES_PER_ENTRY:
            raise _refuse(f"{record.label}: more than {MAX_IMAGES_PER_ENTRY} photos.")
        try:
            record.text = clean_text(record.text, has_images=bool(record.photos))
        except InvalidInput as error:
            raise _refuse(f"{record.label}: {error.message}") from None

    known = set(
        db.session.scalars(sa.select(EntryImport.import_key).where(EntryImport.user_id == user.id))
    )
    fresh: list[IncomingEntry] = []
    for record in records:
        if record.import_key not in known:
            known.add(record.import_key)
            fresh.append(record)

    with photos_then_rows() as stored:
        for record in fresh:
            entry = Entry(
                user_id=user.id,
                text=record.text,
                created_at=record.created_at,
                updated_at=record.updated_at,
            )
            for position, photo in enumerate(record.photos):
                image = _checked_photo(photo, record.label)
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


def _checked_photo(photo: IncomingPhoto, label: str) -> IncomingImage:
    data = photo.read()
    upload = FileStorage(io.BytesIO(data), filename=photo.original_filename)
    try:
        return inspect_upload(upload)
    except InvalidInput as error:
        name = photo.original_filename or "a photo"
        raise _refuse(f"{label}: {name}: {error.message}") from None


def import_file(
    user: User,
    stream: IO[bytes],
    *,
    source: SourceBucket | None = None,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> ImportResult:
    """Import a diary export ZIP, a Day One export (ZIP or JSON) or the original service's JSON.

    The kind is told from the content, not the name.
    """
    head = stream.read(4)
    stream.seek(0)
    if head.startswith(b"PK"):
        with open_archive(stream, max_total_bytes=max_total_bytes) as archive:
            if "entries.json" in archive.NameToInfo:
                return import_entries(user, read_diary_export(archive))
            journals = [
                name
                for name in archive.NameToInfo
                if name.endswith(".json") and "/" not in name.rstrip("/")
            ]
            if len(journals) != 1:
                raise _refuse(
                    "The archive is neither a diary export (entries.json) "
                    "nor a Day One export (one journal .json)."
                )
            document = _load_json(_read_member(archive, journals[0], MAX_JSON_BYTES), journals[0])
            return import_entries(user, read_day_one(document, archive))
    data = stream.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ContentTooLarge("file", f"The file is larger than {MAX_JSON_BYTES} bytes.")
    document = _load_json(data, "The file")
    if isinstance(document, list):
        return import_entries(user, read_original_service(document, source))
    if isinstance(document, dict) and "entries" in document and "metadata" in document:
        return import_entries(user, read_day_one(document, None))
    raise _refuse(
        "The file is not one we can import: a diary export ZIP, a Day One export, "
        "or the original service's JSON array."
    )
