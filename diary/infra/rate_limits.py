"""`RATELIMIT_STORAGE_URI=database://`: the throttles' counts in the app's own database.

Sign-in and sign-up throttling must count across every instance, or an
attacker spreads guesses over them. The database is already shared by all of
them, so it keeps the counts too (table `rate_limit_counters`) and production
needs no Redis. This is a `limits` storage for Flask-Limiter's default
fixed-window strategy, registered under the scheme `database`.

- One statement increments a key atomically and starts a new window when the
  old one has ended: INSERT ... ON CONFLICT DO UPDATE ... RETURNING, on
  PostgreSQL (a row lock per key) and SQLite (one writer at a time) alike.
- Windows that have ended are deleted at most once per CLEANUP_INTERVAL per
  process, in batches, after the increment's commit; on PostgreSQL rows
  another transaction holds are skipped (SKIP LOCKED) rather than waited for.
- The statements run on the request's own session and commit it. A second
  connection would need a second pool slot while the request holds one, and a
  burst of sign-ins (an attack) could leave every thread waiting for a slot
  another holds. The throttled views (sign-in, sign-up) commit their own work
  before they answer, so the commit carries nothing of theirs.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from limits.errors import ConfigurationError
from limits.storage import Storage
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import RateLimitCounter
from ..timestamps import utcnow

SCHEME = "database"
CLEANUP_INTERVAL = timedelta(minutes=1)
CLEANUP_BATCH = 1000
_KEY_LENGTH = RateLimitCounter.__table__.c.key.type.length or 512
_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

_table = RateLimitCounter.__table__


def _stored_key(key: str) -> str:
    # Limit keys embed what the client sent (an email); a longer one is hashed to fit.
    if len(key) <= _KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


class DatabaseStorage(Storage):
    """Fixed-window counters in `rate_limit_counters`, through the current app's session."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(
        self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool
    ) -> None:
        if uri not in (None, f"{SCHEME}://"):
            # The app's own database is the only one: anything more is a mistake.
            raise ConfigurationError(f"{SCHEME}:// takes no host, path or options")
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_cleanup: datetime | None = None

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return sa.exc.SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = utcnow()
        insert = _INSERT[db.session.get_bind().dialect.name](_table).values(
            key=_stored_key(key), hits=amount, expires_at=now + timedelta(seconds=expiry)
        )
        ended = _table.c.expires_at <= now
        statement = insert.on_conflict_do_update(
            index_elements=[_table.c.key],
            set_={
                "hits": sa.case(
                    (ended, insert.excluded.hits), else_=_table.c.hits + insert.excluded.hits
                ),
                "expires_at": sa.case(
                    (ended, insert.excluded.expires_at), else_=_table.c.expires_at
                ),
            },
        ).returning(_table.c.hits)
        hits = db.session.execute(statement).scalar_one()
        db.session.commit()
        self._delete_ended_windows(now)
        return hits

    def get(self, key: str) -> int:
        hits = db.session.scalar(
            sa.select(_table.c.hits).where(
                _table.c.key == _stored_key(key), _table.c.expires_at > utcnow()
            )
        )
        return hits or 0

    def get_expiry(self, key: str) -> float:
        now = utcnow()
        expires_at = db.session.scalar(
            sa.select(_table.c.expires_at).where(
                _table.c.key == _stored_key(key), _table.c.expires_at > now
            )
        )
        return (expires_at or now).timestamp()

    def check(self) -> bool:
        try:
            db.session.execute(sa.select(sa.func.count()).select_from(_table).limit(1))
        except sa.exc.SQLAlchemyError:
            db.session.rollback()
            return False
        return True

    def reset(self) -> int | None:
        deleted = db.session.execute(sa.delete(_table)).rowcount
        db.session.commit()
        return deleted

    def clear(self, key: str) -> None:
        db.session.execute(sa.delete(_table).where(_table.c.key == _stored_key(key)))
        db.session.commit()

    def _delete_ended_windows(self, now: datetime) -> None:
        if self._next_cleanup is not None and now < self._next_cleanup:
            return
        self._next_cleanup = now + CLEANUP_INTERVAL
        ended = (
            sa.select(_table.c.key)
            .where(_table.c.expires_at <= now)
            .limit(CLEANUP_BATCH)
            .with_for_update(skip_locked=True)
        )
        db.session.execute(sa.delete(_table).where(_table.c.key.in_(ended)))
        db.session.commit()
