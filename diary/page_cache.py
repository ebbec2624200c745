"""Rendered API pages of entries, kept per worker while their owner's timeline is unchanged.

Clients ask for the first page of /api/v1/entries each time they open or
refresh, many times between the few moments their owner writes. A rendered
page is kept under (user, timeline_version, the page's parameters).
Database triggers raise users.timeline_version with every change to the
user's entries or photos (migration 0005), and the token check reads it with
the token (accounts.owner_of_token): from the database, or from the token
cache while the change feed has heard of no change for the user since that
read (diary/change_feed.py, diary/token_cache.py). So:

- a page is not served once a change to it is committed: by the worker that
  made the change, never again; by other workers and instances, not after the
  change's notice reached them (milliseconds), whether or not the change went
  through this code;
- a revoked token is refused on the same terms, cached page or not;
- a page kept under an old version is simply never asked for again, and
  makes way for newer ones as the least recently used.

Its content is read after the version, so it is never older than the
version it is kept under.

Pages carry presigned photo URLs, so they are also dropped after
API_PAGE_CACHE_SECONDS, well inside the URLs' lifetime (diary/config.py
checks). The cache holds at most API_PAGE_CACHE_MB per worker; 0 turns it off.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from flask import Flask, current_app


class PageCache:
    """A bounded, thread-safe LRU of response bodies, each valid for `ttl` seconds."""

    def __init__(
        self, max_bytes: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._pages: OrderedDict[Hashable, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            found = self._pages.get(key)
            if found is None:
                return None
            body, expires = found
            if self._clock() >= expires:
                self._drop(key)
                return None
            self._pages.move_to_end(key)
            return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        with self._lock:
            if key in self._pages:
                self._drop(key)
            self._pages[key] = (body, self._clock() + self.ttl)
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._pages)))

    def _drop(self, key: Hashable) -> None:
        body, _ = self._pages.pop(key)
        self._bytes -= len(body)


def current_page_cache() -> PageCache | None:
    """This app's cache in this worker, or None when API_PAGE_CACHE_MB is 0."""
    return current_app.extensions["diary.page_cache"]


def init_app(app: Flask) -> None:
    # Made before gunicorn forks (preload): each worker starts with its own empty copy.
    megabytes = int(app.config["API_PAGE_CACHE_MB"])
    seconds = int(app.config["API_PAGE_CACHE_SECONDS"])
    app.extensions["diary.page_cache"] = (
        PageCache(megabytes * 1024 * 1024, seconds) if megabytes and seconds else None
    )
