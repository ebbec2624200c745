"""Helpers for the page tests: a browser-like client that signs in and reads pages."""

from __future__ import annotations

import io
import re
from datetime import datetime

from flask import Flask
from flask.testing import FlaskClient

from diary.extensions import db
from diary.models import Entry, User

from .conftest import image_bytes

PASSWORD = "correct horse battery"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JAPANESE = {**BROWSER, "Accept-Language": "ja,en;q=0.5"}
ENGLISH = {**BROWSER, "Accept-Language": "en-GB,en;q=0.9"}


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> None:
    response = client.post("/login", data={"email": email, "password": password}, headers=BROWSER)
    assert response.status_code == 302, response.text


def page(client: FlaskClient, path: str, headers: dict[str, str] | None = None) -> str:
    """GET a page as a browser would and return its HTML, insisting on 200."""
    response = client.get(path, headers=headers or BROWSER)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    assert response.mimetype == "text/html"
    return response.text


def main_text(html: str) -> str:
    """The visible text of <main>, tags removed, whitespace collapsed."""
    main = html[html.index("<main") : html.index("</main>")]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main)).strip()


def photo(name: str = "photo.jpg", color: str = "teal") -> tuple[io.BytesIO, str]:
    return io.BytesIO(image_bytes(color=color)), name


def write(client: FlaskClient, text: str, *photos: tuple[io.BytesIO, str]) -> int:
    """Post the write form; the new entry's id."""
    response = client.post(
        "/write",
        data={"text": text, "file": list(photos)},
        content_type="multipart/form-data",
        headers=BROWSER,
    )
    assert response.status_code == 302, response.text
    return int(response.headers["Location"].rsplit("/", 1)[1])


def entry_row(app: Flask, entry_id: int) -> Entry | None:
    with app.app_context():
        entry = db.session.get(Entry, entry_id)
        if entry is not None:
            db.session.expunge(entry)
        return entry


def set_created_at(app: Flask, entry_id: int, when: datetime) -> None:
    with app.app_context():
        db.session.get(Entry, entry_id).created_at = when
        db.session.commit()


def set_user(app: Flask, user_id: int, **values: object) -> None:
    with app.app_context():
        user = db.session.get(User, user_id)
        for name, value in values.items():
            setattr(user, name, value)
        db.session.commit()
