"""Entry text as HTML: Markdown for emphasis, lists and links, then an allow-list sanitizer.

Two layers on purpose: markdown-it escapes raw HTML typed into an entry and
refuses javascript: links, and nh3 (the Rust `ammonia` sanitizer) then drops
any tag, attribute or URL scheme not on the list below, whatever the parser
let through. Images are not allowed: a photo belongs in the entry's photos,
and the Content-Security-Policy would block other origins anyway.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

ALLOWED_TAGS = {
    "p",
    "br",
    "em",
    "strong",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}

# `html: False` escapes raw HTML; `breaks` keeps the line breaks people type in a diary.
_parser = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False}).enable(
    ["strikethrough", "table"]
)


def render_markdown(text: str) -> Markup:
    """Safe HTML for an entry's text."""
    html = _parser.render(text or "")
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # noqa: S704 (sanitized by nh3 just above)
