"""The web layer: the JSON API, the pages, the original contract at `/`, photos, health.

Views here parse the request, call the rules at the package root and shape
the answer; a rule lives in one place whichever door the request came in by.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Request handling: who is asking, errors, security headers, languages, blueprints."""
    from ..extensions import babel, csrf, limiter
    from . import api, auth, errors, health, i18n, legacy, media, pages, request_deadline, security
    from .proxies import TrustedProxies

    # App Runner and the ECS load balancer terminate TLS one hop in front of us; their
    # X-Forwarded-* are believed only from TRUSTED_PROXY_CIDRS (diary/web/proxies.py).
    app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]
        app.wsgi_app, app.config["TRUSTED_PROXY_CIDRS"]
    )

    request_deadline.init_app(app)
    auth.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=i18n.select_locale, timezone_selector=i18n.select_timezone)
    i18n.init_app(app)
    security.init_app(app)
    errors.init_app(app)

    # Bearer-token routes cannot be forged cross-site; only cookie routes need CSRF.
    csrf.exempt(api.bp)
    csrf.exempt(legacy.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(legacy.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(health.bp)
    app.after_request(pages.no_store)
    app.add_template_global(pages.photo_url)
    pages.init_app(app)
