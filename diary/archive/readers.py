"""What can be imported, read into one shape: IncomingEntry records, photos read on demand.

Three sources: our own export ZIP (docs/export-format.md), Day One's JSON
export (or its ZIP, with photos), and the JSON array the original service's
`GET /` returned (photos read from its bucket). A ZIP is checked before any
member is read (names, declared sizes and ratios, encryption), and what its
members expand to is counted again as they are read. The JSON index is read
a record at a time (diary.archive.jsonstream), never whole.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from types import TracebackType
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError
from flask import current_app

from .. import tags
from ..errors import ContentTooLarge, InvalidInput, Phrase
from ..infra.storage import StorageUnavailable
from ..timestamps import FIRST_YEAR, in_diary_range, rfc3339, utcnow
from .export import FORMAT, FORMAT_VERSION
from .jsonstream import DocumentTooLarge, JsonError, JsonReader, ValueTooLarge

# Limits on what an import may contain. Compressed size says nothing about
# what a member expands to, so the declared sizes and ratios are checked
# before anything is read, and the bytes actually read are counted against
# the same limits as they come (zipfile stops at the declared size; this
# does not depend on it).
MAX_MEMBERS = 200_000
MAX_TOTAL_BYTES = 50 * 1024 * 1024 * 1024
# Photos barely compress and text compresses about tenfold; a member that
# expands by more than this is a zip bomb, not a diary.
MAX_RATIO = 100
RATIO_CHECK_FROM = 1024 * 1024
# The index is read a record at a time, but every record is kept until all
# are checked (all or nothing). Twenty years of daily entries write about
# 7 MB of entries.json; these bound an import at a few times that.
MAX_JSON_BYTES = 32 * 1024 * 1024
MAX_RECORDS = 100_000
# One record as JSON text: an entry's text (MAX_ENTRY_CHARS, six characters
# each when escaped) and its photos fit many times over.
MAX_RECORD_CHARS = 4 * 1024 * 1024

# What a damaged member raises while it is read (deflate, LZMA, CRC, bz2).
_DAMAGED = (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zlib.error, lzma.LZMAError)
# Clocks and time zones disagree by hours; an entry dated later than this is refused.
FUTURE_MARGIN = timedelta(days=1)


@dataclass
class IncomingPhoto:
    """A photo to import; `read` fetches its bytes only when it is stored."""

    read: Callable[[], bytes]
    original_filename: str


@dataclass(slots=True)
class IncomingEntry:
    created_at: datetime
    updated_at: datetime
    text: str
    photos: list[IncomingPhoto]
    label: Phrase  # which record it is, for error messages

    @property
    def import_key(self) -> str:
        raw = f"{rfc3339(self.created_at)}\n{self.text}"
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class ImportResult:
    imported: int
    skipped: int


def _parse_time(value: Any, label: Phrase, name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput(
            "file", "%(label)s: %(name)s must be a date-time string.", label=label, name=name
        )
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            "file",
            "%(label)s: %(name)s is not an ISO 8601 date-time: %(value)r.",
            label=label,
            name=name,
            value=value[:40],
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput("file", "%(label)s: %(name)s has no time zone.", label=label, name=name)
    # A year-1 date east of Greenwich has no UTC time at all (the conversion
    # overflows), and one past tomorrow is a wrong date, not a diary entry.
    utc = in_diary_range(parsed)
    if utc is None or utc > utcnow() + FUTURE_MARGIN:
        raise InvalidInput(
            "file",
            "%(label)s: %(name)s is out of range: %(value)r (a date from %(first)s to today).",
            label=label,
            name=name,
            value=value[:40],
            first=FIRST_YEAR,
        )
    return utc


def _text(value: Any, label: Phrase) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("file", "%(label)s: text must be a string.", label=label)
    return value


# --- ZIP archives, checked before anything is read ----------------------------


_DRIVE = re.compile(r"^[A-Za-z]:")


class Archive:
    """An import ZIP whose members are counted as they are read, not trusted by their sizes."""

    def __init__(self, archive: zipfile.ZipFile, max_total_bytes: int) -> None:
        self.zip = archive
        self.max_total_bytes = max_total_bytes
        self.bytes_read = 0

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.zip.close()

    def __contains__(self, name: str) -> bool:
        return name in self.zip.NameToInfo

    def names(self) -> list[str]:
        return list(self.zip.NameToInfo)

    @contextmanager
    def member(self, name: str, limit: int) -> Iterator[IO[bytes]]:
        """A member as a stream that refuses to expand past `limit`, the archive's
        total or the zip-bomb ratio, counting the bytes it actually gives."""
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise InvalidInput("file", "The archive has no %(name)r.", name=name) from None
        if info.is_dir():
            raise InvalidInput("file", "%(name)r is a folder, not a file.", name=name)
        if info.file_size > limit:
            raise _member_too_large(name, limit)
        try:
            with self.zip.open(info) as raw:
                yield _CountedMember(raw, self, info, limit)  # type: ignore[misc]
        except _DAMAGED as error:
            raise InvalidInput(
                "file", "%(name)r is damaged: %(error)s.", name=name, error=str(error)
            ) from None

    def read(self, name: str, limit: int) -> bytes:
        with self.member(name, limit) as member:
            return member.read()


def _member_too_large(name: str, limit: int) -> ContentTooLarge:
    return ContentTooLarge("file", "%(name)r is larger than %(n)s bytes.", name=name, n=limit)


class _CountedMember:
    """What a member expands to, counted as it is read."""

    def __init__(self, raw: IO[bytes], archive: Archive, info: zipfile.ZipInfo, limit: int):
        self.raw = raw
        self.archive = archive
        self.info = info
        self.limit = limit
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        # One byte past the limit is enough to know it is past.
        allowed = self.limit + 1 - self.bytes_read
        data = self.raw.read(allowed if size < 0 else min(size, allowed))
        self.bytes_read += len(data)
        self.archive.bytes_read += len(data)
        if self.bytes_read > self.limit:
            raise _member_too_large(self.info.filename, self.limit)
        if self.archive.bytes_read > self.archive.max_total_bytes:
            raise _archive_too_large(self.archive.max_total_bytes)
        _check_ratio(self.info.filename, self.bytes_read, self.info.compress_size)
        return data


def _archive_too_large(limit: int) -> ContentTooLarge:
    return ContentTooLarge("file", "The archive expands to more than %(n)s bytes.", n=limit)


def _check_ratio(name: str, expanded: int, compressed: int) -> None:
    if expanded > RATIO_CHECK_FROM and expanded > MAX_RATIO * max(compressed, 1):
        raise InvalidInput(
            "file",
            "%(name)r expands %(n)s times: refusing a possible zip bomb.",
            name=name,
            n=expanded // max(compressed, 1),
        )


def open_archive(stream: IO[bytes], *, max_total_bytes: int = MAX_TOTAL_BYTES) -> Archive:
    """Open a ZIP and refuse hostile or absurd ones before reading any member."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InvalidInput("file", "The file is not a ZIP archive we can read.") from None
    try:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise InvalidInput("file", "The archive has more than %(n)s files.", n=MAX_MEMBERS)
        names: set[str] = set()
        total = 0
        for info in members:
            _check_name(info)
            if info.filename in names:
                raise InvalidInput("file", "The archive names %(name)r twice.", name=info.filename)
            names.add(info.filename)
            total += info.file_size
            if total > max_total_bytes:
                raise _archive_too_large(max_total_bytes)
            _check_ratio(info.filename, info.file_size, info.compress_size)
            if info.flag_bits & 0x1:
                raise InvalidInput("file", "Encrypted archives cannot be imported.")
    except BaseException:
        archive.close()
        raise
    return Archive(archive, max_total_bytes)


