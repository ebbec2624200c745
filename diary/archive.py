"""Export a diary as one ZIP, and import it (or Day One's, or the original service's data).

The export is written as it is read: entries in batches, photos in chunks,
the ZIP produced piece by piece into a generator, so memory stays flat for a
diary of any length. The format is described in docs/export-format.md.

Imports are all or nothing: every record is checked before anything is
written, photos are stored before the rows, and if anything fails the rows
are rolled back and the stored photos removed. Each imported entry records a
key (a hash of its time and text), so importing the same file twice adds
nothing the second time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import stat
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import IO, Any

import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError
from werkzeug.datastructures import FileStorage

from . import search, tags
from .entries import MAX_IMAGES_PER_ENTRY, clean_text, discard_objects, image_row, store_image
from .errors import ContentTooLarge, InvalidInput
from .extensions import db
from .images import IncomingImage, inspect_upload
from .models import Entry, EntryImport, Image, User
from .storage import S3Storage, StorageUnavailable, current_storage

log = logging.getLogger(__name__)

FORMAT = "diary-export"
FORMAT_VERSION = 1
CHUNK_BYTES = 256 * 1024
EXPORT_BATCH = 100

# Limits on what an import may contain. Compressed size says nothing about
# what a member expands to, so the declared sizes and ratios are checked
# before anything is read, and reading never goes past the declared size.
MAX_MEMBERS = 200_000
MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 50 * 1024 * 1024 * 1024
# Photos barely compress and text compresses about tenfold; a member that
# expands by more than this is a zip bomb, not a diary.
MAX_RATIO = 100
RATIO_CHECK_FROM = 1024 * 1024

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- export -----------------------------------------------------------------


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
            "created_at": _timestamp(self.created_at),
            "updated_at": _timestamp(self.updated_at),
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
            "created_at": _timestamp(self.created_at),
            "updated_at": _timestamp(self.updated_at),
            "tags": tags.extract_tags(self.text),
            "photos": [f"../../{photo.path}" for photo in self.photos],
        }
        lines = [f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in front.items()]
        return "---\n" + "\n".join(lines) + "\n---\n\n" + self.text + "\n"


def count_live_entries(user: User) -> int:
    """How many entries an export of `user` holds (for a progress bar)."""
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(Entry)
        .where(Entry.user_id == user.id, Entry.deleted_at.is_(None))
    )


def _export_batches(user: User) -> Iterator[list[ExportEntry]]:
    """The live entries oldest first, a batch at a time, as plain data (no ORM identity map)."""
    after: tuple[datetime, int] | None = None
    while True:
        query = (
            sa.select(Entry.id, Entry.created_at, Entry.updated_at, Entry.text)
            .where(Entry.user_id == user.id, Entry.deleted_at.is_(None))
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


def object_chunks(key: str) -> Iterator[bytes]:
    """One stored object, a chunk at a time, whatever the storage."""
    storage = current_storage()
    if isinstance(storage, S3Storage):
        try:
            body = storage.client.get_object(Bucket=storage.bucket, Key=key)["Body"]
            with closing(body):
                yield from body.iter_chunks(CHUNK_BYTES)
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable("photo storage is unavailable (download failed)") from error
        return
    try:
        with storage.path(key).open("rb") as source:
            while chunk := source.read(CHUNK_BYTES):
                yield chunk
    except OSError as error:
        raise StorageUnavailable("photo storage is unavailable (download failed)") from error


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
    now = datetime.now(UTC)
    with zipfile.ZipFile(sink, "w") as archive:
        with archive.open(_member("entries.json", now, compress=True), "w") as out:
            header = {"format": FORMAT, "version": FORMAT_VERSION, "exported_at": _timestamp(now)}
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
                        for chunk in object_chunks(photo.storage_key):
                            out.write(chunk)
                            yield sink.drain()
                if on_entry is not None:
                    on_entry()
                yield sink.drain()
    yield sink.drain()


# --- import: what every source becomes --------------------------------------


@dataclass
class IncomingPhoto:
    """A photo to import; `read` fetches its bytes only when it is stored."""

    read: Callable[[], bytes]
    original_filename: str


@dataclass
class IncomingEntry:
    created_at: datetime
    updated_at: datetime
    text: str
    photos: list[IncomingPhoto]
    label: str  # where the record came from, for error messages

    @property
    def import_key(self) -> str:
        raw = f"{_timestamp(self.created_at)}\n{self.text}"
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class ImportResult:
    imported: int
    skipped: int


def _refuse(message: str) -> InvalidInput:
    return InvalidInput("file", message)


def _parse_time(value: Any, label: str, name: str) -> datetime:
    if not isinstance(value, str):
        raise _refuse(f"{label}: {name} must be a date-time string.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _refuse(f"{label}: {name} is not an ISO 8601 date-time: {value[:40]!r}.") from None
    if parsed.tzinfo is None:
        raise _refuse(f"{label}: {name} has no time zone.")
    return parsed.astimezone(UTC)


def _text(value: Any, label: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _refuse(f"{label}: text must be a string.")
    return value


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

    stored: list[str] = []
    try:
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
        db.session.commit()
    except BaseException:
        db.session.rollback()
        discard_objects(stored)
        raise
    return ImportResult(imported=len(fresh), skipped=len(records) - len(fresh))


def _checked_photo(photo: IncomingPhoto, label: str) -> IncomingImage:
    data = photo.read()
    upload = FileStorage(io.BytesIO(data), filename=photo.original_filename)
    try:
        return inspect_upload(upload)
    except InvalidInput as error:
        name = photo.original_filename or "a photo"
        raise _refuse(f"{label}: {name}: {error.message}") from None


# --- import: ZIP archives, checked before anything is read -------------------


_DRIVE = re.compile(r"^[A-Za-z]:")


def open_archive(stream: IO[bytes], *, max_total_bytes: int = MAX_TOTAL_BYTES) -> zipfile.ZipFile:
    """Open a ZIP and refuse hostile or absurd ones before reading any member."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _refuse("The file is not a ZIP archive we can read.") from None
    try:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise _refuse(f"The archive has more than {MAX_MEMBERS} files.")
        names: set[str] = set()
        total = 0
        for info in members:
            _check_name(info)
            if info.filename in names:
                raise _refuse(f"The archive names {info.filename!r} twice.")
            names.add(info.filename)
            total += info.file_size
            if total > max_total_bytes:
                raise ContentTooLarge(
                    "file", f"The archive expands to more than {max_total_bytes} bytes."
                )
            if info.file_size > RATIO_CHECK_FROM and info.file_size > MAX_RATIO * max(
                info.compress_size, 1
            ):
                raise _refuse(
                    f"{info.filename!r} expands {info.file_size // max(info.compress_size, 1)} "
                    "times: refusing a possible zip bomb."
                )
            if info.flag_bits & 0x1:
                raise _refuse("Encrypted archives cannot be imported.")
    except BaseException:
        archive.close()
        raise
    return archive


