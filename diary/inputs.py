"""What a value from outside must be before it reaches the database: the checks the rules share.

PostgreSQL refuses a NUL in text, no database can hold a lone surrogate
(Python's json reads "\\ud800" happily, and the CLI's arguments carry
undecodable bytes as surrogates, but UTF-8 has no encoding for one), and an
INTEGER id ends at 2**31 - 1: past that a lookup is an error, not "nothing
found". SQLite takes NUL and larger numbers, so without these checks the same
request was a 201 on one backend and a 500 on the other.
"""

from __future__ import annotations

import re

# Entry, image, user and token ids are INTEGER columns (32 bits on PostgreSQL).
MAX_ID = 2**31 - 1

_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# C0 controls (NUL, tab, newline, ESC, ...), DEL and lone surrogates.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# ASCII only: str.isdigit() also takes "²", which int() refuses; and a bound,
# because int() refuses more than 4300 digits.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def storable(text: str) -> bool:
    """False for text no column can hold: with a NUL or a lone surrogate."""
    return _UNSTORABLE.search(text) is None


def without_surrogates(text: str) -> str:
    """Lone surrogates replaced by U+FFFD, as Werkzeug decodes undecodable bytes in a form.

    For what quotes a client's JSON back (a form's field, a refusal naming a
    record, a log line): a lone surrogate failed the UTF-8 encoding of the
    whole response or line.
    """
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def single_line(text: str) -> bool:
    """False for a name or an address with a control character (NUL, a newline) or a surrogate."""
    return _CONTROL.search(text) is None


def possible_id(value: int) -> bool:
    """Whether a row could have this id; a lookup of any other is a 404 without a query."""
    return 1 <= value <= MAX_ID


def whole_number(raw: str) -> int | None:
    """`raw` as a number if it is plain ASCII digits (at most 18), else None."""
    return int(raw) if _WHOLE_NUMBER.fullmatch(raw) else None


def clean_filename(name: str | None) -> str:
    """A client's file name as it is kept: control characters and lone surrogates removed.

    The name is only shown back (the API's original_filename, exports); the
    photo is stored under a key of ours. Dropping what no one typed keeps a
    photo called "a\\x00b.jpg" rather than refusing it.
    """
    return _CONTROL.sub("", name or "")[:255]