def _check_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    unsafe = "\x00" in name or "\\" in name or name.startswith("/") or _DRIVE.match(name)
    if unsafe or ".." in PurePosixPath(name).parts:
        raise InvalidInput(
            "file", "Refusing the unsafe file name %(name)r in the archive.", name=name
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidInput("file", "Refusing the symbolic link %(name)r in the archive.", name=name)


# --- the JSON index, a record at a time ---------------------------------------


def json_reader(stream: IO[bytes]) -> JsonReader:
    return JsonReader(stream, max_bytes=MAX_JSON_BYTES, max_value_chars=MAX_RECORD_CHARS)


@contextmanager
def json_refusals(what: str | Phrase) -> Iterator[None]:
    """Turn what the JSON reader finds wrong into refusals naming the document."""
    try:
        yield
    except JsonError as error:
        raise InvalidInput(
            "file", "%(what)s is not valid UTF-8 JSON: %(error)s.", what=what, error=str(error)
        ) from None
    except DocumentTooLarge as error:
        raise ContentTooLarge(
            "file", "%(what)s is larger than %(n)s bytes.", what=what, n=error.limit
        ) from None
    except ValueTooLarge as error:
        raise ContentTooLarge(
            "file",
            "%(what)s has a record longer than %(n)s characters.",
            what=what,
            n=error.limit,
        ) from None


def _numbered(items: Iterator[Any], what: str | Phrase) -> Iterator[tuple[int, Any]]:
    for number, item in enumerate(items, start=1):
        if number > MAX_RECORDS:
            raise ContentTooLarge(
                "file", "%(what)s has more than %(n)s entries.", what=what, n=MAX_RECORDS
            )
        yield number, item


def _first_time(name: str, seen: set[str], what: str | Phrase) -> None:
    if name in seen:
        raise InvalidInput("file", "%(what)s names %(name)r twice.", what=what, name=name)
    seen.add(name)


def _photo_limit() -> int:
    return int(current_app.config["MAX_UPLOAD_MB"]) * 1024 * 1024


def _archive_photo(
    archive: Archive, path: str, original: str, label: Phrase, used: dict[str, Phrase], limit: int
) -> IncomingPhoto:
    """A photo of the archive, read only when stored; refused if absent or already used.

    One file, one photo: a path named again would be decoded and stored again per use.
    """
    if path not in archive:
        raise InvalidInput(
            "file", "%(label)s: the photo %(path)r is not in the archive.", label=label, path=path
        )
    if path in used:
        raise InvalidInput(
            "file",
            "%(label)s: the photo %(path)r is already used by %(other)s.",
            label=label,
            path=path,
            other=used[path],
        )
    used[path] = label
    return IncomingPhoto(read=lambda: archive.read(path, limit), original_filename=original[:255])


def _check_export_header(header: dict[str, Any], *, complete: bool) -> None:
    """format and version, as soon as they are known (and at the end, that they were there)."""
    if (complete or "format" in header) and header.get("format") != FORMAT:
        raise InvalidInput(
            "file", "entries.json is not a diary export (format is not %(format)r).", format=FORMAT
        )
    if (complete or "version" in header) and header.get("version") != FORMAT_VERSION:
        raise InvalidInput(
            "file",
            "entries.json has version %(version)r; this diary reads version %(n)s.",
            version=header.get("version"),
            n=FORMAT_VERSION,
        )


def read_diary_export(archive: Archive) -> list[IncomingEntry]:
    """The records of one of our own exports, checked against the schema (version 1)."""
    limit = _photo_limit()
    header: dict[str, Any] = {}
    seen: set[str] = set()
    records: list[IncomingEntry] = []
    used: dict[str, Phrase] = {}
    with archive.member("entries.json", MAX_JSON_BYTES) as stream, json_refusals("entries.json"):
        reader = json_reader(stream)
        if reader.start() != "{":
            _check_export_header({}, complete=True)
        for name in reader.members():
            _first_time(name, seen, "entries.json")
            if name == "entries" and reader.peek() == "[":
                _check_export_header(header, complete=False)
                for number, item in _numbered(reader.items(), "entries.json"):
                    records.append(_diary_record(item, number, archive, limit, used))
                header[name] = records
            else:
                header[name] = reader.value()
        reader.finish()
    _check_export_header(header, complete=True)
    if header.get("entries") is not records:
        raise InvalidInput("file", "entries.json: entries must be a list.")
    return records


def _diary_record(
    item: Any, number: int, archive: Archive, limit: int, used: dict[str, Phrase]
) -> IncomingEntry:
    label = Phrase("entry %(n)s", n=number)
    if not isinstance(item, dict):
        raise InvalidInput("file", "%(label)s is not an object.", label=label)
    photos = item.get("photos", [])
    if not isinstance(photos, list):
        raise InvalidInput("file", "%(label)s: photos must be a list.", label=label)
    incoming = []
    for photo in photos:
        if not isinstance(photo, dict) or not isinstance(photo.get("path"), str):
            raise InvalidInput("file", "%(label)s: every photo needs a path.", label=label)
        path = photo["path"]
        original = photo.get("original_filename") or PurePosixPath(path).name
        if not isinstance(original, str):
            raise InvalidInput(
                "file", "%(label)s: original_filename must be a string.", label=label
            )
        incoming.append(_archive_photo(archive, path, original, label, used, limit))
    created = _parse_time(item.get("created_at"), label, "created_at")
    updated = (
        _parse_time(item["updated_at"], label, "updated_at")
        if item.get("updated_at") is not None
        else created
    )
    return IncomingEntry(created, updated, _text(item.get("text"), label), incoming, label)


# --- Day One ---------------------------------------------------------------

_DAY_ONE_MOMENT = re.compile(r"!\[[^\]]*\]\(dayone-moment:/+[^)]*\)\n?")


def read_day_one(stream: IO[bytes], archive: Archive | None, what: str) -> list[IncomingEntry]:
    """Day One's JSON export: {"metadata": ..., "entries": [{"uuid", "creationDate", ...}]}.

    Photos come from the export ZIP's photos/<md5>.<type>; the inline
    `dayone-moment://` references are removed from the text, and Day One's
    tags are written into the text as #tags (that is where tags live here).
    """
    with json_refusals(what):
        reader = json_reader(stream)
        if reader.start() != "{":
            raise _not_day_one()
        records, names = read_day_one_members(reader, archive, what)
    if "entries" not in names:
        raise _not_day_one()
    return records


def _not_day_one() -> InvalidInput:
    return InvalidInput("file", "This is not a Day One export (no entries list).")


def read_day_one_members(
    reader: JsonReader, archive: Archive | None, what: str | Phrase
) -> tuple[list[IncomingEntry], set[str]]:
    """The records of a Day One document read from its opening brace, and the names of its
    members ("entries" only when it is a list)."""
    limit = _photo_limit()
    records: list[IncomingEntry] = []
    seen: set[str] = set()
    names: set[str] = set()
    used: dict[str, Phrase] = {}
    for name in reader.members():
        _first_time(name, seen, what)
        if name == "entries" and reader.peek() == "[":
            for number, item in _numbered(reader.items(), what):
                record = _day_one_record(item, number, archive, limit, used)
                if record is not None:
                    records.append(record)
            names.add(name)
        else:
            reader.value()  # metadata and the rest: only their presence matters
            if name != "entries":  # entries that are not a list are no entries list
                names.add(name)
    reader.finish()
    return records, names


def _day_one_record(
    item: Any, number: int, archive: Archive | None, limit: int, used: dict[str, Phrase]
) -> IncomingEntry | None:
    if not isinstance(item, dict):
        raise InvalidInput(
            "file", "%(label)s is not an object.", label=Phrase("entry %(n)s", n=number)
        )
    label = Phrase("Day One entry %(id)s", id=item.get("uuid") or number)
    text = _DAY_ONE_MOMENT.sub("", _text(item.get("text"), label)).strip()
    wanted = item.get("tags") or []
    if not isinstance(wanted, list) or not all(isinstance(tag, str) for tag in wanted):
        raise InvalidInput("file", "%(label)s: tags must be a list of strings.", label=label)
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
            raise InvalidInput("file", "%(label)s: photos must be objects.", label=label)
        md5, kind = photo.get("md5"), photo.get("type") or "jpeg"
        if archive is None:
            raise InvalidInput(
                "file",
                "%(label)s has photos: import Day One's ZIP export, not only its JSON.",
                label=label,
            )
        if not isinstance(md5, str) or not isinstance(kind, str):
            raise InvalidInput("file", "%(label)s: a photo has no md5.", label=label)
        photos.append(
            _archive_photo(archive, f"photos/{md5}.{kind}", f"{md5}.{kind}", label, used, limit)
        )
    if not text and not photos:
        return None  # Day One keeps empty drafts; there is nothing to import.
    created = _parse_time(item.get("creationDate"), label, "creationDate")
    modified = item.get("modifiedDate")
    updated = _parse_time(modified, label, "modifiedDate") if modified else created
    return IncomingEntry(created, updated, text, photos, label)


# --- the original service's GET / ------------------------------------------


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


def read_json_file(stream: IO[bytes], source: SourceBucket | None) -> list[IncomingEntry]:
    """A bare JSON file: the original service's array, or a Day One journal without photos."""
    what = Phrase("The file")
    with json_refusals(what):
        reader = json_reader(stream)
        first = reader.start()
        if first == "[":
            return read_original_service(reader, source)
        if first == "{":
            records, names = read_day_one_members(reader, None, what)
            if {"entries", "metadata"} <= names:
                return records
    raise InvalidInput(
        "file",
        "The file is not one we can import: a diary export ZIP, a Day One export, "
        "or the original service's JSON array.",
    )


def read_original_service(reader: JsonReader, source: SourceBucket | None) -> list[IncomingEntry]:
    """The JSON array the original service's `GET /` returned, photos read from its bucket.

    Several entries may name one key: the original service stored a photo
    under its file name, so a later `image.jpg` replaced an earlier one and
    both entries showed the later photo. Each gets its own copy of it, as
    they showed it (this source is read by the CLI alone).
    """
    client = source.client() if source is not None else None
    limit = _photo_limit()
    records = []
    for number, item in _numbered(reader.items(), Phrase("The file")):
        if not isinstance(item, dict) or "CreatedAt" not in item:
            raise InvalidInput(
                "file",
                "item %(n)s is not an entry of the original service (no CreatedAt).",
                n=number,
            )
        label = Phrase("original entry %(id)s", id=item.get("ID", number))
        if item.get("DeletedAt"):
            continue
        key = item.get("Img") or ""
        if not isinstance(key, str):
            raise InvalidInput("file", "%(label)s: Img must be a string.", label=label)
        photos = []
        if key:
            if client is None:
                raise InvalidInput(
                    "file",
                    "%(label)s has a photo (%(key)r): give the bucket it is in "
                    "(--source-bucket, and --source-endpoint if not AWS).",
                    label=label,
                    key=key,
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
    reader.finish()
    return records


def _read_source_object(client: Any, source: SourceBucket | None, key: str, limit: int) -> bytes:
    assert source is not None
    try:
        response = client.get_object(Bucket=source.bucket, Key=key)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            raise InvalidInput(
                "file",
                "The photo %(key)r is not in bucket %(bucket)s.",
                key=key,
                bucket=source.bucket,
            ) from None
        raise StorageUnavailable(f"the source bucket could not be read ({code})") from error
    except BotoCoreError as error:
        raise StorageUnavailable("the source bucket could not be read") from error
    with closing(response["Body"]) as body:
        data = body.read(limit + 1)
    if len(data) > limit:
        raise ContentTooLarge(
            "file", "The photo %(key)r is larger than %(n)s bytes.", key=key, n=limit
        )
    return data
