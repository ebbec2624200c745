"""Entry text as HTML: Markdown for emphasis, lists and links, then an allow-list sanitizer.

Two layers on purpose: markdown-it escapes raw HTML typed into an entry and
refuses javascript: links, and nh3 (the Rust `ammonia` sanitizer) then drops
any tag, attribute or URL scheme not on the list below, whatever the parser
let through. Images are not allowed: a photo belongs in the entry's photos,
and the Content-Security-Policy would block other origins anyway.

On top of CommonMark: bare URLs become links (linkify-it-py), and #tags link
to their tag page. Both work on the parser's tokens, so code spans, code
blocks and existing links are left as written; every link gets
rel="noopener noreferrer nofollow" from nh3.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

from .tags import tag_spans

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
# Only the class hashtag links carry (it keeps "#京都" from breaking across lines).
ALLOWED_CLASSES = {"a": {"tag"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
TAG_PAGE = "/tags/"


def _link_tags(state: StateCore) -> None:
    """Turn #tags in text into links to their tag page; never inside a link or code."""
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children: list[Token] = []
        inside_link = 0
        for token in block.children:
            if token.type == "link_open":
                inside_link += 1
            elif token.type == "link_close":
                inside_link -= 1
            if token.type == "text" and not inside_link and (spans := tag_spans(token.content)):
                children.extend(_tag_tokens(token, spans))
            else:
                children.append(token)
        block.children = children


def _tag_tokens(token: Token, spans: list[tuple[int, int, str]]) -> list[Token]:
    text = token.content
    tokens: list[Token] = []
    position = 0
    for start, end, tag in spans:
        if start > position:
            tokens.append(Token("text", "", 0, content=text[position:start]))
        link = Token("link_open", "a", 1, attrs={"href": TAG_PAGE + quote(tag), "class": "tag"})
        tokens += [
            link,
            Token("text", "", 0, content=text[start:end]),
            Token("link_close", "a", -1),
        ]
        position = end
    if position < len(text):
        tokens.append(Token("text", "", 0, content=text[position:]))
    return tokens


# `html: False` escapes raw HTML; `breaks` keeps the line breaks people type in a diary.
_parser = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": True}).enable(
    ["strikethrough", "table", "linkify"]
)
# Last, after linkify made its links and text_join merged escaped characters into text.
_parser.core.ruler.push("link_tags", _link_tags)

_SPACES = re.compile(r"\s+")


# Rendering is a pure function of the text, so the HTML of recent texts is kept
# by the text itself: nothing can make it stale, so nothing ever invalidates it.
# A timeline shows the same entries on every visit; parsing and sanitizing 20 of
# them was a third of the page's cost. Only texts up to MEMO_MAX_CHARS are
# kept, so the memo holds a few MB per process at the very most.
MEMO_SIZE = 1024
MEMO_MAX_CHARS = 2000


def render_markdown(text: str) -> Markup:
    """Safe HTML for an entry's text."""
    text = text or ""
    if len(text) <= MEMO_MAX_CHARS:
        return _remembered_html(text)
    return _render(text)


@lru_cache(maxsize=MEMO_SIZE)
def _remembered_html(text: str) -> Markup:
    return _render(text)


def _render(text: str) -> Markup:
    html = _parser.render(text)
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # noqa: S704 (sanitized by nh3 just above)


def plain_text(text: str) -> str:
    """The words of an entry without its Markdown syntax, for excerpts: `**Kyoto**` reads Kyoto.

    Plain text, not HTML: whoever shows it escapes it.
    """
    words: list[str] = []
    for block in _parser.parse(text or ""):
        if block.type in ("fence", "code_block"):
            words.append(block.content)
        for child in block.children or ():
            if child.type in ("text", "code_inline", "image"):
                words.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                words.append(" ")
        if block.type == "inline":
            words.append(" ")
    return _SPACES.sub(" ", "".join(words)).strip()
