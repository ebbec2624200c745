"""Time as the diary keeps it: timezone-aware UTC, written as RFC 3339 with a Z."""

from __future__ import annotations

from datetime import UTC, datetime

# The years an entry can be dated in and the calendar shows. No diary kept
# here begins before 1900; the far end leaves room below datetime's year 9999
# for a time zone's shift and a month's arithmetic, which overflowed there.
FIRST_YEAR = 1900
LAST_YEAR = 9000


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(value: datetime) -> str:
    """`2026-12-02T06:40:35.123456Z`: how the API, the original contract and exports write times."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def in_diary_range(value: datetime) -> datetime | None:
    """`value` in UTC if it is aware and its year lies in FIRST_YEAR..LAST_YEAR, else None.

    A year-1 time east of Greenwich has no UTC datetime at all (the
    conversion overflows), so this is the check before any conversion.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        return None
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        return None
    return utc if FIRST_YEAR <= utc.year <= LAST_YEAR else None
