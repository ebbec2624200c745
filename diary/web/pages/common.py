"""What the page modules share: the blueprint, photo URLs, error messages, time zones."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from itertools import groupby
from typing import TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, url_for
from flask_babel import get_timezone, gettext
from flask_wtf import FlaskForm
from wtforms import Field

from ...errors import InvalidInput
from ...infra.storage import current_storage
from ...models import Entry, Image
from ...timeline import EntryView, PhotoView

E = TypeVar("E", Entry, EntryView)

bp = Blueprint("pages", __name__)


def safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after sign-in is a phishing aid."""
    if target and target.startswith("/") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("legacy.index")


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


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated later, when shown."""
    return message


# Domain rules raise English messages (the API speaks English); the pages show
# them in the reader's language. Patterns capture the numbers some carry.
_DOMAIN_MESSAGES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern), message)
    for pattern, message in [
        (r"The text is not valid UTF-8\.", N_("The text is not valid UTF-8.")),
        (
            r"The text contains a NUL character\.",
            N_("The text contains a NUL character."),
        ),
        (
            r"The text is longer than (?P<n>\d+) characters\.",
            N_("The text is longer than %(n)s characters."),
        ),
        (r"Write something or add a photo\.", N_("Write something or add a photo.")),
        (r"At most (?P<n>\d+) photos per entry\.", N_("At most %(n)s photos per entry.")),
        (
            r"A photo in the request does not belong to this entry\.",
            N_("A photo in the request does not belong to this entry."),
        ),
        (r"The file is empty\.", N_("The file is empty.")),
        (
            r"The image has more than (?P<n>\d+) megapixels\.",
            N_("The image has more than %(n)s megapixels."),
        ),
        (r"The image has too many pixels\.", N_("The image has too many pixels.")),
        (
            r"The file is not an image we can read.*",
            N_("The file is not an image we can read (JPEG, PNG, WebP or GIF)."),
        ),
        (r"(?P<n>\w+) images are not accepted\.", N_("%(n)s images are not accepted.")),
        (r"Enter a valid email address\.", N_("Enter a valid email address.")),
        (
            r"The password needs at least (?P<n>\d+) characters\.",
            N_("The password needs at least %(n)s characters."),
        ),
        (
            r"An account with this email already exists\.",
            N_("An account with this email already exists."),
        ),
        (
            r"Give the token a name of 1 to 100 characters\.",
            N_("Give the token a name of 1 to 100 characters."),
        ),
        (
            r"The current password is not right\.",
            N_("The current password is not right."),
        ),
        (
            r"The name is longer than (?P<n>\d+) characters\.",
            N_("The name is longer than %(n)s characters."),
        ),
        (r"Choose a time zone from the list\.", N_("Choose a time zone from the list.")),
        (r"Choose a language from the list\.", N_("Choose a language from the list.")),
    ]
]


def translate_domain_message(message: str) -> str:
    """The reader's-language version of a domain error message, or the message itself."""
    for pattern, translated in _DOMAIN_MESSAGES:
        if match := pattern.fullmatch(message):
            return gettext(translated, **match.groupdict())
    return message


def show_error(form: FlaskForm, error: InvalidInput, default_field: str) -> None:
    """Put a domain error next to the field it is about (or `default_field`)."""
    field: Field = getattr(form, error.field, None) or getattr(form, default_field)
    field.errors = [*field.errors, translate_domain_message(error.message)]
