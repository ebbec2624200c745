"""A request body must arrive within REQUEST_BODY_TIMEOUT seconds, or the client gets a 408.

gunicorn's gthread workers read request bodies in their worker threads, from
blocking sockets, with no time limit. A client that sends headers with a
Content-Length and then stalls, or drips a byte every few seconds, holds its
thread for as long as it likes; a dozen of them held every thread of both
workers (2 x 4) and /healthz stopped answering. Anyone can do it: the CSRF
check reads the form of every page POST before anyone is signed in.

A socket timeout alone does not bound the total: gunicorn's body reader loops
over recv() inside a single read() call, and each recv() gets the full timeout
again, so one byte every few seconds keeps a read going indefinitely. Here the
clock starts at the app's first read of the body; when it runs out, a watchdog
thread shuts the socket's read side, which wakes the blocked recv() at once, and
the read raises RequestBodyTimeout (a 408 through the error handlers, so
problem+json for the API). The response is still written, then the connection
is closed: where the next request would start on it is unknown.

One watchdog thread serves every request of the process. A `threading.Timer`
per request, as before, started and stopped an OS thread for every POST: under
gunicorn a text POST took 2.88 ms of CPU with it and 2.62 ms without (bench/).

This needs the socket gunicorn puts in the environ; under another server (the
`flask run` of `make run`) the middleware steps aside. Headers are bounded in
diary/infra/gunicorn_worker.py, before any of this runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import RequestTimeout
from werkzeug.wsgi import ClosingIterator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

log = logging.getLogger(__name__)


class RequestBodyTimeout(RequestTimeout):
    """The client did not send the request body within the bound."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The request body did not arrive within {seconds:g} seconds. "
            "Send it again over a faster connection."
        )


class DeadlineInput:
    """wsgi.input, whose reads all end within the watchdog's allowance of the first one."""

    def __init__(self, stream: Any, sock: socket.socket, watchdog: Watchdog) -> None:
        self._stream = stream
        self._sock = sock
        self._watchdog = watchdog
        self._deadline: float | None = None
        self._lock = threading.Lock()
        self._finished = False
        self.expired = False

    def expire(self) -> None:
        """Out of time: stop the read that is waiting, and every later one."""
        with self._lock:
            if self._finished or self.expired:
                return
            self.expired = True
            # SHUT_RD wakes a recv() blocked on this socket (it returns no data) and
            # keeps the write side open for the 408.
            with suppress(OSError):
                self._sock.shutdown(socket.SHUT_RD)

    def finish(self) -> None:
        """The request is over: the watchdog must not touch the socket any more."""
        with self._lock:
            self._finished = True
        if self._deadline is not None:
            self._watchdog.forget(self)

    def _read(self, method: Callable[..., Any], *args: Any) -> Any:
        if self._deadline is None:
            self._deadline = self._watchdog.watch(self)
        if time.monotonic() >= self._deadline:
            self.expire()
        if not self.expired:
            data = method(*args)
        if self.expired:
            raise RequestBodyTimeout(self._watchdog.seconds)
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._read(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._read(self._stream.readline, size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return self._read(self._stream.readlines, hint)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class Watchdog:
    """Expires the bodies whose time is up: one thread for the whole process.

    Every body gets the same allowance, so the body registered first is always
    the first due. The pending bodies are a dict, kept in the order they were
    registered; the thread sleeps until the oldest one's deadline, or a whole
    allowance when none is pending (nothing registered meanwhile can fall due
    sooner), so registering a body never has to wake it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._pending: dict[DeadlineInput, float] = {}
        self._lock = threading.Lock()
        # The process whose thread is running: gunicorn forks its workers from a
        # master that imported the app, and a thread does not survive a fork.
        self._running_in: int | None = None

    def watch(self, body: DeadlineInput) -> float:
        """Expire `body` after the allowance, unless it is forgotten first; its deadline."""
        with self._lock:
            # Read under the lock, so the dict's order is the deadlines' order.
            deadline = time.monotonic() + self.seconds
            self._pending[body] = deadline
            if self._running_in != os.getpid():
                self._running_in = os.getpid()
                threading.Thread(
                    target=self._run, name="request-body-deadline", daemon=True
                ).start()
        return deadline

    def forget(self, body: DeadlineInput) -> None:
        with self._lock:
            self._pending.pop(body, None)

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            due = []
            with self._lock:
                for body, deadline in self._pending.items():
                    if deadline > now:
                        break
                    due.append(body)
                for body in due:
                    del self._pending[body]
                wake_at = next(iter(self._pending.values()), now + self.seconds)
            for body in due:
                # The one thread serves every request of the process: whatever
                # one body does, it must go on to the next.
                try:
                    body.expire()
                except Exception:
                    log.exception("expiring a request body failed")
            time.sleep(max(0.0, wake_at - time.monotonic()))


def _has_body(environ: WSGIEnvironment) -> bool:
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return True
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return False


class RequestBodyDeadline:
    """WSGI middleware: bound the time a request body may take (see the module docstring)."""

    def __init__(self, app: WSGIApplication, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self.watchdog = Watchdog(seconds)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        if sock is None or not _has_body(environ):
            return self.app(environ, start_response)
        body = DeadlineInput(environ["wsgi.input"], sock, self.watchdog)
        environ["wsgi.input"] = body

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if body.expired:
                log.warning(
                    "request body not received within %g s: %s %s answered %s",
                    self.seconds,
                    environ.get("REQUEST_METHOD"),
                    environ.get("PATH_INFO"),
                    status.split(" ", 1)[0],
                )
                # An app cannot send Connection: close (gunicorn drops hop-by-hop
                # headers); gunicorn's own response object can, when it is there.
                force_close = getattr(
                    getattr(start_response, "__self__", None), "force_close", None
                )
                if callable(force_close):
                    force_close()
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, start)
        except BaseException:
            body.finish()
            raise
        return ClosingIterator(result, body.finish)


def init_app(app: Flask) -> None:
    app.wsgi_app = RequestBodyDeadline(  # type: ignore[method-assign]
        app.wsgi_app, app.config["REQUEST_BODY_TIMEOUT"]
    )
