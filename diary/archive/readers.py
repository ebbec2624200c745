"""What can be imported, read into one shape: IncomingEntry records, photos read on demand.

Three sources: our own export ZIP (docs/export-format.md), Day One's JSON
export (or its ZIP, with photos), and the JSON array the original service's
`GET /` returned (photos read from its bucket). A ZIP is checked before any
member is read: names, sizes, ratios, encryption.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError
from flask import current_app

from .. import tags
from ..errors import ContentTooLarge, InvalidInput
from ..infra.storage import StorageUnavailable
from ..timestamps import rfc3339
from .export import FORMAT, FORMAT_VERSION

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
        raw = f"{rfc3339(self.created_at)}\n{self.text}"
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


# --- ZIP archives, checked before anything is read ----------------------------


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


# --- Day One ---------------------------------------------------------------

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
