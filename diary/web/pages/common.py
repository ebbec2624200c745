"""What the page modules share: the blueprint, photo URLs, error messages, time zones."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from itertools import groupby, pairwise
from typing import TypeVar
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_skeleton
from flask import Blueprint, Response, url_for
from flask_babel import get_locale, get_timezone
from flask_wtf import FlaskForm
from werkzeug.urls import iri_to_uri
from wtforms import Field

from ... import search
from ...errors import InvalidInput
from ...infra.storage import current_storage
from ...markdown import plain_text
from ...models import Entry, Image
from ...tags import tag_spans
from ...timeline import EntryView, PhotoView
from ..i18n import gettext

E = TypeVar("E", Entry, EntryView)

bp = Blueprint("pages", __name__)


def safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after sign-in is a phishing aid.

    Browsers are lenient: they drop tabs and newlines anywhere, strip leading
    spaces and control characters, read a backslash as a slash and any run of
    slashes after the scheme as the start of a host, and Werkzeug rewrites the
    Location it sends (`iri_to_uri` turns "////evil.example" into
    "//evil.example"). So the target is judged as sent, as typed, and
    percent-decoded until it stops changing; every form must be a plain path
    of this site, or the reader goes to the timeline instead.
    """
    if target and all(_is_local_path(form) for form in _readings(target)):
        return target
    return url_for("legacy.index")


# A readable next path is far shorter; decoding more layers than this is an attack.
_MAX_NEXT_LENGTH = 2048
_MAX_DECODINGS = 4


def _readings(target: str) -> list[str]:
    """The target as typed, as Werkzeug will send it, and each percent-decoded layer."""
    if len(target) > _MAX_NEXT_LENGTH:
        return [""]
    readings = [target]
    for _ in range(_MAX_DECODINGS):
        once = unquote(readings[-1])
        if once == readings[-1]:
            break
        readings.append(once)
    else:
        return [""]  # still changing: nobody encodes a path that many times
    try:
        return [*readings, *(iri_to_uri(reading) for reading in readings)]
    except ValueError:  # a "port" that is no number, say
        return [""]


def _is_local_path(path: str) -> bool:
    # Unprintable covers C0/C1 controls, tabs and newlines, Unicode spaces and
    # invisible format characters, all of which a browser may drop or bend.
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return False
    if not path.isprintable():
        return False
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return False
    # No dot segments: "/.//evil" and "/..//evil" collapse to "//evil" in a path.
    return not any(segment in (".", "..") for segment in parts.path.split("/"))


def photo_url(image: Image | PhotoView, size: str = "original") -> str:
    """Template helper: a presigned URL (S3) or the app's own URL (local).

    `size` is "original", "display" or "thumb"; a photo stored before sizes
    existed (not yet backfilled) falls back to its original.
    """
    key = getattr(image, f"{size}_key", None) if size != "original" else None
    return current_storage().url(key or image.storage_key)


def photo_srcset(image: Image | PhotoView) -> str:
    """Template helper: candidate URLs by width for `<img srcset>`."""
    candidates = [
        (photo_url(image, size), getattr(image, f"{size}_width"))
        for size in ("thumb", "display")
        if getattr(image, f"{size}_key")
    ]
    candidates.append((photo_url(image, "original"), image.width))
    return ", ".join(f"{url} {width}w" for url, width in candidates)


@dataclass(frozen=True, slots=True)
class PhotoTile:
    """One photo of an entry's list of photos: what its link and <img> show."""

    href: str
    src: str
    srcset: str
    width: int
    height: int
    label: str


# The box a lone photo is shown in on a list (a grid of several uses squares).
SINGLE_PHOTO_BOX = (704, 416)


