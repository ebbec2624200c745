"""Every string on the pages exists in Japanese, and the compiled catalog matches its source."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from .servers import ROOT

TRANSLATIONS = ROOT / "diary" / "translations"
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "lazy_gettext": None,
    "_l": None,
    "N_": None,
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

    assert {"Timeline", "Write something or add a photo.", "Too many attempts"} <= extracted
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
