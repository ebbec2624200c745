"""Trash retention: `flask --app diary purge` removes entries trashed over TRASH_DAYS ago."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from diary.config import ConfigError, from_env
from diary.extensions import db
from diary.models import Entry, EntryTag, EntryTerm, User

from .conftest import image_bytes, stored_keys
from .entries_support import add_entry


def surviving(app: Flask) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(db.select(Entry.text)))


def test_purge_removes_entries_trashed_longer_ago_than_trash_days_with_their_photos(
    app: Flask, make_user: Callable[..., User]
) -> None:
    now = datetime.now(UTC)
    alice, bob = make_user(), make_user()
    add_entry(
        app,
        alice,
        "old #tag",
        trashed_at=now - timedelta(days=31),
        photos=(image_bytes(), image_bytes("PNG")),
    )
    add_entry(app, bob, "old too", trashed_at=now - timedelta(days=45), photos=(image_bytes(),))
    add_entry(app, alice, "recent", trashed_at=now - timedelta(days=29), photos=(image_bytes(),))
    add_entry(app, alice, "live", photos=(image_bytes(),))
    objects_per_photo = 3  # the cleaned original, a display size and a thumbnail
    assert len(stored_keys(app)) == 5 * objects_per_photo

    result = app.test_cli_runner().invoke(args=["purge"])

    assert result.exit_code == 0, result.output
    assert "purged 2 entries and 3 photos" in result.output
    assert surviving(app) == {"recent", "live"}
    assert len(stored_keys(app)) == 2 * objects_per_photo
    with app.app_context():
        # The search terms and tags of purged entries go with them.
        assert db.session.scalar(db.select(db.func.count()).select_from(EntryTag)) == 0
        remaining = set(db.session.scalars(db.select(EntryTerm.entry_id)))
        live_ids = set(db.session.scalars(db.select(Entry.id)))
        assert remaining <= live_ids


def test_trash_days_is_configurable(app_with: Callable[..., Flask]) -> None:
    app = app_with(TRASH_DAYS=7)
    with app.app_context():
        from diary.accounts import create_user

        owner = create_user("short@example.com", "correct horse battery")
        db.session.refresh(owner)
        db.session.expunge(owner)
    now = datetime.now(UTC)
    add_entry(app, owner, "eight days", trashed_at=now - timedelta(days=8))
    add_entry(app, owner, "six days", trashed_at=now - timedelta(days=6))
    result = app.test_cli_runner().invoke(args=["purge"])
    assert "purged 1 entries" in result.output
    assert surviving(app) == {"six days"}


def test_purging_twice_is_harmless(app: Flask, user: User) -> None:
    add_entry(app, user, "gone", trashed_at=datetime.now(UTC) - timedelta(days=60))
    assert "purged 1 entries" in app.test_cli_runner().invoke(args=["purge"]).output
    assert "purged 0 entries" in app.test_cli_runner().invoke(args=["purge"]).output


@pytest.mark.parametrize(("raw", "message"), [("0", "at least 1"), ("month", "whole number")])
def test_a_bad_trash_days_stops_the_app_naming_the_variable(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"TRASH_DAYS.*{message}"):
        from_env({"TRASH_DAYS": raw})


def test_trash_days_defaults_to_thirty(app: Flask) -> None:
    assert app.config["TRASH_DAYS"] == 30
    assert from_env({"TRASH_DAYS": "90"})["TRASH_DAYS"] == 90
