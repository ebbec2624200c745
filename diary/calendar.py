"""The month calendar and "on this day", in the reader's time zone."""

from __future__ import annotations

import calendar as stdlib_calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload

from .entries import live_entries
from .errors import InvalidInput
from .extensions import db
from .models import Entry, User, is_live
from .timestamps import FIRST_YEAR, LAST_YEAR

MAX_YEARS_BACK = 100


def user_zone(user: User) -> ZoneInfo:
    """The user's own time zone if chosen, else the site's DEFAULT_TIMEZONE."""
    name = getattr(user, "time_zone", "") or current_app.config["DEFAULT_TIMEZONE"]
    return ZoneInfo(name)


def parse_month(raw: str | None, today: date) -> tuple[int, int]:
    """`2024-05` as (2024, 5); absent means this month.

    Years 1 and 9999 are valid dates, but a month's bounds in a time zone
    are not (they fall outside datetime): the years are those of
    diary.timestamps.
    """
    if not raw:
        return today.year, today.month
    try:
        year, month = (int(part) for part in raw.split("-"))
        date(year, month, 1)
    except (ValueError, OverflowError):  # date() overflows on 20 digits rather than refusing
        raise InvalidInput("month", "month must look like 2024-05.") from None
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidInput(
            "month",
            "Choose a month from %(first)s to %(last)s.",
            first=f"{FIRST_YEAR}-01",
            last=f"{LAST_YEAR}-12",
        )
    return year, month


def _local_range(start: date, end: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) local days as UTC instants."""
    return (
        datetime.combine(start, time(), zone).astimezone(UTC),
        datetime.combine(end, time(), zone).astimezone(UTC),
    )


@dataclass
class MonthView:
    year: int
    month: int
    weeks: list[list[date | None]]
    # Local day -> the entries written that day, newest first.
    days: dict[date, list[Entry]]
    previous: str
    next: str


def month_view(user: User, year: int, month: int) -> MonthView:
    """The weeks of the month (Monday first) and the live entries of each day."""
    zone = user_zone(user)
    first = date(year, month, 1)
    last_day = stdlib_calendar.monthrange(year, month)[1]
    after = first + timedelta(days=last_day)
    start, end = _local_range(first, after, zone)
    entries = db.session.scalars(
        live_entries(user)
        .where(Entry.created_at >= start, Entry.created_at < end)
        .options(selectinload(Entry.images))
        .order_by(Entry.created_at.desc(), Entry.id.desc())
    )
    days: dict[date, list[Entry]] = {}
    for entry in entries:
        days.setdefault(entry.created_at.astimezone(zone).date(), []).append(entry)
    weeks = [
        [day if day.month == month else None for day in week]
        for week in stdlib_calendar.Calendar(firstweekday=0).monthdatescalendar(year, month)
    ]
    previous = first - timedelta(days=1)
    return MonthView(
        year, month, weeks, days, f"{previous:%Y-%m}", f"{after.year:04d}-{after.month:02d}"
    )


def on_this_day(user: User, today: date | None = None) -> list[tuple[int, list[Entry]]]:
    """Entries from this month and day in earlier years, most recent year first.

    One query over the user's timeline index: a UTC range per earlier year.
    29 February looks at 28 February in years without one.
    """
    zone = user_zone(user)
    today = today or datetime.now(zone).date()
    ranges = []
    for year in range(today.year - 1, today.year - MAX_YEARS_BACK - 1, -1):
        if year < 1:
            break
        day = min(today.day, stdlib_calendar.monthrange(year, today.month)[1])
        local = date(year, today.month, day)
        start, end = _local_range(local, local + timedelta(days=1), zone)
        ranges.append(sa.and_(Entry.created_at >= start, Entry.created_at < end))
    first = db.session.scalar(sa.select(sa.func.min(Entry.created_at)).where(is_live(user)))
    if first is None:
        return []
    # Only the years the diary covers: no hundred ranges for a new diary.
    oldest = first.astimezone(zone).year
    ranges = ranges[: max(today.year - oldest, 0)]
    if not ranges:
        return []
    entries = db.session.scalars(
        live_entries(user)
        .where(sa.or_(*ranges))
        .options(selectinload(Entry.images))
        .order_by(Entry.created_at.desc(), Entry.id.desc())
    )
    years: dict[int, list[Entry]] = {}
    for entry in entries:
        years.setdefault(entry.created_at.astimezone(zone).year, []).append(entry)
    return list(years.items())
