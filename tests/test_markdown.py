"""Entry text as safe HTML, and the memo that keeps a timeline from parsing it again."""

from __future__ import annotations

from diary import markdown


def test_a_text_is_parsed_once_however_often_it_is_shown(monkeypatch):
    parsed: list[str] = []
    real = markdown._parser.render
    monkeypatch.setattr(markdown._parser, "render", lambda text: parsed.append(text) or real(text))
    markdown._remembered_html.cache_clear()

    first = markdown.render_markdown("Dinner in **Kyoto** #京都")
    again = markdown.render_markdown("Dinner in **Kyoto** #京都")

    assert first == again
    assert "<strong>Kyoto</strong>" in first
    assert parsed == ["Dinner in **Kyoto** #京都"]


def test_a_long_text_is_rendered_each_time_and_never_kept(monkeypatch):
    markdown._remembered_html.cache_clear()
    long_text = "x" * (markdown.MEMO_MAX_CHARS + 1)

    markdown.render_markdown(long_text)

    assert markdown._remembered_html.cache_info().currsize == 0


def test_raw_html_in_a_text_is_escaped_whether_remembered_or_not():
    for text in ("<script>alert(1)</script>", "<script>" + "y" * markdown.MEMO_MAX_CHARS):
        html = markdown.render_markdown(text)
        assert "<script>" not in html
        assert "&lt;script&gt;" in html
