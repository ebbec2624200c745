"""Extension objects, created unbound and attached in create_app with init_app."""

import sqlite3

from flask import Flask, current_app, has_app_context
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from limits.storage import Storage
from limits.strategies import RateLimiter
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Stable constraint names keep Alembic migrations reproducible across databases.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# A session lives for one request (or one command). Objects stay as they were
# after a commit instead of being reloaded: a request that writes an entry and
# then answers with it would otherwise read back the entry, its photos and the
# user it just had in hand (three statements of ten for a text POST).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()


class AppLimiter(Limiter):
    """Flask-Limiter's Limiter, with each app's own storage.

    The Limiter keeps one storage per Limiter object and replaces it on every
    init_app, so two apps in one process (tests, tools) would count in the
    last one's storage. Each app keeps its own here: two apps count together
    only through a storage they really share (the database, Redis).
    """

    def init_app(self, app: Flask) -> None:
        from .infra import rate_limits  # noqa: F401 (registers database:// with limits)

        super().init_app(app)
        app.extensions["diary.rate_limits"] = (self._storage, self._limiter)

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        # Only the decorated views (sign-in, sign-up) have limits, and their
        # decorator checks them itself. The same check in before_request, on
        # every request, found nothing to count and cost each API request
        # about 250 Python calls; with no default or application limits it is
        # skipped there.
        if in_middleware:
            return
        super()._check_request_limit(callable_name, in_middleware)

    @property
    def storage(self) -> Storage:
        if has_app_context() and "diary.rate_limits" in current_app.extensions:
            return current_app.extensions["diary.rate_limits"][0]
        return super().storage

    @property
    def limiter(self) -> RateLimiter:
        if has_app_context() and "diary.rate_limits" in current_app.extensions:
            return current_app.extensions["diary.rate_limits"][1]
        return super().limiter


# No default limits: only sign-in and sign-up are throttled. From a trusted proxy
# the remote address is the client's, not the load balancer's (diary/web/proxies.py).
limiter = AppLimiter(get_remote_address)


@event.listens_for(Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection: object, _record: object) -> None:
    # SQLite ignores ON DELETE CASCADE unless asked per connection.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
