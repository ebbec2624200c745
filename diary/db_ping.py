"""Check pooled database connections before use only when they may have gone stale.

SQLAlchemy's pool_pre_ping checks every connection at every checkout: one
more round trip to the database on every request (with wrk, a cached API
page cost a worker 1.31 ms of CPU with it and 1.14 ms without). A connection
that was in use a moment ago is almost surely alive; one that sat idle may
have been cut (a database restart or failover, an idle timeout on the way to
RDS). So only connections idle for longer than DB_PING_AFTER_IDLE_SECONDS are
checked, as PgBouncer's server_check_delay does.

A busy connection can still die under a request: that request gets the quick
503 of errors.handle_database_unavailable, and SQLAlchemy, seeing the
disconnect, retires every pooled connection opened before it, so the
requests after it connect afresh. An outage costs the requests in flight
when it starts, never a hang (connect_timeout, diary/config.py).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from .extensions import db


def init_app(app: Flask) -> None:
    if make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name() != "postgresql":
        return  # an SQLite file does not go away under an idle connection
    idle_limit = float(app.config["DB_PING_AFTER_IDLE_SECONDS"])
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "checkin")
    def note_when_idle(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= idle_limit:
            return  # just opened, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()  # leave it idle, as the pool handed it out
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and hands out a fresh one.
            raise sa_exc.DisconnectionError(f"idle connection is gone: {error}") from error
