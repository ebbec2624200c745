"""A day with the diary in Chromium: sign in, write with a photo, edit, Trash, restore, language.

Runs once as a 375 px phone and once as a desktop; each step leaves a
screenshot in test-artifacts/browser/ to look at.
"""

from __future__ import annotations

import re

import pytest

from ..conftest import image_bytes

pytestmark = pytest.mark.browser

VIEWPORTS = {
    "phone": {"width": 375, "height": 740},
    "desktop": {"width": 1280, "height": 900},
}


@pytest.fixture(params=list(VIEWPORTS))
def tab(request, chromium, site, artifacts):
    """A fresh browser context (no cookies) with the viewport, watching for errors."""
    context = chromium.new_context(
        viewport=VIEWPORTS[request.param], locale="en-US", base_url=site["url"]
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    shots = {"n": 0}

    def shot(name: str) -> None:
        shots["n"] += 1
        page.screenshot(
            path=str(artifacts / f"{request.param}-{shots['n']:02d}-{name}.png"), full_page=True
        )

    page.shot = shot  # type: ignore[attr-defined]
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    context.close()
    # No blocked image, no refused script, no failed request: the CSP and the pages agree.
    assert problems == []


def follow(page, name: str, role: str = "link") -> None:
    """Click a link (or button) of the top bar, opening the menu first on a phone."""
    target = page.locator("header.site").get_by_role(role, name=name, exact=True)
    menu = page.locator("details.menu > summary")
    # Whichever the layout shows, once the page has one: right after a click that
    # navigates, neither may be visible yet, and that is no reason to open the menu.
    target.or_(menu).first.wait_for()
    if not target.is_visible():
        menu.click()
    with page.expect_navigation():
        target.click()


def loaded_images(page, selector: str) -> list[int]:
    """naturalWidth of each matching image once it has loaded (0 means it failed)."""
    locator = page.locator(selector)
    locator.first.wait_for()
    return page.eval_on_selector_all(
        selector,
        """images => Promise.all(images.map(img => img.complete ? img.naturalWidth :
            new Promise(done => { img.onload = () => done(img.naturalWidth);
                                  img.onerror = () => done(0); })))""",
    )


def loaded(page, selector: str) -> int:
    """How many matching images loaded (sizes vary with the resized copies and srcset)."""
    widths = loaded_images(page, selector)
    assert all(width > 0 for width in widths), widths
    return len(widths)


def test_a_day_with_the_diary(tab, site, account, tmp_path):
    page = tab
    photo = tmp_path / "dinner.jpg"
    photo.write_bytes(image_bytes(size=(640, 480), color="orange"))
    river = tmp_path / "river.png"
    river.write_bytes(image_bytes("PNG", size=(300, 200), color="steelblue"))

    # Sign in: a browser without a session is sent to the sign-in page.
    page.goto("/")
    assert re.search(r"/login\?next=", page.url)
    page.shot("sign-in")
    page.get_by_label("Email").fill(account["email"])
    page.get_by_label("Password").fill(account["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site["url"] + "/")
    assert page.get_by_text("Your diary is empty").is_visible()
    page.shot("empty-timeline")

    # Write an entry with a photo, seeing the preview before sending.
    page.get_by_role("link", name="Write", exact=True).click()
    page.get_by_label("What happened today?").fill("Dinner with **friends** in Kyoto")
    page.wait_for_load_state()
    page.get_by_label("Photos").set_input_files(str(photo))
    assert loaded_images(page, "#write-previews img") == [640]
    page.shot("write-with-preview")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/entries/\d+$"))
    entry_url = page.url
    assert page.get_by_text("Saved.").is_visible()
    assert page.locator(".text strong").inner_text() == "friends"
    assert loaded(page, ".photos img") == 1
    page.shot("entry")

    # The timeline shows it under today's date, the photo really loaded from the bucket.
    follow(page, "Timeline")
    assert page.locator(".day h2").count() == 1
    # With srcset the natural width depends on the screen; > 0 means it loaded.
    assert all(width > 0 for width in loaded_images(page, ".entry .photos img"))
    photo_src = page.locator(".entry .photos img").get_attribute("src")
    assert photo_src.startswith(site["s3"])
    page.shot("timeline-with-photo")

    # Edit: new text and a second photo, which goes last...
    page.goto(entry_url)
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Text").fill("Dinner with friends in Kyoto, then a walk by the river")
    page.wait_for_load_state()  # app.js (deferred) listens for the file choice
    page.get_by_label("Add photos").set_input_files(str(river))
    assert loaded_images(page, "#edit-previews img") == [300]
    page.shot("edit")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(entry_url)
    assert page.get_by_text("then a walk by the river").is_visible()
    assert loaded(page, ".photos img") == 2
    # ...then reorder it first.
    page.get_by_role("link", name="Edit").click()
    page.get_by_role("button", name="Move up (Photo 2 of 2)").click()
    page.shot("reorder")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(entry_url)
    assert loaded(page, ".photos img") == 2

    # Delete: it leaves the timeline for Trash.
    page.get_by_role("button", name="Move to Trash").click()
    page.wait_for_url(site["url"] + "/")
    assert page.get_by_text("Moved to Trash").is_visible()
    assert page.get_by_text("walk by the river").count() == 0
    page.shot("after-delete")

    # Restore it from Trash.
    follow(page, "Trash")
    assert page.get_by_text("walk by the river").is_visible()
    assert loaded(page, ".trashed .photos img") == 2
    page.shot("trash")
    page.get_by_role("button", name="Restore").click()
    page.wait_for_url(entry_url)
    assert page.get_by_text("Restored to the timeline.").is_visible()
    page.goto("/")
    assert page.get_by_text("walk by the river").is_visible()

    # Switch to Japanese: the whole site follows, dates included.
    follow(page, "Settings")
    page.get_by_label("Language").select_option("ja")
    page.get_by_role("button", name="Save").click()
    # The form posts and the page comes back at the same address: wait for the message.
    page.get_by_text("設定を保存しました。").wait_for()
    page.shot("settings-in-japanese")
    follow(page, "タイムライン")
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", page.locator(".day h2").inner_text())
    assert page.locator("html").get_attribute("lang") == "ja"
    page.shot("timeline-in-japanese")

    # An API token: shown once, then listed without its value.
    follow(page, "設定")
    page.get_by_role("link", name="API トークン").click()
    page.get_by_label("名前").fill("phone app")
    page.get_by_role("button", name="トークンを作成").click()
    token = page.get_by_label("トークン", exact=True).input_value()
    assert token.startswith("diary_")
    page.shot("new-token")
    page.goto("/settings/tokens")
    assert token not in page.content()
    assert page.get_by_role("heading", name="phone app", exact=True).is_visible()

    # Delete for good, confirming the browser's question.
    page.goto(entry_url)
    page.get_by_role("button", name="ゴミ箱に移動").click()
    page.wait_for_url(site["url"] + "/")
    follow(page, "ゴミ箱")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="完全に削除").click()
    page.get_by_text("写真とともに完全に削除しました。").wait_for()
    assert page.get_by_text("ゴミ箱は空です。").is_visible()
    page.shot("deleted-forever")
    assert page.request.get(photo_src).status == 404

    # Signing out ends the session; signed out, the browser's language (English) applies.
    follow(page, "サインアウト", role="button")
    page.get_by_text("Signed out.").wait_for()
    page.goto("/settings")
    assert "/login" in page.url


def test_the_pages_are_usable_with_the_keyboard(tab, site, account):
    page = tab
    page.goto("/login")

    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.type(account["email"])
    page.keyboard.press("Tab")
    page.keyboard.type(account["password"])
    # The focused control shows a visible outline.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    page.wait_for_url(site["url"] + "/")
    page.shot("keyboard-signed-in")


def test_a_wrong_password_shows_the_error_next_to_the_field(tab, account):
    page = tab
    page.goto("/login")
    page.get_by_label("Email").fill(account["email"])
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Sign in").click()

    error = page.locator("#password-error")
    assert error.inner_text() == "Email or password is not right."
    assert page.get_by_label("Email").input_value() == account["email"]
    # The failed attempt is a 401 the browser logs as a failed resource; that is expected.
    page.problems.clear()
    page.shot("sign-in-error")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_theme_follows_the_system_setting(chromium, site, account, artifacts, scheme):
    context = chromium.new_context(
        viewport=VIEWPORTS["phone"], color_scheme=scheme, base_url=site["url"]
    )
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(account["email"])
        page.get_by_label("Password").fill(account["password"])
        page.get_by_role("button", name="Sign in").click()
        page.goto("/write")
        page.screenshot(path=str(artifacts / f"phone-theme-{scheme}.png"), full_page=True)

        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(n) for n in re.findall(r"\d+", background)[:3])
        assert (red + green + blue < 150) is (scheme == "dark")
    finally:
        context.close()
