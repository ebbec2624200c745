"""One place for failures: problem+json for clients, HTML error pages for browsers.

API clients (everything under /api/, and any request that does not prefer
HTML) get RFC 9457 problem details; browsers get an error page in the layout.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, json, render_template, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, InternalServerError

from ..errors import InvalidInput
from ..extensions import db, login_manager
from ..infra.storage import StorageUnavailable
from ..inputs import without_surrogates

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def prefers_html() -> bool:
    """True for browsers; curl's */* and JSON clients get JSON."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def wants_problem_json() -> bool:
    return request.path.startswith("/api/") or not prefers_html()


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """An RFC 9457 problem details response."""

    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extensions)
    # A message may quote the client's input, lone surrogates included (a JSON
    # "\ud800"), which no UTF-8 response can carry.
    text = without_surrogates(json.dumps(body))
    response = Response(text, status=status, mimetype=PROBLEM_JSON)
    response.headers.update(headers or {})
    return response


def _error_page(
    status: int,
    title: str,
    detail: str | None,
    *,
    reason: str | None = None,
    outage: str | None = None,
) -> Response:
    """The page for `status`; `reason`, in the reader's language, says what to correct.

    `outage` says which service a 503 is about ("database" or "storage"), so the
    page tells the reader what still works.
    """
    html = render_template(
        "errors/error.html",
        status=status,
        title=title,
        detail=detail,
        reason=reason,
        outage=outage,
    )
    return Response(html, status=status, mimetype="text/html")


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    title = error.name
    detail = error.description
    if status == 413:
        limit = request.max_content_length or 0
        detail = f"The upload is larger than the limit of {limit // (1024 * 1024)} MB."
    if wants_problem_json():
        response = problem(status, detail, title=title)
    else:
        response = _error_page(status, title, detail)
    # Keep headers such as Allow (405) and WWW-Authenticate (401).
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_invalid_input(error: InvalidInput) -> Response:
    if wants_problem_json():
        return problem(
            error.status,
            error.message,
            title=error.title,
            errors=[{"field": error.field, "message": error.message}],
        )
    # A 400 names what to correct (the month, the cursor); the page's general
    # advice alone left the reader guessing. Other statuses' messages say enough.
    reason = error.translated() if error.status == 400 else None
    return _error_page(error.status, error.title, error.translated(), reason=reason)


def handle_storage_unavailable(error: StorageUnavailable) -> Response:
    db.session.rollback()
    detail = f"{error}. Try again shortly; entries without photos still work."
    if wants_problem_json():
        return problem(503, detail, headers={"Retry-After": "30"})
    return _error_page(503, "Service Unavailable", detail, outage="storage")


def handle_database_unavailable(error: Exception) -> Response:
    """The database is down or unreachable: a quick 503 the client may retry, never a hang.

    connect_timeout and pool_pre_ping (diary/config.py) make the failure fast;
    this turns it into an answer instead of a 500 and keeps the pool usable.
    """
    lost_connection = isinstance(
        error, (sa_exc.OperationalError, sa_exc.InterfaceError)
    ) or getattr(error, "connection_invalidated", False)
    if isinstance(error, sa_exc.DBAPIError) and not lost_connection:
        return handle_unexpected(error)
    try:
        db.session.rollback()
    except sa_exc.SQLAlchemyError:
        # The connection is already gone; the pool replaces it on the next checkout.
        db.session.close()
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.path, type(error).__name__
    )
    detail = "The database is not reachable right now. Try again shortly."
    if wants_problem_json():
        return problem(503, detail, headers={"Retry-After": "5"})
    # The page's layout asks who is signed in, and for a browser that is one more
    # query to the database that just failed: raised inside this handler it became
    # a bare 500. The reader sees the outage page as a visitor instead; the session
    # cookie is untouched, so they are still signed in once the database is back.
    login_manager._update_request_context_with_user()  # Flask-Login 0.6: g._login_user
    response = _error_page(503, "Service Unavailable", detail, outage="database")
    response.headers["Retry-After"] = "5"
    return response


def handle_unexpected(error: Exception) -> Response:
    # Whatever failed, the session must not carry a broken transaction into the next request.
    db.session.rollback()
    # An exception no handler took reaches us wrapped in InternalServerError, after
    # Flask's handle_exception has logged it with its traceback ("Exception on ...");
    # logging it here too wrote every failure twice. What a handler passes on
    # directly (handle_database_unavailable) has not been logged yet.
    if not isinstance(error, HTTPException):
        log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
    server_error = InternalServerError()
    if wants_problem_json():
        return problem(500, "Something went wrong on our side; it has been logged.")
    return _error_page(500, server_error.name, "Something went wrong on our side.")


def remove_session_even_if_the_database_is_gone(_error: BaseException | None) -> None:
    """End the request's session without letting a dead connection fail the response.

    When PostgreSQL shuts down mid-request, the ROLLBACK that closing the
    session sends fails too; raised from teardown it would turn the 503 already
    chosen into gunicorn's bare 500. Registered after Flask-SQLAlchemy's own
    teardown, so it runs first and leaves that one nothing to do.
    """
    try:
        db.session.remove()
    except sa_exc.SQLAlchemyError as error:
        log.warning("closing the database session failed: %s", type(error).__name__)
        db.session.registry.clear()  # the connection is invalidated; the pool replaces it


def init_app(app: Flask) -> None:
    app.teardown_appcontext(remove_session_even_if_the_database_is_gone)
    app.register_error_handler(InvalidInput, handle_invalid_input)
    app.register_error_handler(StorageUnavailable, handle_storage_unavailable)
    # DBAPIError covers the driver's view of a dropped connection, whatever class
    # psycopg picks for it; anything else it covers is still a 500 (see the handler).
    app.register_error_handler(sa_exc.DBAPIError, handle_database_unavailable)
    app.register_error_handler(sa_exc.PendingRollbackError, handle_database_unavailable)
    app.register_error_handler(sa_exc.TimeoutError, handle_database_unavailable)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(InternalServerError, handle_unexpected)
