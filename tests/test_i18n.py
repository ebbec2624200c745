"""Every string on the pages exists in Japanese, and the compiled catalog matches its source.

Domain errors (diary/errors.py) are part of it: a Japanese reader sees the
rules' refusals in Japanese, next to the field.
"""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from PIL import Image as PILImage

from .pages_support import JAPANESE, sign_in
from .servers import ROOT

TRANSLATIONS = ROOT / "diary" / "translations"
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "lazy_gettext": None,
    "_l": None,
    "N_": None,
    # The rules' refusals: the message template is the second argument.
    "InvalidInput": (2,),
    "UnsupportedMedia": (2,),
    "ContentTooLarge": (2,),
    "NotFound": (2,),
    # Parts of refusals with their own template (which record an import refuses).
    "Phrase": None,
}


def extracted_messages() -> set[str]:
    """What `make translations` would extract from the code and the templates."""
    found: set[str] = set()
    for folder, method in ((ROOT / "diary", "python"), (ROOT / "templates", "jinja2")):
        method_map = [("**.py", "python")] if method == "python" else [("**.html", "jinja2")]
        for _file, _line, message, _comments, _context in extract_from_dir(
            folder, method_map=method_map, keywords=KEYWORDS
        ):
            found.update([message] if isinstance(message, str) else [m for m in message if m])
    return found


def japanese_catalog(path: Path):
    with path.open("rb") as source:
        return read_po(source, locale="ja")


def test_every_string_of_the_pages_has_a_japanese_translation():
    catalog = japanese_catalog(TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.po")
    translated = {message.id for message in catalog if message.id and message.string}

    extracted = extracted_messages()
    missing = sorted(extracted - translated)

    assert {
        "Timeline",
        "Write something or add a photo.",
        "Too many attempts",
        "%(n)s images are not accepted.",
        "The text is longer than %(n)s characters.",
    } <= extracted
    assert missing == [], "run `make translations` and translate these in messages.po"


def test_no_translation_is_fuzzy_or_empty():
    catalog = japanese_catalog(TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.po")

    assert [m.id for m in catalog if m.id and (m.fuzzy or not m.string)] == []


def test_the_compiled_catalog_matches_its_source():
    catalog = japanese_catalog(TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.po")
    with (TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.mo").open("rb") as compiled_file:
        compiled = read_mo(compiled_file)

    source = {m.id: m.string for m in catalog if m.id}
    assert {m.id: m.string for m in compiled if m.id} == source, "run `make translations`"


def test_placeholders_survive_translation():
    catalog = japanese_catalog(TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.po")

    for message in catalog:
        if message.id and "%(" in message.id:
            names = sorted(part.split(")")[0] for part in message.id.split("%(")[1:])
            translated = sorted(part.split(")")[0] for part in message.string.split("%(")[1:])
            assert names == translated, message.id


def test_a_refused_photo_is_explained_in_the_readers_language(client, user):
    """The rules raise "%(n)s images are not accepted." in English; the page shows Japanese."""
    sign_in(client, user.email)
    bitmap = io.BytesIO()
    PILImage.new("RGB", (8, 8), "red").save(bitmap, "BMP")
    bitmap.seek(0)

    response = client.post(
        "/write",
        data={"text": "写真つき", "file": [(bitmap, "photo.bmp")]},
        content_type="multipart/form-data",
        headers=JAPANESE,
    )

    assert response.status_code == 415
    assert "BMP 形式の画像は受け付けていません。" in response.text
    assert "images are not accepted" not in response.text


def test_the_api_keeps_english_whatever_the_client_prefers(client, auth):
    response = client.post(
        "/api/v1/entries", json={"text": "x" * 20_001}, headers={**auth, "Accept-Language": "ja"}
    )

    assert response.status_code == 400
    assert response.get_json()["detail"] == "The text is longer than 20000 characters."


def test_a_refusal_naming_a_record_is_translated_whole(app):
    """The record's label and the refusal inside it are templates too (diary.errors.Phrase)."""
    from diary.errors import InvalidInput, Phrase

    error = InvalidInput(
        "file",
        "%(label)s: %(error)s",
        label=Phrase("entry %(n)s", n=3),
        error=InvalidInput("text", "Write something or add a photo."),
    )

    with app.test_request_context(headers=JAPANESE):
        assert error.message == "entry 3: Write something or add a photo."
        assert error.translated() == "エントリー 3: 何か書くか、写真を追加してください。"


def test_times_on_pages_read_as_babel_writes_them_in_each_language(app):
    """The per-request time formatting gives what Flask-Babel's own filter gave."""
    from datetime import UTC, datetime

    import flask_babel

    from diary.web import i18n

    moment = datetime(2026, 12, 2, 21, 5, tzinfo=UTC)
    for language in ("ja", "en"):
        with app.test_request_context(headers={"Accept-Language": language}):
            for size in ("short", "medium"):
                assert i18n.format_time(moment, size) == flask_babel.format_time(moment, size)
            assert i18n.format_date(moment.date(), "full") == flask_babel.format_date(
                moment.date(), "full"
            )
