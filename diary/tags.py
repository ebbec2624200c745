"""`#tags` written in entry text: extracting them, listing them with counts, filtering by one."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import sqlalchemy as sa

from .errors import InvalidInput
from .extensions import db
from .models import Entry, EntryTag, User, is_live

MAX_TAG_CHARS = 100

# A tag starts after the start of the text, a space or punctuation, so `C#`,
# `page#anchor` and `&#39;` are not tags, and a Markdown heading (`# Title`)
# is not one either. \w is Unicode-aware: #朝ごはん and #café are tags.
TAG_PATTERN = re.compile(r"(?<![\w#&/])#(\w[\w\-]*)")


# TAG_PATTERN on the text as typed, before NFKC: a full-width number sign (U+FF03)
# starts a tag too.
_TAG_AS_TYPED = re.compile(r"(?<![\w#\uff03&/])[#\uff03](\w[\w\-]*)")


def normalise_tag(tag: str) -> str:
    """The stored form: NFKC (full-width letters become ASCII) and lower case."""
    return unicodedata.normalize("NFKC", tag).lower().strip("-_")


def _is_tag(tag: str) -> bool:
    # A bare number (#1, issue numbers) is a reference, not a tag.
    return bool(tag) and not tag.isdigit() and len(tag) <= MAX_TAG_CHARS


def extract_tags(text: str) -> list[str]:
    """The distinct tags in `text`, in the order first written."""
    seen: dict[str, None] = {}
    for match in TAG_PATTERN.finditer(unicodedata.normalize("NFKC", text or "")):
        tag = normalise_tag(match.group(1))
        if _is_tag(tag):
            seen.setdefault(tag, None)
    return list(seen)


def tag_spans(text: str) -> list[tuple[int, int, str]]:
    """Where `text` (as typed) holds tags: (start, end, stored form), to link each one.

    The same tags extract_tags finds, located in the original text rather than
    its NFKC form, whose offsets can differ.
    """
    spans = []
    for match in _TAG_AS_TYPED.finditer(text):
        tag = normalise_tag(match.group(1))
        if _is_tag(tag):
            # A trailing - or _ is not part of the stored tag; leave it outside the link.
            end = match.start(1) + len(match.group(1).rstrip("-_"))
            spans.append((match.start(), end, tag))
    return spans


def parse_tag(raw: str | None) -> str | None:
    """A `tag=` parameter as given by a client (with or without the #)."""
    if raw is None or raw == "":
        return None
    tag = normalise_tag(raw.removeprefix("#"))
    if not tag or len(tag) > MAX_TAG_CHARS or not re.fullmatch(r"\w[\w\-]*", tag):
        raise InvalidInput("tag", "tag must be a single tag such as travel or 朝ごはん.")
    return tag


def tagged_with(user: User, tag: str) -> sa.ColumnElement[bool]:
    """A WHERE clause: the entry carries `tag` (served by the primary key of entry_tags)."""
    return Entry.id.in_(
        sa.select(EntryTag.entry_id).where(EntryTag.user_id == user.id, EntryTag.tag == tag)
    )


@dataclass(frozen=True)
class TagCount:
    tag: str
    count: int


def list_tags(user: User) -> list[TagCount]:
    """Every tag of the user's live entries with how many entries carry it, most used first."""
    count = sa.func.count(EntryTag.entry_id)
    rows = db.session.execute(
        sa.select(EntryTag.tag, count)
        .join(Entry, Entry.id == EntryTag.entry_id)
        .where(EntryTag.user_id == user.id, is_live(user))
        .group_by(EntryTag.tag)
        .order_by(count.desc(), EntryTag.tag)
    )
    return [TagCount(tag, number) for tag, number in rows]
