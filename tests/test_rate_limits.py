"""RATELIMIT_STORAGE_URI=database://: the throttles' counts in the app's own database."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from diary import ConfigError, create_app
from diary.accounts import create_user
from diary.config import from_env
from diary.extensions import db, limiter
from diary.infra import rate_limits
from diary.infra.rate_limits import DatabaseStorage
from diary.models import RateLimitCounter
from diary.timestamps import utcnow

from .pages_support import BROWSER, PASSWORD


def fresh_address() -> str:
    a, b, c = os.urandom(3)
    return f"10.{a}.{b}.{c}"


def failed_sign_in(app, email):
    return (
        app.test_client()
        .post(
            "/login",
            data={"email": email, "password": "guess"},
            headers=BROWSER,
            environ_base={"REMOTE_ADDR": fresh_address()},
        )
        .status_code
    )


@pytest.fixture
def storage_app(app_with):
    """The database storage on this test's backend (PostgreSQL's default; chosen on SQLite)."""
    return app_with(RATELIMIT_STORAGE_URI="database://", DB_POOL_SIZE=8)


@pytest.fixture
def clock(monkeypatch):
    """The storage's clock, to be moved forward."""
    offset = [timedelta(0)]
    monkeypatch.setattr(rate_limits, "utcnow", lambda: utcnow() + offset[0])

    def advance(**delta: float) -> None:
        offset[0] += timedelta(**delta)

    return advance


def stored_rows(app):
    with app.app_context():
        return {row.key: row.hits for row in db.session.scalars(sa.select(RateLimitCounter))}


# --- configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    ("database", "storage_class"),
    [("postgresql://diary@127.0.0.1/diary", "DatabaseStorage"), ("sqlite://", "MemoryStorage")],
)
def test_the_default_is_the_database_on_postgresql_and_memory_on_sqlite(
    tmp_path, database, storage_class
):
    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database, "LOCAL_STORAGE_DIR": str(tmp_path)}
    )

    with app.app_context():
        assert type(limiter.storage).__name__ == storage_class
    assert app.config["RATELIMIT_STORAGE_URI"] == (
        "database://" if storage_class == "DatabaseStorage" else "memory://"
    )


def test_a_chosen_storage_wins_over_the_default(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": "postgresql://diary@127.0.0.1/diary",
            "RATELIMIT_STORAGE_URI": "memory://",
            "LOCAL_STORAGE_DIR": str(tmp_path),
        }
    )

    with app.app_context():
        assert type(limiter.storage).__name__ == "MemoryStorage"


@pytest.mark.parametrize(
    "value", ["database://other-host/db", "database:", "database", "postgresql://x/y", "ftp://x"]
)
def test_a_storage_uri_other_than_the_known_ones_stops_the_app(tmp_path, value):
    with pytest.raises(ConfigError, match="RATELIMIT_STORAGE_URI must be database://"):
        from_env({"RATELIMIT_STORAGE_URI": value})
    with pytest.raises(ConfigError, match="RATELIMIT_STORAGE_URI"):
        create_app(
            {
                "TESTING": True,
                "RATELIMIT_STORAGE_URI": value,
                "LOCAL_STORAGE_DIR": str(tmp_path),
            }
        )


def test_database_from_the_environment():
    assert from_env({"RATELIMIT_STORAGE_URI": "database://"})["RATELIMIT_STORAGE_URI"] == (
        "database://"
    )


# --- two instances ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("storage", "shared"), [("database://", True), ("memory://", False)], ids=["database", "memory"]
)
def test_two_instances_on_one_database_share_the_count(postgres_app, storage, shared):
    """Failures on one instance count on the other; memory:// shows the test can tell."""
    first, second = (
        postgres_app(RATELIMIT_STORAGE_URI=storage, SIGNIN_LIMIT_PER_ACCOUNT="3 per 15 minutes")
        for _ in range(2)
    )
    with first.app_context():
        create_user("shared@example.com", PASSWORD)

    statuses = [failed_sign_in(app, "shared@example.com") for app in (first, second, first)]
    last = failed_sign_in(second, "shared@example.com")

    assert statuses == [401, 401, 401]
    assert last == (429 if shared else 401)
    if shared:
        rows = stored_rows(second)
        [hits] = [hits for key, hits in rows.items() if "account:shared@example.com" in key]
        assert hits >= 3


# --- the storage itself -----------------------------------------------------------


def test_increments_are_atomic_across_threads(storage_app):
    storage = DatabaseStorage("database://")
    results: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def hammer() -> None:
        try:
            with storage_app.app_context():
                start.wait()
                for _ in range(20):
                    results.append(storage.incr("race", 60))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    # Every increment saw a count no other one saw: none was lost or read twice.
    assert sorted(results) == list(range(1, 161))
    with storage_app.app_context():
        assert storage.get("race") == 160


def test_a_window_ends_and_the_next_hit_starts_a_new_one(storage_app, clock):
    storage = DatabaseStorage()
    with storage_app.app_context():
        assert [storage.incr("window", 60), storage.incr("window", 60, amount=2)] == [1, 3]
        expiry = storage.get_expiry("window")
        assert expiry == pytest.approx((utcnow() + timedelta(seconds=60)).timestamp(), abs=5)

        clock(seconds=61)

        assert storage.get("window") == 0
        assert storage.incr("window", 60) == 1
        # The new window runs from now, not from the old one's end.
        assert storage.get_expiry("window") > expiry + 55


def test_ended_windows_are_deleted_at_most_once_a_minute(storage_app, clock):
    storage = DatabaseStorage()
    with storage_app.app_context():
        storage.incr("old-1", 5)
        storage.incr("old-2", 5)
        clock(seconds=10)
        storage.incr("recent", 5)
        # The first increment of this storage already swept (there was nothing to delete);
        # the next sweep waits for CLEANUP_INTERVAL.
        assert set(stored_rows(storage_app)) == {"old-1", "old-2", "recent"}

        clock(minutes=2)
        storage.incr("new", 600)

    assert set(stored_rows(storage_app)) == {"new"}


def test_a_key_too_long_for_the_column_is_hashed(storage_app):
    storage = DatabaseStorage()
    long_key = "account:" + "x" * 5000
    with storage_app.app_context():
        assert storage.incr(long_key, 60) == 1
        assert storage.incr(long_key, 60) == 2
        assert storage.get(long_key) == 2

    [key] = stored_rows(storage_app)
    assert key.startswith("sha256:") and len(key) == 71


def test_clear_reset_and_check(storage_app):
    storage = DatabaseStorage()
    with storage_app.app_context():
        storage.incr("one", 60)
        storage.incr("two", 60)
        storage.clear("one")
        assert storage.get("one") == 0 and storage.get("two") == 1
        assert storage.reset() == 1
        assert storage.check() is True
    assert stored_rows(storage_app) == {}
