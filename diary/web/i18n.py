"""Language and time zone for each request (Flask-Babel selectors), and the templates' use of them.

The user's own setting wins; otherwise the browser's Accept-Language picks
between Japanese and English, and the site's DEFAULT_TIMEZONE applies.

Templates translate and format dates through helpers that look the request's
translations, locale and zone up once per request. Flask-Babel's own look
them up again on every call, through several layers: on a timeline of 20
entries that was about a tenth of the page's cost.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from babel import dates
from flask import Flask, current_app, g, has_request_context, request
from flask_babel import get_locale, get_timezone, get_translations
from flask_login import current_user

from ..accounts import SUPPORTED_LANGUAGES

DEFAULT_LANGUAGE = "en"


def select_locale() -> str:
    """The user's language, else the best match for Accept-Language, else English."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    if current_user.is_authenticated and current_user.language in SUPPORTED_LANGUAGES:
        return current_user.language
    return request.accept_languages.best_match(SUPPORTED_LANGUAGES) or DEFAULT_LANGUAGE


def select_timezone() -> str:
    """The user's time zone, else the site default (Asia/Tokyo unless configured)."""
    if has_request_context() and current_user.is_authenticated and current_user.time_zone:
        return current_user.time_zone
    return current_app.config["DEFAULT_TIMEZONE"]


def _request_babel() -> tuple[Any, Any, Any]:
    """(translations, locale, time zone) of this request, looked up on its first use."""
    found = g.get("diary_babel")
    if found is None:
        found = g.diary_babel = (get_translations(), get_locale(), get_timezone())
    return found


def gettext(message: str) -> str:
    """This request's translation of `message`, for templates and per-item view code."""
    return _request_babel()[0].ugettext(message)


def _ngettext(singular: str, plural: str, number: int) -> str:
    return _request_babel()[0].ungettext(singular, plural, number)


def format_date(value: date, format: str = "medium") -> str:
    return dates.format_date(value, format, locale=_request_babel()[1])


def format_time(value: datetime, format: str = "medium") -> str:
    _, locale, zone = _request_babel()
    if format not in ("short", "medium", "long", "full"):
        return dates.format_time(value, format, tzinfo=zone, locale=locale)
    # The locale's pattern is looked up and parsed once per request: a timeline
    # shows a time for each of its entries.
    patterns = g.setdefault("diary_time_patterns", {})
    pattern = patterns.get(format)
    if pattern is None:
        pattern = patterns[format] = dates.get_time_format(format, locale=locale)
    return pattern.apply(value.astimezone(zone), locale)


def format_datetime(value: datetime, format: str = "medium") -> str:
    _, locale, zone = _request_babel()
    return dates.format_datetime(value, format, tzinfo=zone, locale=locale)


def init_app(app: Flask) -> None:
    """After Flask-Babel's init_app: the templates' `_`, `ngettext` and date filters."""
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=gettext, ngettext=_ngettext, newstyle=True
    )
    app.jinja_env.filters.update(
        dateformat=format_date, timeformat=format_time, datetimeformat=format_datetime
    )
