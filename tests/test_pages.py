"""The pages on a phone and in Japanese, as HTML: what the server must send.

How they look and behave in a real browser is tested in tests/browser/test_screens.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from diary.extensions import db
from diary.markdown import plain_text, render_markdown
from diary.models import Image

from .conftest import image_bytes
from .entries_support import add_entry
from .pages_support import BROWSER, ENGLISH, JAPANESE, entry_row, main_text, page, sign_in


@pytest.fixture
def browser(client, user):
    sign_in(client, user.email)
    return client


def photo_ids(app, entry_id: int) -> list[int]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(Image.id).where(Image.entry_id == entry_id).order_by(Image.position)
            )
        )


# --- the bar at the top ----------------------------------------------------------------


def test_the_bar_has_the_brand_a_write_action_and_a_menu_that_opens_without_script(browser):
    html = page(browser, "/")
    header = html[html.index('<header class="site">') : html.index("</header>")]

    compose = re.search(r'<a class="button compose-action" href="/write"[^>]*>', header)
    assert compose is not None
    menu = header[header.index('<details class="menu">') :]
    assert "<summary>" in menu
    for path in ("/", "/search", "/calendar", "/tags", "/trash", "/settings"):
        assert f'href="{path}"' in menu
    assert 'action="/logout"' in menu
    # The page being shown is marked in the menu.
    assert re.search(r'<a href="/"\s+aria-current="page">', menu)


# --- calendar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "month", "previous", "following"),
    [
        (JAPANESE, "2026年12月", "2026年11月", "2027年1月"),
        (ENGLISH, "December 2026", "November 2026", "January 2027"),
    ],
)
def test_the_calendar_names_months_in_the_readers_language(
    browser, headers, month, previous, following
):
    html = page(browser, "/calendar?month=2026-12", headers)

    assert f'<h2 aria-live="polite">{month}</h2>' in html
    assert previous in html and following in html
    assert "2026-12</h2>" not in html


def test_today_is_marked_in_the_calendar(app, browser):
    today = datetime.now(ZoneInfo("Asia/Tokyo")).date()

    html = page(browser, "/calendar")

    cells = re.findall(r'<td [^>]*aria-current="date"[^>]*>\s*(?:<a [^>]*>|<span>)(\d+)<', html)
    assert cells == [str(today.day)]
    other = "2001-01" if today.year != 2001 else "2002-01"
    assert 'aria-current="date"' not in page(browser, f"/calendar?month={other}")


def test_calendar_and_search_excerpts_are_plain_text_with_the_match_marked(app, browser, user):
    when = datetime(2026, 3, 14, 3, 0, tzinfo=UTC)
    add_entry(
        app,
        user,
        "Dinner with **friends** in [Kyoto](https://example.com/kyoto)\n\n- `tea` after",
        when=when,
    )

    results = page(browser, "/search?q=friends")
    month = page(browser, "/calendar?month=2026-03")

    for html in (results, month):
        text = main_text(html)
        assert "**" not in text and "](" not in text and "`" not in text
    assert "Dinner with <mark>friends</mark> in Kyoto tea after" in results
    assert "Dinner with friends in Kyoto tea after" in main_text(month)


def test_a_tag_in_an_excerpt_is_kept_on_one_line_with_the_match_marked(app, browser, user):
    add_entry(app, user, "お寺めぐり #京都 の一日")

    html = page(browser, "/search?q=京都")

    assert 'お寺めぐり <span class="tag-text">#<mark>京都</mark></span> の一日' in html


def test_search_results_show_thumbnails_of_the_photos(app, browser, user):
    entry_id = add_entry(
        app, user, "picnic by the river", photos=(image_bytes(), image_bytes(color="red"))
    )

    html = page(browser, "/search?q=picnic")

    result = html[html.index('class="entry result') :]
    assert result.count("<img ") == 2
    assert f'href="/entries/{entry_id}/photos/1"' in result
    assert f'href="/entries/{entry_id}/photos/2"' in result


def test_tag_pages_list_tags_as_links_that_do_not_break(app, browser, user):
    add_entry(app, user, "お寺 #京都")

    html = page(browser, "/tags")

    assert re.search(
        r'<a class="tag" href="/tags/%E4%BA%AC%E9%83%BD">#京都 <span class="count">1', html
    )


# --- Markdown ---------------------------------------------------------------------------


def test_hashtags_link_to_their_tag_page_but_not_in_code_or_links():
    html = str(
        render_markdown(
            "朝の #京都 散歩 #Kyoto-Trip. `#code` [see #x](https://example.com) #123\n\n"
            "```\n#fenced\n```"
        )
    )

    kyoto = "/tags/%E4%BA%AC%E9%83%BD"
    assert f'<a href="{kyoto}" class="tag" rel="noopener noreferrer nofollow">#京都</a>' in html
    assert '<a href="/tags/kyoto-trip" class="tag"' in html and ">#Kyoto-Trip</a>." in html
    assert "<code>#code</code>" in html
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">see #x</a>' in html
    assert "/tags/123" not in html and "/tags/fenced" not in html and "/tags/x" not in html


def test_bare_urls_become_links_that_pass_on_nothing():
    html = str(render_markdown("写真は https://example.com/photos?id=1 にあります"))

    assert (
        '<a href="https://example.com/photos?id=1" rel="noopener noreferrer nofollow">'
        "https://example.com/photos?id=1</a>"
    ) in html


@pytest.mark.parametrize(
    "typed",
    [
        'javascript:alert(1) <a href="javascript:alert(1)">x</a>',
        "#tag<script>alert(1)</script>",
        '#"><img src=x onerror=alert(1)>',
    ],
)
def test_linking_lets_no_markup_through(typed):
    html = str(render_markdown(typed))

    assert "<script" not in html and "<img" not in html and '<a href="javascript' not in html


def test_plain_text_drops_the_markdown_syntax():
    assert plain_text("# Title\n\n**bold** and _it_ [link](https://e.com) `x`") == (
        "Title bold and it link x"
    )


# --- entries, photos, the viewer --------------------------------------------------------


def test_the_timeline_links_the_whole_card_and_tags_in_the_text(app, browser, user):
    entry_id = add_entry(app, user, "嵐山を歩いた #京都")

    html = page(browser, "/")

    card = html[html.index('<article class="entry linked"') :]
    assert f'class="when stretched" id="entry-{entry_id}-time" href="/entries/{entry_id}"' in card
    assert 'class="tag"' in card
    # Japanese text gets Japanese line breaking even when the pages are in English.
    assert '<div class="text" lang="ja">' in card


def test_a_single_portrait_photo_keeps_its_shape(app, browser, user):
    entry_id = add_entry(app, user, "tall", photos=(image_bytes(size=(600, 800)),))

    timeline = page(browser, "/")
    entry = page(browser, f"/entries/{entry_id}")

    # Fitted into the box at its own 3:4 shape: the page reserves exactly that space.
    assert re.search(r'<ul class="photos single"[^>]*>.*?width="312" height="416"', timeline, re.S)
    assert 'width="432" height="576"' in entry


def test_an_entrys_photos_open_the_viewer_with_labels_in_the_readers_language(app, browser, user):
    entry_id = add_entry(app, user, "two photos", photos=(image_bytes(), image_bytes()))

    html = page(browser, "/", JAPANESE)

    photos = html[html.index('<ul class="photos"') : html.index("</ul>", html.index("photos"))]
    for number in (1, 2):
        link = re.search(rf'<a href="/entries/{entry_id}/photos/{number}">\s*<img ([^>]*)>', photos)
        assert link is not None, photos
        image = link.group(1)
        assert f'alt="写真 {number} / 2"' in image
        # A grid of thumbnails, with the larger sizes for wide screens.
        assert 'srcset="' in image and 'sizes="' in image


def test_photos_in_trash_open_the_original_in_a_new_tab(app, browser, user):
    entry_id = add_entry(app, user, "gone", photos=(image_bytes(),))
    assert browser.post(f"/entries/{entry_id}/delete", headers=BROWSER).status_code == 302

    html = page(browser, "/trash")

    photos = html[html.index('<ul class="photos small"') :]
    link = re.search(r'<a href="([^"]+)" target="_blank" rel="noopener">\s*<img ([^>]*)>', photos)
    assert link is not None, photos
    assert "/photos/" not in link.group(1), "Trash has no viewer"
    assert 'srcset="' not in link.group(2)


def test_the_photo_viewer_shows_each_photo_with_previous_and_next(app, browser, user):
    entry_id = add_entry(
        app, user, "two photos", photos=(image_bytes(size=(800, 600)), image_bytes())
    )

    first = page(browser, f"/entries/{entry_id}/photos/1", JAPANESE)
    second = page(browser, f"/entries/{entry_id}/photos/2", JAPANESE)

    assert f'rel="next" href="/entries/{entry_id}/photos/2"' in first and 'rel="prev"' not in first
    assert (
        f'rel="prev" href="/entries/{entry_id}/photos/1"' in second and 'rel="next"' not in second
    )
    assert 'width="704" height="528"' in first
    assert "800 \u00d7 600" in main_text(first)
    assert "写真 1 / 2" in main_text(first)
    for missing in (0, 3):
        response = browser.get(f"/entries/{entry_id}/photos/{missing}", headers=BROWSER)
        assert response.status_code == 404


def test_another_users_photo_viewer_is_404(app, client, user, make_user):
    entry_id = add_entry(app, user, "mine", photos=(image_bytes(),))
    other = make_user("other@example.com")
    sign_in(client, other.email)

    assert client.get(f"/entries/{entry_id}/photos/1", headers=BROWSER).status_code == 404


def test_without_script_the_arrows_move_a_photo_and_only_save_saves(app, browser, user):
    entry_id = add_entry(app, user, "three", photos=(image_bytes(), image_bytes(), image_bytes()))
    a, b, c = photo_ids(app, entry_id)
    form = {"text": "three, edited", "image": [str(a), str(b), str(c)], "remove": [str(c)]}

    moved = browser.post(
        f"/entries/{entry_id}/edit", data={**form, "move": f"{a}:down"}, headers=BROWSER
    )

    assert moved.status_code == 200
    assert re.findall(r'name="image" value="(\d+)"', moved.text) == [str(b), str(a), str(c)]
    assert "three, edited" in moved.text
    assert re.search(rf'name="remove" value="{c}" checked', moved.text)
    # Nothing is saved by a move.
    assert photo_ids(app, entry_id) == [a, b, c]
    assert entry_row(app, entry_id).text == "three"

    saved = browser.post(
        f"/entries/{entry_id}/edit",
        data={**form, "image": [str(b), str(a), str(c)]},
        headers=BROWSER,
    )

    assert saved.status_code == 302
    assert photo_ids(app, entry_id) == [b, a]


def test_the_edit_page_has_arrows_not_position_numbers(app, browser, user):
    entry_id = add_entry(app, user, "two", photos=(image_bytes(), image_bytes()))
    a, b = photo_ids(app, entry_id)

    html = page(browser, f"/entries/{entry_id}/edit")

    assert 'type="number"' not in html
    assert re.search(rf'name="move" value="{a}:up"\s+formaction="[^"]+"\s+disabled', html)
    assert re.search(rf'name="move" value="{b}:down"\s+formaction="[^"]+"\s+disabled', html)
    assert f'value="{a}:down"' in html and f'value="{b}:up"' in html
    # A styled picker: the label is the button, the chosen photos are listed after it.
    assert re.search(r'<label class="file-label" for="file">', html)
    assert 'class="file-input"' in html and 'data-preview="edit-previews"' in html


# --- settings and tokens ----------------------------------------------------------------


def test_tokens_are_cards_with_a_copy_button_for_the_new_one(browser):
    response = browser.post("/settings/tokens", data={"name": "phone app"}, headers=BROWSER)

    html = response.text
    assert "<table" not in html
    assert re.search(
        r'<button type="button" class="secondary" data-copy="new-token"[^>]* hidden>', html
    )
    assert re.search(r'<li class="card token">\s*<h3 class="token-name">phone app</h3>', html)


def test_settings_tabs_are_three_and_export_is_on_the_profile_page(browser):
    html = page(browser, "/settings/tokens", JAPANESE)

    tabs = html[
        html.index('<nav class="tabs"') : html.index("</nav>", html.index('<nav class="tabs"'))
    ]
    assert tabs.count("<a ") == 3
    assert 'href="/settings/export"' in page(browser, "/settings")
