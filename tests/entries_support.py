"""Helpers for tests of search, tags, calendar, archive and maintenance: entries made directly."""

from __future__ import annotations

import io
from datetime import datetime

from flask import Flask
from werkzeug.datastructures import FileStorage

from diary.entries import create_entry
from diary.extensions import db
from diary.models import Entry, User


def add_entry(
    app: Flask,
    user: User,
    text: str,
    *,
    when: datetime | None = None,
    photos: tuple[bytes, ...] = (),
    trashed_at: datetime | None = None,
) -> int:
    """Write an entry through the domain (so it is indexed), optionally back-dated."""
    with app.app_context():
        owner = db.session.get(User, user.id)
        uploads = [
            FileStorage(io.BytesIO(data), filename=f"photo{number}.jpg")
            for number, data in enumerate(photos, start=1)
        ]
        entry = create_entry(owner, text, uploads)
        if when is not None or trashed_at is not None:
            row = db.session.get(Entry, entry.id)
            if when is not None:
                row.created_at = when
                row.updated_at = when
            row.deleted_at = trashed_at
            db.session.commit()
        return entry.id
