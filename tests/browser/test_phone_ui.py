"""What a phone user does, with and without JavaScript, in Chromium.

The menu, the whole entry card, tags, the photo viewer, moving photos and
copying a new token; every control also works with scripts turned off.
"""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from ..servers import flask_cli
from .test_screens import CONFIGS, picture, post_entry, sign_in

pytestmark = pytest.mark.browser

PHONE = {**CONFIGS["phone-ja"], "locale": "en-US"}


@pytest.fixture
def token(site: dict, account: dict) -> str:
    printed = flask_cli(site["env"], "tokens", "create", account["email"], "--name", "setup")
    return printed.strip().splitlines()[-1]


def photo_order(site: dict, token: str, entry_id: int) -> list[int]:
    response = requests.get(
        f"{site['url']}/api/v1/entries/{entry_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [image["id"] for image in response.json()["images"]]


def two_photos(site: dict, token: str) -> int:
    return post_entry(
        site,
        token,
        "two photos #京都",
        ("wide.jpg", picture((900, 600), "#3d7a3d", "#9bc27a")),
        ("tall.jpg", picture((600, 900), "#4a78b5", "#c9b48a")),
    )


def open_tab(chromium, site: dict, **options):
    context = chromium.new_context(base_url=site["url"], **{**PHONE, **options})
    return context, context.new_page()


def test_without_javascript_the_menu_opens_and_the_arrows_move_photos(
    chromium, site, account, token
):
    entry_id = two_photos(site, token)
    first, second = photo_order(site, token, entry_id)
    context, page = open_tab(chromium, site, java_script_enabled=False)
    try:
        page.goto("/login")
        sign_in(page, site, account)

        search = page.locator("header.site").get_by_role("link", name="Search", exact=True)
        assert not search.is_visible()
        page.locator("details.menu > summary").click()
        search.click()
        page.wait_for_url(re.compile(r"/search$"))

        page.goto(f"/entries/{entry_id}/edit")
        # The browser's own file control, which names the chosen files itself.
        assert page.locator("#file").is_visible()
        page.get_by_role("button", name="Move down (Photo 1 of 2)").click()
        page.wait_for_load_state()
        assert page.locator("input[name=image]").evaluate_all(
            "inputs => inputs.map(input => Number(input.value))"
        ) == [second, first]
        # Moving saved nothing; Save does.
        assert photo_order(site, token, entry_id) == [first, second]
        page.get_by_role("button", name="Save").click()
        page.wait_for_url(re.compile(rf"/entries/{entry_id}$"))
        assert photo_order(site, token, entry_id) == [second, first]
    finally:
        context.close()


def test_with_javascript_photos_move_at_once_and_can_be_dragged(chromium, site, account, token):
    entry_id = post_entry(
        site,
        token,
        "three photos",
        ("a.jpg", picture((600, 600), "red", "white")),
        ("b.jpg", picture((600, 600), "green", "white")),
        ("c.jpg", picture((600, 600), "blue", "white")),
    )
    a, b, c = photo_order(site, token, entry_id)
    context, page = open_tab(
        chromium, site, locale="ja-JP", viewport={"width": 1280, "height": 800}
    )
    try:
        page.goto("/login")
        sign_in(page, site, account)
        page.goto(f"/entries/{entry_id}/edit")
        page.evaluate("window.stillHere = true")

        move_down = page.get_by_role("button", name="後ろへ移動 (写真 1 / 3)")
        move_down.click()
        order = "inputs => inputs.map(input => Number(input.value))"
        assert page.locator("input[name=image]").evaluate_all(order) == [b, a, c]
        assert page.evaluate("window.stillHere") is True, "the page was sent, not rearranged"
        # The labels follow the new order, and the keyboard stays on the moved photo.
        assert page.evaluate("document.activeElement.textContent").strip().endswith("(写真 2 / 3)")
        assert page.locator("[data-reorder-status]").inner_text() == "写真 2 / 3"

        page.locator("#photo-" + str(c)).drag_to(page.locator("#photo-" + str(b)))
        assert page.locator("input[name=image]").evaluate_all(order)[0] == c
        dragged = page.locator("input[name=image]").evaluate_all(order)
        page.get_by_role("button", name="保存").click()
        page.wait_for_url(re.compile(rf"/entries/{entry_id}$"))
        assert photo_order(site, token, entry_id) == dragged
    finally:
        context.close()


def test_the_whole_card_opens_the_entry_and_its_links_still_work(chromium, site, account, token):
    entry_id = two_photos(site, token)
    context, page = open_tab(chromium, site)
    try:
        page.goto("/login")
        sign_in(page, site, account)
        card = page.locator(f"article:has(#entry-{entry_id}-time)")

        # A tap on the words (not on a link) opens the entry: the time link, stretched
        # over the card, takes it.
        words = card.locator(".text p").bounding_box()
        page.mouse.click(words["x"] + 4, words["y"] + 4)
        page.wait_for_url(re.compile(rf"/entries/{entry_id}$"))
        page.go_back()
        # ...a tag opens its tag page, a thumbnail the photo viewer.
        card.get_by_role("link", name="#京都").click()
        page.wait_for_url(re.compile(r"/tags/%E4%BA%AC%E9%83%BD$"))
        page.go_back()
        card.get_by_role("link", name="Photo 2 of 2").click()
        page.wait_for_url(re.compile(rf"/entries/{entry_id}/photos/2$"))
        page.keyboard.press("ArrowLeft")
        page.wait_for_url(re.compile(rf"/entries/{entry_id}/photos/1$"))
        page.keyboard.press("ArrowRight")
        page.wait_for_url(re.compile(rf"/entries/{entry_id}/photos/2$"))

        # With the keyboard, the focused card is outlined whole.
        page.goto("/")
        page.locator(f"#entry-{entry_id}-time").focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")
        outline = page.evaluate(
            f"getComputedStyle(document.getElementById('entry-{entry_id}-time'), '::after')"
            ".outlineStyle"
        )
        assert outline == "solid"
    finally:
        context.close()


def test_a_new_token_is_copied_with_one_tap(chromium, site, account):
    context, page = open_tab(chromium, site, locale="ja-JP")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site["url"])
    try:
        page.goto("/login")
        sign_in(page, site, account)
        page.goto("/settings/tokens")
        page.get_by_label("名前").fill("phone app")
        page.get_by_role("button", name="トークンを作成").click()
        token = page.locator("#new-token").input_value()

        page.get_by_role("button", name="コピー").click()

        # The copy is asynchronous: wait for its status rather than read it at once.
        expect(page.locator("[data-copy-status]")).to_have_text("コピーしました")
        assert page.evaluate("navigator.clipboard.readText()") == token
        # The Revoke buttons stay on one line on a phone.
        for button in page.get_by_role("button", name=re.compile("を無効にする|無効にする")).all():
            assert button.evaluate("b => b.getClientRects().length") == 1
            assert button.bounding_box()["height"] < 50
    finally:
        context.close()


def test_the_photo_picker_lists_the_chosen_photos(chromium, site, account, tmp_path):
    photo = tmp_path / "夕焼け.jpg"
    photo.write_bytes(picture((800, 600), "orange", "purple"))
    context, page = open_tab(chromium, site)
    try:
        page.goto("/login")
        sign_in(page, site, account)
        page.goto("/write")
        # The file control is hidden behind its label, which looks like a button.
        assert page.locator("#file").bounding_box()["width"] <= 1
        label = page.locator("label[for=file]")
        assert label.evaluate("l => getComputedStyle(l).borderStyle") == "dashed"

        page.get_by_label("Photos").set_input_files(str(photo))

        assert page.locator("#write-previews li").inner_text() == "夕焼け.jpg"
        page.wait_for_function("document.querySelector('#write-previews img').naturalWidth === 800")
    finally:
        context.close()
