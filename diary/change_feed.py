"""Notices from PostgreSQL of committed changes, so a worker may trust what it read a moment ago.

Every API request used to read its token, and the owner's timeline_version,
from the database: one round trip, which cost a worker more CPU than a whole
request to /healthz (docs/performance.md). Now each gunicorn worker keeps a
connection listening on the `diary_changes` channel, where triggers (migration
0006) name the user whenever their entries, photos or tokens change, from any
worker, instance or command. What a worker read about a user stays good until
a notice for that user arrives (diary/token_cache.py).

What that promises:
- The worker that made a change sees it on its very next request: a request
  that may write marks its user changed here before its response goes out.
- Other workers and instances see it once the notice arrives, which PostgreSQL
  sends at commit; milliseconds, well inside any client's next round trip.
- Nothing is trusted while the feed is not listening: not before the listener
  has connected, not after its connection failed (notices may have been lost,
  so everything read before is dropped), and not when it has not answered its
  once-a-second ping for STALE_AFTER seconds (a silently dead network).
  Requests then read the database as before, and fail fast when it is down.

SQLite has no LISTEN/NOTIFY, and the listener is only started in gunicorn's
workers (gunicorn.conf.py); elsewhere the feed never listens and changes
nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

CHANNEL = "diary_changes"
APPLICATION_NAME = "diary change feed"
# The listener pings its connection after each quiet second; with no answer
# for this long the feed stops being trusted.
BEAT_SECONDS = 1.0
STALE_AFTER = 3.0
RETRY_FIRST, RETRY_MAX = 0.5, 10.0
# Requests that may write: their user is marked changed before the response.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Mark:
    """Where the feed stood when something was read from the database."""

    epoch: int
    sequence: int


class ChangeFeed:
    """Which users changed, as this process learnt it, and whether it can know."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # Raised whenever notices may have been missed: every Mark before is void.
        self._epoch = 0
        self._sequence = 0
        self._last_change: dict[int, int] = {}
        self._listening = False
        self._heartbeat = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what readers ask --------------------------------------------------

    @property
    def live(self) -> bool:
        return self._listening and self._clock() - self._heartbeat < STALE_AFTER

    def mark(self) -> Mark | None:
        """Take before reading from the database; None when nothing may be trusted."""
        if not self.live:
            return None
        return Mark(self._epoch, self._sequence)

    def unchanged_since(self, mark: Mark, user_id: int) -> bool:
        """True while no notice for the user arrived after `mark`, and none can have been lost."""
        return (
            self.live
            and mark.epoch == self._epoch
            and self._last_change.get(user_id, -1) <= mark.sequence
        )

    # --- what writers and the listener tell it ------------------------------

    def changed(self, user_id: int) -> None:
        with self._lock:
            self._sequence += 1
            self._last_change[user_id] = self._sequence

    def everything_changed(self) -> None:
        with self._lock:
            self._epoch += 1
            self._last_change.clear()

    def listening(self) -> None:
        """The listener is connected and LISTENing: notices arrive from now on."""
        with self._lock:
            self._epoch += 1
            self._last_change.clear()
            self._heartbeat = self._clock()
            self._listening = True

    def beat(self) -> None:
        self._heartbeat = self._clock()

    def lost(self) -> None:
        """The listener's connection failed: notices may have been missed."""
        with self._lock:
            self._listening = False
            self._epoch += 1
            self._last_change.clear()

    # --- the listener ------------------------------------------------------

    def start(self, engine: Engine) -> None:
        """Listen in a daemon thread of this process (a gunicorn worker)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._listen, args=(engine,), name="diary-change-feed", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=BEAT_SECONDS * 3)
        self.lost()

    def _listen(self, engine: Engine) -> None:
        delay = RETRY_FIRST
        while not self._stop.is_set():
            connection: Any = None
            try:
                # Through the engine, so a rotated password and the connect
                # timeout apply; detached, so it does not hold a pool slot.
                connection = engine.raw_connection()
                driver = connection.driver_connection  # gone from `connection` once detached
                connection.detach()
                driver.autocommit = True
                # So operators can tell the listeners apart in pg_stat_activity.
                driver.execute(f"SET application_name = '{APPLICATION_NAME}'")
                driver.execute(f"LISTEN {CHANNEL}")
                self.listening()
                log.info("change feed listening on %s", CHANNEL)
                delay = RETRY_FIRST
                while not self._stop.is_set():
                    for notice in driver.notifies(timeout=BEAT_SECONDS):
                        self._take(notice.payload)
                    driver.execute("SELECT 1")
                    self.beat()
            except Exception as error:  # any failure: stop trusting, retry
                self.lost()
                if not self._stop.is_set():
                    log.warning(
                        "change feed lost (%s: %s); API requests read the database"
                        " until it listens again",
                        type(error).__name__,
                        error,
                    )
            finally:
                if connection is not None:
                    with suppress(Exception):  # it is broken already
                        connection.close()
            self._stop.wait(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _take(self, payload: str) -> None:
        if payload.isdigit():
            self.changed(int(payload))
        else:  # not ours to understand: assume the worst
            self.everything_changed()


def start_listening(app: Flask) -> None:
    """Start this process's listener (gunicorn's post_worker_init); PostgreSQL only."""
    from .extensions import db

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            app.extensions["diary.change_feed"].start(db.engine)


def init_app(app: Flask) -> None:
    # Made before gunicorn forks (preload); each worker starts its own listener.
    feed = ChangeFeed()
    app.extensions["diary.change_feed"] = feed

    from .auth import known_user_id

    @app.after_request
    def note_own_change(response: Response) -> Response:
        # Before the response goes out, so this worker's next request cannot
        # trust what it read before the change; other workers learn of it
        # from the notice. Over-marking (a write that changed nothing) only
        # costs the next request a read.
        if request.method not in SAFE_METHODS and (user_id := known_user_id()) is not None:
            feed.changed(user_id)
        return response
