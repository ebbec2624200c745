"""diary: a private diary service with text and photos."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as settings
from .config import ConfigError

__all__ = ["ConfigError", "create_app"]

log = logging.getLogger("diary")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then `test_config`."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder="../templates",
        static_folder="../static",
    )
    app.config.from_mapping(settings.defaults(app.instance_path))
    app.config.from_mapping(settings.from_env(os.environ))
    if test_config:
        app.config.from_mapping(test_config)
    settings.finalise(app.config, debug=app.debug)
    # Keep members in the order written (the original contract's clients see
    # ID, CreatedAt, ... as Go emitted them) and Japanese text readable.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    os.makedirs(app.instance_path, exist_ok=True)

    # App Runner and the ECS load balancer terminate TLS one hop in front of us.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    from . import request_deadline

    request_deadline.init_app(app)

    # First, so the request id and timer are set before any other hook runs.
    from . import logs

    logs.init_app(app)
    register_extensions(app)
    register_blueprints(app)

    from . import cli, doctor, errors, features_cli, health, migrate_lock, storage_maintenance

    errors.init_app(app)
    cli.init_app(app)
    features_cli.init_app(app)
    storage_maintenance.init_app(app)
    health.init_app(app)
    doctor.init_app(app)
    migrate_lock.init_app(app)

    log.info(
        "diary starting: database %s; storage %s",
        settings.describe_database(app.config["SQLALCHEMY_DATABASE_URI"]),
        app.extensions["diary.storage"].describe(),
    )
    return app


def register_extensions(app: Flask) -> None:
    from . import (
        auth,
        change_feed,
        db_password,
        db_ping,
        i18n,
        page_cache,
        security,
        storage,
        token_cache,
    )
    from .extensions import babel, csrf, db, limiter, migrate

    db.init_app(app)
    db_password.init_app(app)
    db_ping.init_app(app)
    page_cache.init_app(app)
    change_feed.init_app(app)
    token_cache.init_app(app)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)
    auth.init_app(app)
    storage.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=i18n.select_locale, timezone_selector=i18n.select_timezone)
    security.init_app(app)


def register_blueprints(app: Flask) -> None:
    from . import api, feature_pages, legacy, media, pages
    from .extensions import csrf

    # Bearer-token routes cannot be forged cross-site; only cookie routes need CSRF.
    csrf.exempt(api.bp)
    csrf.exempt(legacy.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(legacy.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(media.bp)
    app.after_request(pages.no_store)
    app.add_template_global(pages.photo_url)
    pages.init_app(app)
    feature_pages.init_app(app)