def photo_tiles(
    entry: Entry | EntryView, *, single: bool, srcset: bool, in_trash: bool
) -> list[PhotoTile]:
    """Template helper: the entry's photos as its list shows them, in one call.

    A lone photo (`single`) is shown at its own shape, at display size; several
    as thumbnails. Each links to the photo viewer, except in Trash, whose
    entries have no viewer (the original opens instead). Built here rather than
    in the template, where each URL, size and label was a call of its own
    through Jinja: a timeline's photos were about a quarter of its CPU
    (bench/profile.py), and this took a tenth of the timeline's calls away.
    """
    count = len(entry.images)
    label = gettext("Photo %(number)s of %(count)s")
    tiles = []
    for number, image in enumerate(entry.images, start=1):
        if in_trash:
            href = photo_url(image, "original")
        else:
            href = url_for("pages.photo", entry_id=entry.id, number=number)
        if single:
            width, height = photo_box(image, *SINGLE_PHOTO_BOX)
        else:
            width, height = image.width, image.height
        tiles.append(
            PhotoTile(
                href=href,
                src=photo_url(image, "display" if single else "thumb"),
                srcset=photo_srcset(image) if srcset else "",
                width=width,
                height=height,
                label=label % {"number": number, "count": count},
            )
        )
    return tiles


def photo_box(image: Image | PhotoView, max_width: int, max_height: int) -> tuple[int, int]:
    """Template helper: the photo's size scaled down to fit the box, for <img width height>.

    The page then reserves the photo's real shape before it loads (no layout shift)
    and shows it whole, a portrait photo as tall as the box allows, never letterboxed.
    """
    scale = min(1.0, max_width / image.width, max_height / image.height)
    return max(1, round(image.width * scale)), max(1, round(image.height * scale))


# Kana only occur in Japanese; kanji alone could be Chinese too.
_KANA = re.compile(r"[\u3040-\u30ff\uff66-\uff9f]")


def text_lang(text: str) -> str | None:
    """Template filter: "ja" for text with kana, so Japanese entries get Japanese line
    breaking and glyphs even when the pages are in English."""
    return "ja" if _KANA.search(text or "") else None


def entry_excerpt(text: str, query: str | None) -> list[tuple[str, bool, int | None]]:
    """Template helper: a piece of the entry's words, Markdown syntax removed.

    As (piece, is_match, tag) pieces: `tag` numbers the #tag a piece belongs to
    (None outside tags), so the page can keep each tag on one line even where a
    match marks only part of it.
    """
    pieces = search.excerpt(plain_text(text), query)
    joined = "".join(piece for piece, _ in pieces)
    tags = [(start, end) for start, end, _ in tag_spans(joined)]
    cuts = sorted({cut for span in tags for cut in span})
    result: list[tuple[str, bool, int | None]] = []
    position = 0
    for piece, hit in pieces:
        end = position + len(piece)
        bounds = [position, *(cut for cut in cuts if position < cut < end), end]
        for start, stop in pairwise(bounds):
            tag = next((n for n, (a, b) in enumerate(tags) if a <= start and stop <= b), None)
            result.append((joined[start:stop], hit, tag))
        position = end
    return result


def month_name(month: str | date) -> str:
    """Template filter: a month ("2026-12" or a date) in the reader's language: 2026年12月."""
    if isinstance(month, str):
        year, number = (int(part) for part in month.split("-"))
        month = date(year, number, 1)
    return format_skeleton("yMMMM", month, locale=get_locale() or "en")


def no_store(response: Response) -> Response:
    """Diary pages are private: keep them out of shared caches."""
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "private, no-store")
    return response


def group_by_day(items: Iterable[E]) -> list[tuple[date, list[E]]]:
    """Entries under the calendar day they were written, in the reader's time zone."""
    zone = ZoneInfo(str(get_timezone()))

    def day(entry: E) -> date:
        return entry.created_at.astimezone(zone).date()

    return [(key, list(group)) for key, group in groupby(items, key=day)]


def show_error(form: FlaskForm, error: InvalidInput, default_field: str) -> None:
    """Put a domain error next to the field it is about (or `default_field`)."""
    field: Field = getattr(form, error.field, None) or getattr(form, default_field)
    field.errors = [*field.errors, error.translated()]
