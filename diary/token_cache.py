"""API tokens this worker checked a moment ago, trusted while nothing changed for their owner.

A cached token holds what the check read (the owner and their
timeline_version, which keys their cached pages) and the change feed's Mark
taken before that read. It is used again only while the feed is listening and
has had no notice for the owner since the Mark (diary/change_feed.py): a
revocation, a deleted account or any change to the owner's timeline makes the
next request read the database again. API_TOKEN_CACHE_SECONDS bounds the
trust even then, for a notice lost while the feed looked live; 0 turns the
cache off. Unknown tokens are never kept, so guessing fills nothing, and a
token issued a moment ago works at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Flask, current_app

from .change_feed import ChangeFeed, Mark

if TYPE_CHECKING:
    from .accounts import TokenOwner

# Entries are small (a hash, two ints, a Mark): 10,000 tokens are about 3 MB.
MAX_TOKENS = 10_000


class TokenCache:
    """A bounded, thread-safe LRU of token hash -> TokenOwner, each with its Mark."""

    def __init__(
        self,
        feed: ChangeFeed,
        ttl: float,
        max_tokens: int = MAX_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.feed = feed
        self.ttl = ttl
        self.max_tokens = max_tokens
        self._clock = clock
        self._tokens: OrderedDict[str, tuple[TokenOwner, Mark, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tokens)

    def mark(self) -> Mark | None:
        """Take before reading a token from the database; None when it cannot be kept."""
        return self.feed.mark()

    def get(self, token_hash: str) -> TokenOwner | None:
        with self._lock:
            found = self._tokens.get(token_hash)
            if found is None:
                return None
            owner, mark, expires = found
            if self._clock() >= expires or not self.feed.unchanged_since(mark, owner.id):
                del self._tokens[token_hash]
                return None
            self._tokens.move_to_end(token_hash)
            return owner

    def put(self, token_hash: str, owner: TokenOwner, mark: Mark) -> None:
        with self._lock:
            self._tokens[token_hash] = (owner, mark, self._clock() + self.ttl)
            self._tokens.move_to_end(token_hash)
            while len(self._tokens) > self.max_tokens:
                self._tokens.popitem(last=False)


def current_token_cache() -> TokenCache | None:
    """This app's token cache in this worker, or None when API_TOKEN_CACHE_SECONDS is 0."""
    return current_app.extensions["diary.token_cache"]


def init_app(app: Flask) -> None:
    seconds = float(app.config["API_TOKEN_CACHE_SECONDS"])
    feed: ChangeFeed = app.extensions["diary.change_feed"]
    app.extensions["diary.token_cache"] = TokenCache(feed, seconds) if seconds > 0 else None
