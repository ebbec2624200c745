"""The month calendar and "on this day", by the reader's local date."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from diary import calendar
from diary.extensions import db
from diary.models import User

from .entries_support import add_entry
from .pages_support import page, sign_in


def marked_days(html: str) -> list[int]:
    return [
        int(day) for day in re.findall(r'<td class="has-entries[^"]*">\s*<a [^>]*>(\d+)</a>', html)
    ]


def test_the_month_marks_the_days_with_entries_in_the_users_time_zone(
    app: Flask, client: FlaskClient, user: User
) -> None:
    # 15:30 UTC on 1 May is 00:30 on 2 May in Tokyo (the default time zone).
    add_entry(app, user, "late night", when=datetime(2024, 5, 1, 15, 30, tzinfo=UTC))
    add_entry(app, user, "mid month", when=datetime(2024, 5, 20, 3, 0, tzinfo=UTC))
    add_entry(app, user, "next month", when=datetime(2024, 5, 31, 16, 0, tzinfo=UTC))
    add_entry(
        app,
        user,
        "trashed",
        when=datetime(2024, 5, 10, 3, 0, tzinfo=UTC),
        trashed_at=datetime.now(UTC),
    )
    sign_in(client, user.email)
    html = page(client, "/calendar?month=2024-05")
    assert marked_days(html) == [2, 20]
    assert 'href="#day-2024-05-02"' in html
    assert "late night" in html and "next month" not in html and "trashed" not in html
    assert "month=2024-04" in html and "month=2024-06" in html


def test_the_users_own_time_zone_wins_over_the_default(
    app: Flask, client: FlaskClient, user: User
) -> None:
    with app.app_context():
        db.session.get(User, user.id).time_zone = "America/New_York"
        db.session.commit()
    add_entry(app, user, "evening in New York", when=datetime(2024, 5, 2, 1, 0, tzinfo=UTC))
    sign_in(client, user.email)
    assert marked_days(page(client, "/calendar?month=2024-05")) == [1]


@pytest.mark.parametrize("bad", ["2024-13", "May", "2024-05-01", "0-01"])
def test_a_bad_month_is_refused(client: FlaskClient, user: User, bad: str) -> None:
    sign_in(client, user.email)
    response = client.get("/calendar", query_string={"month": bad})
    assert response.status_code == 400


def test_on_this_day_shows_the_same_date_in_earlier_years_only(app: Flask, user: User) -> None:
    for when, text in [
        (datetime(2023, 6, 9, 23, 0, tzinfo=UTC), "2023, 10 June in Tokyo"),
        (datetime(2020, 6, 10, 2, 0, tzinfo=UTC), "2020, 10 June"),
        (datetime(2020, 6, 11, 2, 0, tzinfo=UTC), "2020, 11 June"),
        (datetime(2024, 6, 10, 2, 0, tzinfo=UTC), "this year"),
    ]:
        add_entry(app, user, text, when=when)
    with app.app_context():
        owner = db.session.get(User, user.id)
        memories = calendar.on_this_day(owner, date(2024, 6, 10))
        assert [(year, [entry.text for entry in items]) for year, items in memories] == [
            (2023, ["2023, 10 June in Tokyo"]),
            (2020, ["2020, 10 June"]),
        ]


def test_29_february_is_remembered_on_28_february_in_other_years(app: Flask, user: User) -> None:
    add_entry(app, user, "leap day", when=datetime(2024, 2, 29, 3, 0, tzinfo=UTC))
    add_entry(app, user, "the 28th", when=datetime(2023, 2, 28, 3, 0, tzinfo=UTC))
    with app.app_context():
        owner = db.session.get(User, user.id)
        assert [y for y, _ in calendar.on_this_day(owner, date(2028, 2, 29))] == [2024, 2023]


def test_the_calendar_page_shows_on_this_day(app: Flask, client: FlaskClient, user: User) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    today = datetime.now(tokyo).date()
    try:
        years_ago = today.replace(year=today.year - 3)
    except ValueError:  # 29 February is remembered on the 28th in other years
        years_ago = today.replace(year=today.year - 3, day=28)
    add_entry(
        app,
        user,
        "three years ago today",
        when=datetime.combine(years_ago, time(12), tokyo).astimezone(UTC),
    )
    add_entry(
        app,
        user,
        "the day before",
        when=datetime.combine(years_ago - timedelta(days=1), time(12), tokyo).astimezone(UTC),
    )
    sign_in(client, user.email)
    html = page(client, "/calendar")
    section = html.split('id="on-this-day"', 1)[1]
    assert "three years ago today" in section
    assert "the day before" not in section
    assert f"<h3>{today.year - 3}</h3>" in section


def test_every_page_links_to_search_calendar_tags_and_settings_to_export(
    client: FlaskClient, user: User
) -> None:
    sign_in(client, user.email)
    html = page(client, "/settings")
    for path in ("/search", "/calendar", "/tags", "/settings/export"):
        assert f'href="{path}"' in html
