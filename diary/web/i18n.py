"""Language and time zone for each request (Flask-Babel selectors).

The user's own setting wins; otherwise the browser's Accept-Language picks
between Japanese and English, and the site's DEFAULT_TIMEZONE applies.
"""

from __future__ import annotations

from flask import current_app, has_request_context, request
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
