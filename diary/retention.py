"""Trash retention: entries in Trash longer than TRASH_DAYS are removed for good, photos too."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload

from .extensions import db
from .images import object_keys
from .models import Entry, utcnow
from .storage import current_storage

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
