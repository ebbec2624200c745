"""Every page, as a 390 px phone in Japanese and as a desktop in English.

Each page is saved as a screenshot (the folder is printed, and named in any
failure) to look at, and the test fails on what can be measured:

- horizontal overflow: the page wider than the viewport, or any element reaching
  past its right edge (unless a scrolling or clipping box holds it);
- English left on the Japanese pages: a visible text, label or alt that is an
  English message of the catalog that has a Japanese translation;
- letterboxed or squashed photos: shown at another shape than their own, unless
  cropped on purpose (object-fit: cover);
- a #tag broken across two lines;
- any script error or refused resource (the Content-Security-Policy holds).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import requests
from babel.messages.pofile import read_po
from PIL import Image as PILImage
from PIL import ImageDraw

from ..servers import ROOT, flask_cli

pytestmark = pytest.mark.browser

CONFIGS = {
    "phone-ja": {
        "viewport": {"width": 390, "height": 844},
        "locale": "ja-JP",
        "timezone_id": "Asia/Tokyo",
        "is_mobile": True,
        "has_touch": True,
    },
    "desktop-en": {
        "viewport": {"width": 1280, "height": 800},
        "locale": "en-US",
        "timezone_id": "Asia/Tokyo",
    },
}
CATALOG = ROOT / "diary" / "translations" / "ja" / "LC_MESSAGES" / "messages.po"
# Shown as is in every language.
NOT_TRANSLATED = {"Diary"}

# Tags at every position along the lines: one breaking across two lines shows up.
TAGS_PARAGRAPH = "、".join(f"{'あ' * (n % 7)}寺めぐり #京都 と #嵐山" for n in range(12))


def picture(size: tuple[int, int], top: str, bottom: str) -> bytes:
    """A photo with a visible shape: two colours and a circle, to spot cropping and squashing."""
    image = PILImage.new("RGB", size, top)
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle([0, height // 2, width, height], fill=bottom)
    radius = min(size) // 4
    draw.ellipse(
        [width // 2 - radius, height // 2 - radius, width // 2 + radius, height // 2 + radius],
        fill="white",
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def post_entry(site: dict, token: str, text: str, *photos: tuple[str, bytes]) -> int:
    files = [("file", (name, data, "image/jpeg")) for name, data in photos]
    response = requests.post(
        f"{site['url']}/api/v1/entries",
        headers={"Authorization": f"Bearer {token}"},
        # Text alone goes as JSON: without a file, requests would not send multipart.
        **({"data": {"text": text}, "files": files} if files else {"json": {"text": text}}),
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def diary(site: dict, account: dict) -> dict:
    """A diary with something on every page: photos (a portrait one alone), tags, Trash."""
    token = flask_cli(site["env"], "tokens", "create", account["email"], "--name", "setup")
    token = token.strip().splitlines()[-1]
    entries = {
        "trip": post_entry(
            site,
            token,
            "今日は **友だち** と #京都 の嵐山へ。竹林の小径はとても静かで、"
            "渡月橋から見た川がきれいだった。\n\n- 抹茶パフェ\n- 湯豆腐\n\n"
            "詳しくは https://example.com/arashiyama/bamboo-grove-guide を参照。",
            ("bamboo.jpg", picture((1200, 800), "#3d7a3d", "#9bc27a")),
            ("bridge.jpg", picture((800, 1200), "#4a78b5", "#c9b48a")),
            ("river.jpg", picture((1000, 1000), "#2f5f8f", "#88b0d0")),
        ),
        "portrait": post_entry(
            site,
            token,
            "朝ごはんはパンとコーヒー。#朝ごはん",
            ("breakfast.jpg", picture((900, 1200), "#c98d4a", "#f2e2c4")),
        ),
        "tags": post_entry(site, token, TAGS_PARAGRAPH),
        "english": post_entry(
            site,
            token,
            "A long walk along the river, then dinner with *friends*. "
            "A-very-long-unbroken-word-like-a-url-path/without/spaces/anywhere-at-all-really "
            "#travel",
        ),
    }
    trashed = post_entry(site, token, "ゴミ箱に入れた日記 #下書き")
    response = requests.delete(
        f"{site['url']}/api/v1/entries/{trashed}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 204
    return entries


def translated_messages() -> list[str]:
    """English messages that read differently in Japanese (the ones that must not show)."""
    with CATALOG.open("rb") as source:
        catalog = read_po(source, locale="ja")
    return [
        message.id
        for message in catalog
        if isinstance(message.id, str)
        and message.string
        and message.string != message.id
        and message.id not in NOT_TRANSLATED
    ]


def english_patterns(messages: list[str]) -> list[re.Pattern[str]]:
    patterns = []
    for message in messages:
        parts = re.split(r"%\(\w+\)[sd]", message)
        # A message that is all placeholder says nothing English.
        if not "".join(parts).strip():
            continue
        patterns.append(re.compile(".+".join(re.escape(part) for part in parts)))
    return patterns


# Runs in the page: visible texts and accessible names, outside what the user wrote.
VISIBLE_TEXTS = """
() => {
  const userContent = ".text, .excerpt, .token-name, a.tag, .tag-heading, mark, option, .brand, "
    + "input, textarea, .previews";
  const seen = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const text = node.textContent.replace(/\\s+/g, " ").trim();
    const parent = node.parentElement;
    if (!text || !parent || parent.closest(userContent)) continue;
    if (!parent.checkVisibility() && !parent.closest(".visually-hidden")) continue;
    seen.push(text);
  }
  for (const element of document.querySelectorAll("[aria-label], [alt], [title], [placeholder]")) {
    if (element.closest(userContent)) continue;
    for (const name of ["aria-label", "alt", "title", "placeholder"]) {
      const value = element.getAttribute(name);
      if (value) seen.push(value.trim());
    }
  }
  for (const part of document.title.split(" · ")) seen.push(part.trim());
  return seen;
}
"""

# Runs in the page: what reaches past the right edge, photos not at their shape, split tags.
LAYOUT_PROBLEMS = """
() => {
  const problems = [];
  const root = document.documentElement;
  const width = Math.min(root.clientWidth, window.innerWidth);
  if (root.scrollWidth > width) {
    problems.push(`the page is ${root.scrollWidth}px wide in ${width}px`);
  }
  const describe = (element) => {
    const classes = element.classList.length ? "." + [...element.classList].join(".") : "";
    const text = (element.textContent || element.getAttribute("alt") || "").trim().slice(0, 40);
    return `<${element.tagName.toLowerCase()}${classes}> "${text}"`;
  };
  const heldByScroller = (element) => {
    for (let box = element.parentElement; box && box !== document.body; box = box.parentElement) {
      if (getComputedStyle(box).overflowX !== "visible") return true;
    }
    return false;
  };
  for (const element of document.body.querySelectorAll("*")) {
    if (!element.checkVisibility()) continue;
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.right <= 0) continue;  // nothing there, or parked off-screen
    if (box.right > width + 0.5 && !heldByScroller(element)) {
      problems.push(`${describe(element)} reaches ${Math.round(box.right)}px of ${width}px`);
    }
  }
  for (const img of document.querySelectorAll("main img")) {
    if (!img.naturalWidth || !img.clientWidth) continue;
    const fit = getComputedStyle(img).objectFit;
    const shown = img.clientWidth / img.clientHeight;
    const own = img.naturalWidth / img.naturalHeight;
    if (fit !== "cover" && Math.abs(shown / own - 1) > 0.03) {
      problems.push(`${describe(img)} is shown ${img.clientWidth}x${img.clientHeight}, `
        + `its shape is ${img.naturalWidth}x${img.naturalHeight} (object-fit: ${fit})`);
    }
  }
  for (const tag of document.querySelectorAll("a.tag, .tag-text")) {
    // One rect per line it is on (a <mark> inside may add rects on the same line).
    const lines = new Set([...tag.getClientRects()].map((rect) => Math.round(rect.bottom)));
    if (lines.size > 1) problems.push(`${describe(tag)} breaks across lines`);
  }
  return problems;
}
"""

# Runs in the page: load every photo now (lazy ones too), so the screenshot shows them.
LOAD_PHOTOS = """
async () => {
  const images = [...document.images];
  for (const img of images) img.loading = "eager";
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done);
    img.addEventListener("error", done);
  })));
}
"""


class Screens:
    """Visits pages, saving a screenshot of each and collecting what is wrong with it."""

    def __init__(self, page, name: str, folder: Path, japanese: bool) -> None:
        self.page = page
        self.name = name
        self.folder = folder
        self.number = 0
        self.problems: list[str] = []
        self.english = english_patterns(translated_messages()) if japanese else []

    def check(self, label: str) -> None:
        page = self.page
        page.wait_for_load_state("load")
        page.evaluate(LOAD_PHOTOS)
        self.number += 1
        path = self.folder / f"{self.name}-{self.number:02d}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        for problem in page.evaluate(LAYOUT_PROBLEMS):
            self.problems.append(f"{label}: {problem}")
        for text in page.evaluate(VISIBLE_TEXTS) if self.english else ():
            for pattern in self.english:
                if pattern.fullmatch(text):
                    self.problems.append(f"{label}: English on a Japanese page: {text!r}")

    def visit(self, path: str, label: str, status: int = 200) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status == status, (path, response.status)
        self.check(label)


def sign_in(page, site: dict, account: dict) -> None:
    page.locator("#email").fill(account["email"])
    page.locator("#password").fill(account["password"])
    page.locator("form.card button[type=submit]").click()
    page.wait_for_url(site["url"] + "/")


@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_page_fits_and_speaks_the_readers_language(
    chromium, site, account, diary, artifacts, capsys, config
):
    context = chromium.new_context(base_url=site["url"], **CONFIGS[config])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    screens = Screens(page, config, artifacts, japanese=config.endswith("-ja"))
    with capsys.disabled():
        print(f"\nscreenshots of {config}: {artifacts}/{config}-*.png")
    try:
        screens.visit("/signup", "sign-up")
        screens.visit("/login", "sign-in")
        sign_in(page, site, account)
        screens.check("timeline")
        if config.startswith("phone"):
            page.locator("details.menu > summary").click()
            screens.check("menu-open")
            page.keyboard.press("Escape")
        screens.visit("/write", "write")
        trip = diary["trip"]
        screens.visit(f"/entries/{trip}", "entry")
        screens.visit(f"/entries/{diary['portrait']}", "entry-portrait")
        screens.visit(f"/entries/{trip}/edit", "edit")
        screens.visit(f"/entries/{trip}/photos/2", "photo-viewer")
        screens.visit(f"/entries/{diary['portrait']}/photos/1", "photo-viewer-portrait")
        screens.visit("/trash", "trash")
        screens.visit("/search?q=京都", "search")
        screens.visit("/tags", "tags")
        screens.visit("/tags/京都", "tag")
        screens.visit("/calendar", "calendar")
        screens.visit("/settings", "settings")
        screens.visit("/settings/password", "password")
        screens.visit("/settings/tokens", "tokens")
        page.locator("#name").fill("phone app")
        page.locator("form.card button[type=submit]").click()
        page.locator("#new-token").wait_for()
        screens.check("tokens-new")
        screens.visit("/no/such/page", "not-found", status=404)
        # The 404 is a failed resource in the console; it is expected.
        errors[:] = [error for error in errors if "404" not in error]
    finally:
        context.close()

    assert errors == [], errors
    assert screens.problems == [], f"see the screenshots in {artifacts}"


def test_the_checks_see_overflow_english_squashed_photos_and_split_tags(
    chromium, site, account, diary, artifacts
):
    """The checks above can fail: each fault, put into a good page, is reported."""
    context = chromium.new_context(base_url=site["url"], **CONFIGS["phone-ja"])
    try:
        page = context.new_page()
        page.goto("/login")
        sign_in(page, site, account)
        screens = Screens(page, "self-test", artifacts, japanese=True)
        screens.check("before")
        assert screens.problems == []

        page.evaluate(
            """() => {
              const main = document.querySelector("main");
              const wide = document.createElement("div");
              wide.className = "too-wide";
              wide.style.width = "600px";
              wide.textContent = "ワイド";
              const english = document.createElement("p");
              english.textContent = "Older entries";
              main.append(wide, english);
              const photo = document.querySelector(".photos.single img");
              photo.style.height = `${photo.clientHeight / 2}px`;
              const tag = [...document.querySelectorAll(".text a.tag")]
                .find((link) => link.textContent === "#京都");
              tag.style.whiteSpace = "normal";
              tag.style.display = "inline";
              tag.parentElement.style.width = "1.5em";
            }"""
        )
        screens.check("faults")
    finally:
        context.close()

    found = "\n".join(screens.problems)
    assert "the page is" in found and '<div.too-wide> "ワイド"' in found
    assert "English on a Japanese page: 'Older entries'" in found
    assert "is shown" in found and "breaks across lines" in found
