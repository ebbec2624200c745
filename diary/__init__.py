"""diary: a private diary service with text and photos."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask

from . import config as settings
from .config import ConfigError

__all__ = ["ConfigError", "create_app"]

log = logging.getLogger("diary")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, the instance config file, the environment, then `test_config`."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder="../templates",
        static_folder="../static",
    )
    try:
        app.config.from_mapping(settings.defaults(app.instance_path))
        if test_config is None:
            # instance/config.py: what `make run` writes (a random SECRET_KEY) so the
            # `flask --app diary ...` commands it prints work as printed. Tests pass a
            # config of their own and never depend on a developer's instance folder.
            app.config.from_pyfile("config.py", silent=True)
        app.config.from_mapping(settings.from_env(os.environ))
        if test_config:
            app.config.from_mapping(test_config)
        settings.finalise(app.config, debug=app.debug)
    except ConfigError as error:
        from .commands import stop_command_on_config_error

        stop_command_on_config_error(error)
        raise
    # Keep members in the order written (the original contract's clients see
    # ID, CreatedAt, ... as Go emitted them) and Japanese text readable.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    os.makedirs(app.instance_path, exist_ok=True)

    # First, so the request id and timer are set before any other hook runs.
    from . import commands, web
    from .extensions import db, migrate
    from .infra import db_password, logs, storage

    logs.init_app(app)
    db.init_app(app)
    db_password.init_app(app)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)
    storage.init_app(app)
    web.init_app(app)
    commands.init_app(app)

    log.info(
        "diary starting: database %s; storage %s",
        settings.describe_database(app.config["SQLALCHEMY_DATABASE_URI"]),
        app.extensions["diary.storage"].describe(),
    )
    return app