def _check_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    if "\x00" in name or "\\" in name or name.startswith("/") or _DRIVE.match(name):
        raise _refuse(f"Refusing the unsafe file name {name!r} in the archive.")
    if ".." in PurePosixPath(name).parts:
        raise _refuse(f"Refusing the unsafe file name {name!r} in the archive.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _refuse(f"Refusing the symbolic link {name!r} in the archive.")


def _read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _refuse(f"The archive has no {name!r}.") from None
    if info.is_dir():
        raise _refuse(f"{name!r} is a folder, not a file.")
    if info.file_size > limit:
        raise ContentTooLarge("file", f"{name!r} is larger than {limit} bytes.")
    try:
        with archive.open(info) as member:
            # zipfile stops at the declared size and checks the CRC, so a
            # member cannot expand past what was checked above.
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as error:
        raise _refuse(f"{name!r} is damaged: {error}.") from None
    if len(data) > limit:
        raise ContentTooLarge("file", f"{name!r} is larger than {limit} bytes.")
    return data


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _refuse(f"{what} is not valid UTF-8 JSON: {error}.") from None


def _photo_limit() -> int:
    from flask import current_app

    return int(current_app.config["MAX_UPLOAD_MB"]) * 1024 * 1024


def read_diary_export(archive: zipfile.ZipFile) -> list[IncomingEntry]:
    """The records of one of our own exports, checked against the schema (version 1)."""
    document = _load_json(_read_member(archive, "entries.json", MAX_JSON_BYTES), "entries.json")
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _refuse(f'entries.json is not a diary export (format is not "{FORMAT}").')
    if document.get("version") != FORMAT_VERSION:
        raise _refuse(
            f"entries.json has version {document.get('version')!r}; "
            f"this diary reads version {FORMAT_VERSION}."
        )
    items = document.get("entries")
    if not isinstance(items, list):
        raise _refuse("entries.json: entries must be a list.")
    limit = _photo_limit()
    records = []
    for number, item in enumerate(items, start=1):
        label = f"entry {number}"
        if not isinstance(item, dict):
            raise _refuse(f"{label} is not an object.")
        photos = item.get("photos", [])
        if not isinstance(photos, list):
            raise _refuse(f"{label}: photos must be a list.")
        incoming = []
        for photo in photos:
            if not isinstance(photo, dict) or not isinstance(photo.get("path"), str):
                raise _refuse(f"{label}: every photo needs a path.")
            path = photo["path"]
            if path not in archive.NameToInfo:
                raise _refuse(f"{label}: the photo {path!r} is not in the archive.")
            original = photo.get("original_filename") or PurePosixPath(path).name
            if not isinstance(original, str):
                raise _refuse(f"{label}: original_filename must be a string.")
            incoming.append(
                IncomingPhoto(
                    read=lambda path=path: _read_member(archive, path, limit),
                    original_filename=original[:255],
                )
            )
        created = _parse_time(item.get("created_at"), label, "created_at")
        updated = (
            _parse_time(item["updated_at"], label, "updated_at")
            if item.get("updated_at") is not None
            else created
        )
        records.append(
            IncomingEntry(created, updated, _text(item.get("text"), label), incoming, label)
        )
    return records


# --- import: Day One --------------------------------------------------------

_DAY_ONE_MOMENT = re.compile(r"!\[[^\]]*\]\(dayone-moment:/+[^)]*\)\n?")


def read_day_one(document: Any, archive: zipfile.ZipFile | None) -> list[IncomingEntry]:
    """Day One's JSON export: {"metadata": ..., "entries": [{"uuid", "creationDate", ...}]}.

    Photos come from the export ZIP's photos/<md5>.<type>; the inline
    `dayone-moment://` references are removed from the text, and Day One's
    tags are written into the text as #tags (that is where tags live here).
    """
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise _refuse("This is not a Day One export (no entries list).")
    limit = _photo_limit()
    records = []
    for number, item in enumerate(document["entries"], start=1):
        if not isinstance(item, dict):
            raise _refuse(f"entry {number} is not an object.")
        label = f"Day One entry {item.get('uuid') or number}"
        text = _DAY_ONE_MOMENT.sub("", _text(item.get("text"), label)).strip()
        wanted = item.get("tags") or []
        if not isinstance(wanted, list) or not all(isinstance(tag, str) for tag in wanted):
            raise _refuse(f"{label}: tags must be a list of strings.")
        present = set(tags.extract_tags(text))
        missing = [
            "#" + re.sub(r"\s+", "_", tag.strip())
            for tag in wanted
            if tag.strip() and tags.normalise_tag(re.sub(r"\s+", "_", tag.strip())) not in present
        ]
        if missing:
            text = f"{text}\n\n{' '.join(missing)}".strip()
        photos = []
        for photo in item.get("photos") or []:
            if not isinstance(photo, dict):
                raise _refuse(f"{label}: photos must be objects.")
            md5, kind = photo.get("md5"), photo.get("type") or "jpeg"
            if archive is None:
                raise _refuse(
                    f"{label} has photos: import Day One's ZIP export, not only its JSON."
                )
            if not isinstance(md5, str) or not isinstance(kind, str):
                raise _refuse(f"{label}: a photo has no md5.")
            path = f"photos/{md5}.{kind}"
            if path not in archive.NameToInfo:
                raise _refuse(f"{label}: the photo {path!r} is not in the archive.")
            photos.append(
                IncomingPhoto(
                    read=lambda path=path: _read_member(archive, path, limit),
                    original_filename=f"{md5}.{kind}",
                )
            )
        if not text and not photos:
            continue  # Day One keeps empty drafts; there is nothing to import.
        created = _parse_time(item.get("creationDate"), label, "creationDate")
        modified = item.get("modifiedDate")
        updated = _parse_time(modified, label, "modifiedDate") if modified else created
        records.append(IncomingEntry(created, updated, text, photos, label))
    return records


# --- import: the original service's GET / -----------------------------------


@dataclass
class SourceBucket:
    """Where the original service kept its photos; read-only."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "ap-northeast-1"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}),
        )


def read_original_service(document: Any, source: SourceBucket | None) -> list[IncomingEntry]:
    """The JSON array the original service's `GET /` returned, photos read from its bucket."""
    if not isinstance(document, list):
        raise _refuse("The original service's data is a JSON array of entries.")
    client = source.client() if source is not None else None
    limit = _photo_limit()
    records = []
    for number, item in enumerate(document, start=1):
        if not isinstance(item, dict) or "CreatedAt" not in item:
            raise _refuse(f"item {number} is not an entry of the original service (no CreatedAt).")
        label = f"original entry {item.get('ID', number)}"
        if item.get("DeletedAt"):
            continue
        key = item.get("Img") or ""
        if not isinstance(key, str):
            raise _refuse(f"{label}: Img must be a string.")
        photos = []
        if key:
            if client is None:
                raise _refuse(
                    f"{label} has a photo ({key!r}): give the bucket it is in "
                    "(--source-bucket, and --source-endpoint if not AWS)."
                )
            photos.append(
                IncomingPhoto(
                    read=lambda key=key: _read_source_object(client, source, key, limit),
                    original_filename=PurePosixPath(key).name[:255],
                )
            )
        created = _parse_time(item["CreatedAt"], label, "CreatedAt")
        updated_raw = item.get("UpdatedAt")
        updated = _parse_time(updated_raw, label, "UpdatedAt") if updated_raw else created
        records.append(
            IncomingEntry(created, updated, _text(item.get("Text"), label), photos, label)
        )
    return records


def _read_source_object(client: Any, source: SourceBucket | None, key: str, limit: int) -> bytes:
    assert source is not None
    try:
        response = client.get_object(Bucket=source.bucket, Key=key)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            raise _refuse(f"The photo {key!r} is not in bucket {source.bucket}.") from None
        raise StorageUnavailable(f"the source bucket could not be read ({code})") from error
    except BotoCoreError as error:
        raise StorageUnavailable("the source bucket could not be read") from error
    with closing(response["Body"]) as body:
        data = body.read(limit + 1)
    if len(data) > limit:
        raise ContentTooLarge("file", f"The photo {key!r} is larger than {limit} bytes.")
    return data


# --- import: choosing the reader --------------------------------------------


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
