"""The diary pages: timeline, writing, reading, editing, Trash, and whose entry is whose."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from diary.extensions import db
from diary.models import Entry, Image

from .conftest import row_counts, stored_keys
from .pages_support import (
    BROWSER,
    ENGLISH,
    JAPANESE,
    entry_row,
    main_text,
    page,
    photo,
    set_created_at,
    set_user,
    sign_in,
    write,
)


@pytest.fixture
def browser(client, user):
    """A browser signed in as `user`."""
    sign_in(client, user.email)
    return client


def object_keys_of(app, *entry_ids):
    """Every stored object of the entries' photos (the original and any resized copies)."""
    from diary.images import object_keys

    with app.app_context():
        images = db.session.scalars(sa.select(Image).where(Image.entry_id.in_(entry_ids)))
        return {key for image in images for key in object_keys(image)}


def image_rows(app, entry_id):
    with app.app_context():
        return list(
            db.session.execute(
                sa.select(Image.id, Image.storage_key, Image.original_filename)
                .where(Image.entry_id == entry_id)
                .order_by(Image.position)
            )
        )


@pytest.mark.parametrize(
    "path", ["/", "/write", "/entries/1", "/entries/1/edit", "/trash", "/settings"]
)
def test_pages_send_a_browser_without_a_session_to_sign_in(client, path):
    response = client.get(path, headers=BROWSER)

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(
    ("headers", "invitation"),
    [
        (ENGLISH, "Your diary is empty. How was your day?"),
        (JAPANESE, "日記はまだありません。"),
    ],
)
def test_an_empty_timeline_invites_the_first_entry(browser, headers, invitation):
    html = page(browser, "/", headers)

    assert invitation in main_text(html)
    assert 'action="/write"' in html


def test_writing_text_and_several_photos_shows_the_entry_and_its_thumbnails(app, browser):
    entry_id = write(browser, "A walk by the river", photo("one.jpg"), photo("two.jpg", "red"))

    html = page(browser, f"/entries/{entry_id}")
    assert "Saved." in main_text(html)
    assert "A walk by the river" in html
    images = image_rows(app, entry_id)
    assert [name for _, _, name in images] == ["one.jpg", "two.jpg"]
    assert stored_keys(app) == object_keys_of(app, entry_id)

    timeline = page(browser, "/")
    assert "A walk by the river" in timeline
    assert timeline.count("<img ") == 2
    # A thumbnail opens the photo viewer, not the raw original.
    assert f'href="/entries/{entry_id}/photos/1"' in timeline
    assert f'href="/entries/{entry_id}/photos/2"' in timeline
    assert 'target="_blank"' not in timeline


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (ENGLISH, "Write something or add a photo."),
        (JAPANESE, "何か書くか、写真を追加してください。"),
    ],
)
def test_an_empty_entry_is_refused_next_to_the_text_field(app, browser, headers, expected):
    response = browser.post("/write", data={"text": "   "}, headers=headers)

    assert response.status_code == 400
    assert 'id="text-error"' in response.text
    assert expected in response.text
    assert row_counts(app)["entries"] == 0


def test_a_bad_photo_is_refused_next_to_the_photo_field_and_the_text_is_kept(app, browser):
    response = browser.post(
        "/write",
        data={"text": "Keep me, please", "file": [photo(), (photo()[0].__class__(b"no"), "x.jpg")]},
        content_type="multipart/form-data",
        headers=BROWSER,
    )

    assert response.status_code == 415
    assert 'id="file-error"' in response.text
    assert "Keep me, please" in response.text
    assert row_counts(app)["entries"] == 0
    assert stored_keys(app) == set()


@pytest.mark.parametrize(
    ("typed", "forbidden"),
    [
        ("<script>alert(1)</script>", "<script"),
        ('<img src="x" onerror="alert(1)">', "<img"),
        ("[click](javascript:alert(1))", '<a href="javascript'),
        ('<a href="javascript:alert(1)">click</a>', '<a href="javascript'),
        ("[click](JAVASCRIPT:alert(1))", '<a href="javascript'),
        ("[click](java\tscript:alert(1))", 'script:alert(1)">'),
        ("<svg onload=alert(1)>", "<svg"),
        ('<iframe src="https://example.com"></iframe>', "<iframe"),
        ("![x](https://example.com/track.png)", "<img"),
    ],
)
def test_script_typed_into_an_entry_never_reaches_the_page(app, browser, typed, forbidden):
    entry_id = write(browser, f"before {typed} after")

    for path in ("/", f"/entries/{entry_id}"):
        html = page(browser, path)
        main = html[html.index("<main") :].lower()
        assert forbidden not in main
        assert "before" in main and "after" in main


