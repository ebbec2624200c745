"""gunicorn's gthread worker, with a bound on how long a request's headers may take.

gunicorn (27) keeps a connection that has sent nothing off the thread pool: it
waits 5 s for a first byte, then parks it on the poller. Once a byte has come,
though, a thread reads the headers from a blocking socket with no time limit,
so `GET / HTTP/1.1` and then silence (or a header line a byte at a time) held a
thread for good; a dozen such connections held every thread. gunicorn has no
setting or hook for it (pre_request runs once the headers are in), so this
worker reads each request's headers through a socket reader with a deadline:
REQUEST_HEADER_TIMEOUT seconds from the request's first read, every recv()
waiting only for what is left of it. Past it the client gets a bare 408 and the
connection is closed. The body is bounded by diary/web/request_deadline.py.

gunicorn.conf.py names this class as worker_class.
"""

from __future__ import annotations

import logging
import socket
import time
from contextlib import suppress
from typing import Any

from gunicorn import http
from gunicorn.http.errors import NoMoreData
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

log = logging.getLogger("gunicorn.error")

DEFAULT_HEADER_TIMEOUT = 10.0
TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class HeaderTimeout(NoMoreData):
    """The headers did not arrive in time; gunicorn closes the connection quietly on this."""


class HeaderDeadlineReader(SocketUnreader):
    """gunicorn's socket reader; while `reading_headers`, all reads end by one deadline."""

    def __init__(self, sock: socket.socket, seconds: float, peer: Any) -> None:
        super().__init__(sock)
        self.seconds = seconds
        self.peer = peer
        self.reading_headers = False
        self.deadline: float | None = None

    def start_request(self) -> None:
        self.reading_headers = True
        self.deadline = None

    def headers_read(self) -> None:
        self.reading_headers = False

    def chunk(self, size_hint: int | None = None) -> bytes:
        if not self.reading_headers:
            return super().chunk(size_hint)
        now = time.monotonic()
        if self.deadline is None:
            # From the first read: the time the request spent waiting for a thread
            # (or, kept alive, for its next request) is not the client's.
            self.deadline = now + self.seconds
        remaining = self.deadline - now
        if remaining > 0:
            previous = self.sock.gettimeout()
            self.sock.settimeout(remaining)
            try:
                return super().chunk(size_hint)
            except TimeoutError:
                pass
            finally:
                with suppress(OSError):
                    self.sock.settimeout(previous)
        self._give_up()
        raise HeaderTimeout(None)

    def _give_up(self) -> None:
        log.warning(
            "request headers not received within %g s from %s; closing the connection",
            self.seconds,
            self.peer[0] if isinstance(self.peer, tuple) else self.peer,
        )
        with suppress(OSError):
            self.sock.settimeout(1.0)
            self.sock.sendall(TIMEOUT_RESPONSE)
        # gunicorn's graceful close reads what the client still sends for up to 2 s,
        # on the worker's main loop: a client still dripping would stall it that long.
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)


class ThreadWorker(gthread.ThreadWorker):
    """gthread, with REQUEST_HEADER_TIMEOUT (read from the app's validated config)."""

    def header_timeout(self) -> float:
        config = getattr(self.wsgi, "config", None) or {}
        return float(config.get("REQUEST_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT))

    def handle(self, conn: Any) -> Any:
        if conn.parser is None and self._plain_http(conn):
            # Made here, before gunicorn would make it in conn.init(), so that it
            # reads through the deadline reader.
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader = HeaderDeadlineReader(
                conn.sock, self.header_timeout(), conn.client
            )
        reader = getattr(conn.parser, "unreader", None)
        if isinstance(reader, HeaderDeadlineReader):
            reader.start_request()
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        reader = getattr(conn.parser, "unreader", None)
        if isinstance(reader, HeaderDeadlineReader):
            reader.headers_read()
        return super().handle_request(req, conn)

    def _plain_http(self, conn: Any) -> bool:
        """HTTP/1 over TCP: TLS and HTTP/2 connections keep gunicorn's own reader."""
        return (
            not self.cfg.is_ssl
            and getattr(self.cfg, "protocol", "http") == "http"
            and not negotiation.prior_knowledge_allowed(self.cfg, conn.client)
        )
