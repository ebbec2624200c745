"""Keeping stored data tidy: Trash past its time, objects no row refers to, missing photo sizes.

- purge_trash: entries in Trash longer than TRASH_DAYS are removed for good, photos too;
- find_orphans: objects no row refers to (an upload whose request died, a delete
  that failed while S3 was unreachable), for `flask storage gc` to report or remove;
- backfill_image: the display size and thumbnail of a photo stored before sizes existed.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload

from .entries import photos_then_rows, record_size
from .extensions import db
from .images import make_sizes, object_keys, variant_key
from .infra.storage import StoredObject, current_storage
from .models import Entry, Image
from .timestamps import utcnow

log = logging.getLogger(__name__)

PURGE_BATCH = 200


@dataclass(frozen=True)
class PurgeResult:
    entries: int
    photos: int


def purge_cutoff(now: datetime | None = None) -> datetime:
    """Entries trashed before this moment are due for removal."""
    return (now or utcnow()) - timedelta(days=int(current_app.config["TRASH_DAYS"]))


def purge_trash(now: datetime | None = None) -> PurgeResult:
    """Remove every entry trashed more than TRASH_DAYS ago, with its photos, for all users.

    Batch by batch, the objects go first and the rows after: if storage fails
    the rows stay in Trash and the next run tries again, instead of rows gone
    and photos nobody can find.
    """
    cutoff = purge_cutoff(now)
    entries = photos = 0
    while True:
        batch = list(
            db.session.scalars(
                sa.select(Entry)
                .where(Entry.deleted_at.is_not(None), Entry.deleted_at < cutoff)
                .options(selectinload(Entry.images))
                .order_by(Entry.id)
                .limit(PURGE_BATCH)
            )
        )
        if not batch:
            break
        keys = [key for entry in batch for image in entry.images for key in object_keys(image)]
        if keys:
            current_storage().delete(keys)
        for entry in batch:
            db.session.delete(entry)
        db.session.commit()
        entries += len(batch)
        photos += sum(len(entry.images) for entry in batch)
        db.session.expunge_all()
    log.info("purged %d entries and %d photos trashed before %s", entries, photos, cutoff)
    return PurgeResult(entries, photos)


@dataclass
class GarbageReport:
    scanned: int
    orphans: list[StoredObject]


def known_keys() -> set[str]:
    """Every key a row refers to, read in batches."""
    keys: set[str] = set()
    query = sa.select(Image.storage_key, Image.display_key, Image.thumb_key).execution_options(
        yield_per=1000
    )
    for row in db.session.execute(query):
        keys.update(key for key in row if key)
    return keys


def find_orphans(grace: timedelta) -> GarbageReport:
    """Objects with no row, older than `grace` (younger ones may belong to an upload in flight)."""
    referenced = known_keys()
    cutoff = utcnow() - grace
    scanned = 0
    orphans: list[StoredObject] = []
    for stored in current_storage().iter_objects():
        scanned += 1
        if stored.key not in referenced and stored.last_modified < cutoff:
            orphans.append(stored)
    return GarbageReport(scanned, orphans)


def backfill_image(image: Image) -> None:
    """Make and store the missing sizes of one photo, then record them."""
    storage = current_storage()
    prefix = image.storage_key.rsplit("/", 1)[0] + "/"
    original = io.BytesIO(storage.get(image.storage_key))
    sizes = make_sizes(original, "file")
    try:
        with photos_then_rows() as stored:
            for variant in sizes:
                key = variant_key(prefix, variant)
                storage.put(key, variant.stream, content_type=variant.content_type)
                stored.append(key)
                record_size(
                    image, variant.name, key, variant.width, variant.height, variant.byte_size
                )
    finally:
        for variant in sizes:
            variant.stream.close()