def test_markdown_gives_emphasis_lists_and_safe_links(browser):
    entry_id = write(browser, "**bold** and *soft*\n\n- tea\n- rice\n\n[shop](https://example.com)")

    html = page(browser, f"/entries/{entry_id}")

    assert "<strong>bold</strong>" in html and "<em>soft</em>" in html
    assert "<li>tea</li>" in html
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


@pytest.mark.parametrize(
    ("time_zone", "headers", "heading"),
    [
        ("Asia/Tokyo", ENGLISH, "Friday, January 2, 2026"),
        ("America/New_York", ENGLISH, "Thursday, January 1, 2026"),
        ("Asia/Tokyo", JAPANESE, "2026年1月2日金曜日"),
    ],
)
def test_the_timeline_groups_entries_by_day_in_the_users_time_zone(
    app, browser, user, time_zone, headers, heading
):
    entry_id = write(browser, "late evening in UTC")
    set_created_at(app, entry_id, datetime(2026, 1, 1, 20, 30, tzinfo=UTC))
    set_user(app, user.id, time_zone=time_zone)

    text = main_text(page(browser, "/", headers))

    assert heading in text


def test_without_a_setting_the_site_default_time_zone_applies(app_with, user):
    app = app_with(DEFAULT_TIMEZONE="Pacific/Honolulu")
    client = app.test_client()
    from diary.accounts import create_user

    with app.app_context():
        create_user("islander@example.com", "correct horse battery")
    sign_in(client, "islander@example.com")
    entry_id = write(client, "aloha")
    set_created_at(app, entry_id, datetime(2026, 1, 2, 5, 0, tzinfo=UTC))

    assert "Thursday, January 1, 2026" in main_text(page(client, "/", ENGLISH))


def test_older_entries_are_reached_by_cursor(app, browser):
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for number in range(23):
        entry_id = write(browser, f"entry number {number:02d}")
        set_created_at(app, entry_id, start + timedelta(hours=number))

    first = page(browser, "/")
    assert "entry number 22" in first and "entry number 03" in first
    assert "entry number 02" not in first
    older = first.split('class="more"><a class="button" href="')[1].split('"')[0]
    assert "before=" in older

    second = page(browser, older.replace("&amp;", "&"))
    assert "entry number 02" in second and "entry number 00" in second
    assert "entry number 03" not in second
    assert 'class="more"' not in second


def test_editing_changes_text_adds_removes_and_reorders_photos(app, browser):
    entry_id = write(browser, "first draft", photo("a.jpg"), photo("b.jpg"), photo("c.jpg"))
    (a_id, a_key, _), (b_id, _, _), (c_id, _, _) = image_rows(app, entry_id)
    assert "first draft" in page(browser, f"/entries/{entry_id}/edit")

    # The order is the order of the photos on the form (as the arrows or dragging left it).
    response = browser.post(
        f"/entries/{entry_id}/edit",
        data={
            "text": "second draft",
            "image": [str(c_id), str(b_id), str(a_id)],
            "remove": [str(b_id)],
            "file": [photo("d.jpg")],
        },
        content_type="multipart/form-data",
        headers=BROWSER,
    )

    assert response.status_code == 302
    assert response.headers["Location"] == f"/entries/{entry_id}"
    assert entry_row(app, entry_id).text == "second draft"
    images = image_rows(app, entry_id)
    assert [name for _, _, name in images] == ["c.jpg", "a.jpg", "d.jpg"]
    # The removed photo left storage; the others are still there.
    assert stored_keys(app) == object_keys_of(app, entry_id)
    assert a_key in stored_keys(app)


def test_a_failed_edit_keeps_what_was_typed_and_changes_nothing(app, browser):
    entry_id = write(browser, "original words")

    response = browser.post(
        f"/entries/{entry_id}/edit",
        data={"text": "new words", "file": [(photo()[0].__class__(b"not an image"), "x.png")]},
        content_type="multipart/form-data",
        headers=JAPANESE,
    )

    assert response.status_code == 415
    assert "new words" in response.text
    assert "読み込める画像" in response.text
    assert entry_row(app, entry_id).text == "original words"
    assert stored_keys(app) == set()


def test_removing_every_photo_of_an_entry_without_text_is_refused(app, browser):
    entry_id = write(browser, "", photo())
    ((image_id, key, _),) = image_rows(app, entry_id)

    response = browser.post(
        f"/entries/{entry_id}/edit",
        data={"text": "", "image": [str(image_id)], "remove": [str(image_id)]},
        headers=BROWSER,
    )

    assert response.status_code == 400
    assert "Write something or add a photo." in response.text
    assert key in stored_keys(app)
    assert stored_keys(app) == object_keys_of(app, entry_id)


