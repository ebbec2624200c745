"""Export a diary as one ZIP: entries.json, one Markdown file per entry, the photos.

Written as it is read: entries in batches, photos in chunks, the ZIP produced
piece by piece into a generator, so memory stays flat for a diary of any
length. The format is described in docs/export-format.md.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from .. import tags
from ..extensions import db
from ..infra.storage import current_storage
from ..models import Entry, Image, User, is_live
from ..timestamps import rfc3339, utcnow

FORMAT = "diary-export"
FORMAT_VERSION = 1
CHUNK_BYTES = 256 * 1024
EXPORT_BATCH = 100
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


@dataclass
class ExportPhoto:
    storage_key: str
    path: str
    content_type: str
    width: int
    height: int
    byte_size: int
    original_filename: str


@dataclass
class ExportEntry:
    id: int
    created_at: datetime
    updated_at: datetime
    text: str
    photos: list[ExportPhoto] = field(default_factory=list)

    @property
    def markdown_path(self) -> str:
        return f"entries/{self.created_at:%Y}/{self.created_at:%Y-%m-%d}-{self.id}.md"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "text": self.text,
            "tags": tags.extract_tags(self.text),
            "markdown": self.markdown_path,
            "photos": [
                {
                    "path": photo.path,
                    "content_type": photo.content_type,
                    "width": photo.width,
                    "height": photo.height,
                    "bytes": photo.byte_size,
                    "original_filename": photo.original_filename,
                }
                for photo in self.photos
            ],
        }

    def as_markdown(self) -> str:
        # JSON values are valid YAML, so the front matter needs no YAML library
        # to write and any YAML or JSON parser can read it.
        front = {
            "id": self.id,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "tags": tags.extract_tags(self.text),
            "photos": [f"../../{photo.path}" for photo in self.photos],
        }
        lines = [f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in front.items()]
        return "---\n" + "\n".join(lines) + "\n---\n\n" + self.text + "\n"


def count_live_entries(user: User) -> int:
    """How many entries an export of `user` holds (for a progress bar)."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(Entry).where(is_live(user)))


def _export_batches(user: User) -> Iterator[list[ExportEntry]]:
    """The live entries oldest first, a batch at a time, as plain data (no ORM identity map)."""
    after: tuple[datetime, int] | None = None
    while True:
        query = (
            sa.select(Entry.id, Entry.created_at, Entry.updated_at, Entry.text)
            .where(is_live(user))
            .order_by(Entry.created_at, Entry.id)
            .limit(EXPORT_BATCH)
        )
        if after is not None:
            query = query.where(sa.tuple_(Entry.created_at, Entry.id) > sa.tuple_(*after))
        batch = [ExportEntry(*row) for row in db.session.execute(query)]
        if not batch:
            return
        by_id = {entry.id: entry for entry in batch}
        images = db.session.execute(
            sa.select(
                Image.entry_id,
                Image.storage_key,
                Image.content_type,
                Image.width,
                Image.height,
                Image.byte_size,
                Image.original_filename,
            )
            .where(Image.entry_id.in_(by_id))
            .order_by(Image.entry_id, Image.position, Image.id)
        )
        for entry_id, key, content_type, width, height, size, original in images:
            entry = by_id[entry_id]
            extension = EXTENSIONS.get(content_type, "bin")
            path = f"photos/{entry_id}/{len(entry.photos) + 1}.{extension}"
            entry.photos.append(ExportPhoto(key, path, content_type, width, height, size, original))
        yield batch
        after = (batch[-1].created_at, batch[-1].id)


class _Sink:
    """A write-only, unseekable file for zipfile: what it is given waits to be yielded."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _member(name: str, when: datetime, *, compress: bool) -> zipfile.ZipInfo:
    local = when.astimezone(UTC)
    # ZIP timestamps cannot go before 1980.
    stamp = (max(local.year, 1980), local.month, local.day, local.hour, local.minute, local.second)
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def export_zip(user: User, on_entry: Callable[[], None] | None = None) -> Iterator[bytes]:
    """The user's diary as ZIP bytes, produced piece by piece (see docs/export-format.md).

    Two passes over the entries: entries.json first (so a reader finds the
    index at the start), then each entry's Markdown file and photos.
    `on_entry` is called once per entry of the second pass (progress bars).
    """
    sink = _Sink()
    now = utcnow()
    with zipfile.ZipFile(sink, "w") as archive:
        with archive.open(_member("entries.json", now, compress=True), "w") as out:
            header = {"format": FORMAT, "version": FORMAT_VERSION, "exported_at": rfc3339(now)}
            out.write(json.dumps(header, ensure_ascii=False)[:-1].encode() + b', "entries": [\n')
            first = True
            for batch in _export_batches(user):
                for entry in batch:
                    if not first:
                        out.write(b",\n")
                    first = False
                    out.write(json.dumps(entry.as_json(), ensure_ascii=False).encode())
                yield sink.drain()
            out.write(b"\n]}\n")
        yield sink.drain()

        for batch in _export_batches(user):
            for entry in batch:
                archive.writestr(
                    _member(entry.markdown_path, entry.created_at, compress=True),
                    entry.as_markdown().encode(),
                )
                for photo in entry.photos:
                    info = _member(photo.path, entry.created_at, compress=False)
                    with archive.open(info, "w", force_zip64=True) as out:
                        for chunk in current_storage().chunks(photo.storage_key):
                            out.write(chunk)
                            yield sink.drain()
                if on_entry is not None:
                    on_entry()
                yield sink.drain()
    yield sink.drain()
