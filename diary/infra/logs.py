"""Logs as JSON lines on stdout, which App Runner and ECS ship to CloudWatch as they are.

Every request gets one line (method, path, status, duration, request id, user id),
every error its traceback, and every line written during a request carries that
request's id. Nothing secret is ever written: request headers, cookies and forms
are not logged at all, and as a second line of defence every line is scrubbed of
credentials in URLs, bearer tokens and the configured secrets before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, Response, g, has_request_context, request
from sqlalchemy.engine import make_url

from ..inputs import without_surrogates

REQUEST_ID_HEADER = "X-Request-Id"
# App Runner and the ALB in front of ECS add this to every request.
TRACE_HEADER = "X-Amzn-Trace-Id"
# Accept a caller's id only if it is short and plain: it is echoed and logged.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:;=/+-]{1,128}")

# The attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s\"']+:)[^@\s\"']+@")
_BEARER = re.compile(r"(?i)(?P<scheme>bearer\s+)[A-Za-z0-9._~+/=-]+")
# A Cookie or Set-Cookie header, as a dict member or a header line: mask the whole value.
_COOKIE = re.compile(r"(?i)(?P<scheme>[\"']?(?:set-)?cookie[\"']?\s*[:=]\s*[\"']?)[^\"'\n]+")
_PASSWORD_FIELD = re.compile(
    r"(?i)(?P<scheme>[\"']?(?:password(?:_hash)?|passwd|secret|token)[\"']?\s*[:=]\s*)"
    r"(?:'[^']*'|\"[^\"]*\"|[^\s\"',;&}]+)"
)
# A password hash as Werkzeug writes it (scrypt:32768:8:1$salt$hex, pbkdf2:sha256:N$salt$hex),
# wherever it appears: a hash in a log is a password to crack offline.
_PASSWORD_HASH = re.compile(r"(?i)(?:scrypt|pbkdf2)(?::[\w-]+)*\$[^$\s\"']*\$[0-9a-f]+")

# Values that must never appear in a line (SECRET_KEY, the database password, ...).
_secrets: set[str] = set()


def add_secret(value: object) -> None:
    """Register a value to be masked wherever it would appear in a log line."""
    if isinstance(value, str) and len(value) >= 4:
        _secrets.add(value)


# Each pattern above needs one of these (in any case) to match.
_PATTERN_MARKERS = ("@", "bearer", "cookie", "passw", "secret", "token", "scrypt", "pbkdf2")


def _may_hold_credentials(text: str) -> bool:
    """False only when none of the patterns can match: 1 µs against 34 µs for the four.

    For ASCII text, lower() folds case exactly as the patterns' (?i) does; other
    text always takes the patterns rather than reason about Unicode case rules.
    """
    if not text.isascii():
        return True
    lowered = text.lower()
    return any(marker in lowered for marker in _PATTERN_MARKERS)


def redact(text: str) -> str:
    """Mask credentials in URLs, bearer tokens, password fields and hashes, registered secrets."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    if not _may_hold_credentials(text):
        return text  # as almost every request's line
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    text = _BEARER.sub(r"\g<scheme>***", text)
    text = _COOKIE.sub(r"\g<scheme>***", text)
    text = _PASSWORD_HASH.sub("***", text)
    return _PASSWORD_FIELD.sub(r"\g<scheme>'***'", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if "request_id" not in line and has_request_context() and "request_id" in g:
            line["request_id"] = g.request_id
        if record.exc_info:
            line["error"] = record.exc_info[1].__class__.__name__ if record.exc_info[1] else None
            line["traceback"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = record.stack_info
        # Scrub each value before encoding: JSON escaping would hide the patterns.
        scrubbed = {
            key: redact(value) if isinstance(value, str) else value for key, value in line.items()
        }
        # A lone surrogate (a client's JSON "\ud800" quoted in a message) would fail
        # the UTF-8 stream and lose the whole line.
        return redact(without_surrogates(json.dumps(scrubbed, ensure_ascii=False, default=str)))


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is at the moment (test capture swaps it)."""

    stream_name = "stdout"

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class StderrHandler(StdoutHandler):
    """The same on sys.stderr, for commands whose stdout is data."""

    stream_name = "stderr"


def configure_logging(
    loggers: Iterable[str] = ("diary",),
    handler_class: type[StdoutHandler] = StdoutHandler,
) -> None:
    """Send the given loggers to stdout (or stderr) as JSON lines, through one handler."""
    for name in loggers:
        logger = logging.getLogger(name)
        ours = [handler for handler in logger.handlers if isinstance(handler, StdoutHandler)]
        if [type(handler) for handler in ours] != [handler_class]:
            for handler in ours:
                logger.removeHandler(handler)
            handler = handler_class()
            handler.setFormatter(JsonFormatter())
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        # Our handler writes the line; a root handler must not write it a second
        # time in another format.
        logger.propagate = False


def _request_id() -> str:
    """The caller's X-Request-Id, else the platform's trace id, else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "").strip()
    if _SAFE_REQUEST_ID.fullmatch(given):
        return given
    trace = request.headers.get(TRACE_HEADER, "").strip()
    # "Root=1-67891233-abcdef012345678912345678;Parent=...;Sampled=1": the root is the id.
    root = next(
        (part[5:] for part in trace.split(";") if part.startswith("Root=")),
        trace,
    )
    if _SAFE_REQUEST_ID.fullmatch(root):
        return root
    return uuid.uuid4().hex


def _start_request() -> None:
    g.request_started = time.perf_counter()
    g.request_id = _request_id()


def known_user_id() -> int | None:
    """The signed-in user, if the request already looked them up (never a query of its own)."""
    user = g.get("user") or g.get("_login_user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    # The identity map key, not `user.id`: after a rollback (the database just
    # went away) the attribute is expired and reading it would query again,
    # turning the 503 being answered into a 500 while logging it.
    state = sa.inspect(user, raiseerr=False)
    identity = state.identity if state is not None else None
    return identity[0] if identity else None


def _log_request(response: Response) -> Response:
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started else None
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    # The platform probes /healthz every few seconds; only failures are worth a line.
    quiet = request.path == "/healthz" and response.status_code < 400
    request_log.log(
        logging.DEBUG if quiet else logging.INFO,
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            # The path only: a query string may carry anything.
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "request_id": g.get("request_id"),
            "user_id": known_user_id(),
        },
    )
    return response


request_log = logging.getLogger("diary.request")


def register_secrets(config: dict[str, Any]) -> None:
    """Mask this app's secrets: SECRET_KEY and the database password."""
    add_secret(config.get("SECRET_KEY"))
    # finalise() has already checked that the URL parses.
    add_secret(make_url(config["SQLALCHEMY_DATABASE_URI"]).password)


def init_app(app: Flask) -> None:
    """JSON logging for the app's loggers and one line per request."""
    # Under the `flask` command stdout can be the data (`db upgrade --sql`,
    # `doctor --json`, `export`), so the app's lines, the start-up line among
    # them, go to stderr there; gunicorn is no click command.
    under_flask_command = click.get_current_context(silent=True) is not None
    configure_logging(handler_class=StderrHandler if under_flask_command else StdoutHandler)
    register_secrets(app.config)
    app.before_request(_start_request)
    app.after_request(_log_request)