def test_delete_moves_to_trash_and_restore_brings_it_back(app, browser):
    entry_id = write(browser, "a day to forget?", photo())

    response = browser.post(f"/entries/{entry_id}/delete", headers=BROWSER)
    assert response.status_code == 302
    timeline = page(browser, "/")
    assert "Moved to Trash" in timeline
    assert "a day to forget?" not in timeline
    assert "a day to forget?" in page(browser, "/trash")
    assert browser.get(f"/entries/{entry_id}", headers=BROWSER).status_code == 404

    response = browser.post(f"/trash/{entry_id}/restore", headers=BROWSER)
    assert response.headers["Location"] == f"/entries/{entry_id}"
    assert "a day to forget?" in page(browser, "/")
    assert "Trash is empty." in main_text(page(browser, "/trash"))


def test_delete_forever_removes_the_entry_and_its_photos_from_storage(app, browser):
    keep = write(browser, "keep this", photo())
    entry_id = write(browser, "gone for good", photo(), photo())
    browser.post(f"/entries/{entry_id}/delete", headers=BROWSER)
    kept_keys = object_keys_of(app, keep)

    response = browser.post(f"/trash/{entry_id}/delete", headers=BROWSER)

    assert response.status_code == 302
    assert entry_row(app, entry_id) is None
    assert row_counts(app)["images"] == 1
    assert stored_keys(app) == kept_keys
    assert "Deleted for good" in page(browser, "/trash")


def test_delete_forever_only_takes_entries_in_trash(app, browser):
    entry_id = write(browser, "still on the timeline")

    assert browser.post(f"/trash/{entry_id}/delete", headers=BROWSER).status_code == 404
    assert entry_row(app, entry_id) is not None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/entries/{id}"),
        ("get", "/entries/{id}/edit"),
        ("post", "/entries/{id}/edit"),
        ("post", "/entries/{id}/delete"),
        ("post", "/trash/{id}/restore"),
        ("post", "/trash/{id}/delete"),
    ],
)
def test_another_users_entry_is_404_on_every_page(app, client, make_user, method, path):
    owner = make_user()
    sign_in(client, owner.email)
    entry_id = write(client, "private thoughts", photo())
    if "trash" in path:
        client.post(f"/entries/{entry_id}/delete", headers=BROWSER)
    client.post("/logout", headers=BROWSER)
    intruder = make_user()
    sign_in(client, intruder.email)

    response = getattr(client, method)(
        path.format(id=entry_id), data={"text": "mine now"}, headers=BROWSER
    )

    assert response.status_code == 404
    assert "private thoughts" not in response.text
    row = entry_row(app, entry_id)
    assert row is not None and row.text == "private thoughts"


def test_another_users_photo_is_404_and_not_in_their_timeline(app, client, make_user):
    owner = make_user()
    sign_in(client, owner.email)
    entry_id = write(client, "", photo())
    ((_, key, _),) = image_rows(app, entry_id)
    client.post("/logout", headers=BROWSER)
    sign_in(client, make_user().email)

    assert key not in page(client, "/")
    # Locally stored photos are served by the app only to their owner.
    with client.get(f"/media/{key}", headers=BROWSER) as response:
        assert response.status_code == 404


def test_a_bad_cursor_is_an_error_page_not_a_crash(browser):
    response = browser.get("/?before=not-a-cursor", headers=BROWSER)

    assert response.status_code == 400
    assert response.mimetype == "text/html"


def test_entry_rows_untouched_by_reading(app, browser):
    entry_id = write(browser, "read me")
    before = entry_row(app, entry_id)

    page(browser, f"/entries/{entry_id}")

    after = entry_row(app, entry_id)
    assert isinstance(after, Entry) and after.updated_at == before.updated_at


def test_an_edit_cannot_remove_or_reorder_another_entrys_photo(app, browser):
    mine = write(browser, "mine", photo())
    other = write(browser, "other", photo())
    ((other_image, other_key, _),) = image_rows(app, other)

    response = browser.post(
        f"/entries/{mine}/edit",
        data={"text": "mine", "remove": [str(other_image)], "image": [str(other_image)]},
        headers=BROWSER,
    )

    assert response.status_code == 400
    assert image_rows(app, other) == [(other_image, other_key, "photo.jpg")]
    assert other_key in stored_keys(app)


def test_trash_pages_older_entries_by_cursor(app, browser):
    start = datetime(2026, 5, 1, tzinfo=UTC)
    for number in range(22):
        entry_id = write(browser, f"trashed {number:02d}")
        set_created_at(app, entry_id, start + timedelta(hours=number))
        browser.post(f"/entries/{entry_id}/delete", headers=BROWSER)

    first = page(browser, "/trash")
    older = first.split('class="more"><a class="button" href="')[1].split('"')[0]
    second = page(browser, older.replace("&amp;", "&"))

    assert "trashed 21" in first and "trashed 02" in first and "trashed 01" not in first
    assert "trashed 01" in second and "trashed 00" in second and "trashed 02" not in second
