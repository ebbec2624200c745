"""Clients that stall mid-request cannot hang the service: the real gunicorn
(2 workers x 4 threads) with REQUEST_HEADER_TIMEOUT and REQUEST_BODY_TIMEOUT of 2 s.

The stalled connections are raw sockets, more of them than there are threads:
headers with a Content-Length and then silence, bodies dripped a byte at a
time, headers never finished or dripped. /healthz must still answer, each of
them must get its 408 or be closed, and ordinary uploads still work.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import pytest
import requests

from diary.web.request_deadline import RequestBodyDeadline, RequestBodyTimeout

from .conftest import image_bytes
from .servers import flask_cli, gunicorn_server

TIMEOUT = 2.0
WORKERS, THREADS = 2, 4
BOUNDARY = "deadline-test-boundary"


def start_service(tmp_path: Path, **extra: str) -> tuple[dict[str, str], str]:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'diary.sqlite3'}",
        "LOCAL_STORAGE_DIR": str(tmp_path / "photos"),
        "SECRET_KEY": "deadline-" + os.urandom(16).hex(),
        "WEB_CONCURRENCY": str(WORKERS),
        "GUNICORN_THREADS": str(THREADS),
        "GUNICORN_LOG": str(tmp_path / "gunicorn.log"),
        **extra,
    }
    flask_cli(env, "db", "upgrade")
    flask_cli(env, "users", "create", "slow@example.com", "--password-stdin", stdin="slow pw 123\n")
    token = flask_cli(env, "tokens", "create", "slow@example.com", "--name", "t").split()[-1]
    return env, token


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp_path = tmp_path_factory.mktemp("deadline")
    env, token = start_service(
        tmp_path, REQUEST_HEADER_TIMEOUT=str(TIMEOUT), REQUEST_BODY_TIMEOUT=str(TIMEOUT)
    )
    with gunicorn_server(env) as url:
        yield {"url": url, "port": int(url.rsplit(":", 1)[1]), "token": token, "log": tmp_path}


def multipart_head(path: str, token: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: diary\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def multipart_body(text: str, photo: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


class Client:
    """A raw connection that sends `first` at once, then `dripped` one byte at a time."""

    def __init__(self, port: int, first: bytes, dripped: bytes = b"", every: float = 0.4) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(first)
        self.dripped, self.every = dripped, every
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        for byte in self.dripped:
            if self.stop.wait(self.every):
                return
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:
                return
            self.sent += 1

    def outcome(self, wait: float) -> str:
        """The status code the server sent, or 'closed' if it closed without a response."""
        self.sock.settimeout(wait)
        received = b""
        try:
            while chunk := self.sock.recv(65536):
                received += chunk
        except TimeoutError:
            return "still open: " + received[:60].decode(errors="replace")
        except ConnectionResetError:
            pass
        finally:
            self.stop.set()
        self.received = received
        return received.split(b" ", 2)[1].decode() if received else "closed"

    def close(self) -> None:
        self.stop.set()
        with suppress(OSError):
            self.sock.close()


# Connections are spread over the workers by the kernel (reuse_port), not evenly:
# with 20, both workers get more than their 4 threads' worth but about once in
# a few hundred runs, so without the bounds /healthz reliably waits for ever.
STALLED = 20


def outcomes_after_stalling(service: dict, kinds: dict[str, list[Client]]) -> dict[str, list[str]]:
    """With these clients stalled: /healthz answers; then what each client got."""
    clients = [client for group in kinds.values() for client in group]
    assert len(clients) == STALLED > WORKERS * THREADS
    with ExitStack() as stack:
        for client in clients:
            stack.callback(client.close)
        time.sleep(0.5)  # let the workers take them up
        # Every thread is busy with them; each is let go after the bound, so the
        # last is gone after a few rounds of threads. Only "it answers" is asserted.
        bound = (STALLED // THREADS + 2) * TIMEOUT + 10
        started = time.monotonic()
        health = requests.get(f"{service['url']}/healthz", timeout=bound)
        assert health.status_code == 200
        print(f"\n/healthz answered after {time.monotonic() - started:.1f} s")
        return {
            kind: [client.outcome(wait=bound) for client in group] for kind, group in kinds.items()
        }


def test_clients_that_stall_or_drip_their_bodies_get_408_and_the_workers_go_on(service):
    port, token = service["port"], service["token"]
    body = multipart_body("never finished", image_bytes())
    login = b"email=someone%40example.com&password=" + b"x" * 200
    login_head = (
        "POST /login HTTP/1.1\r\nHost: diary\r\nAccept: text/html\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(login)}\r\n\r\n"
    ).encode()
    kinds = {
        # An API upload: headers, the start of the body, then nothing.
        "api": [
            Client(port, multipart_head("/api/v1/entries", token, len(body)) + body[:100])
            for _ in range(10)
        ],
        # The original contract's upload, its body one byte every 0.4 s: every
        # single byte is prompt, the whole never arrives.
        "legacy dripped": [
            Client(port, multipart_head("/", token, len(body)), dripped=body) for _ in range(4)
        ],
        # No account needed: the CSRF check reads a page form before anything else.
        "page": [Client(port, login_head + login[:10]) for _ in range(6)],
    }

    outcomes = outcomes_after_stalling(service, kinds)

    assert outcomes == {kind: ["408"] * len(group) for kind, group in kinds.items()}
    head, _, payload = kinds["api"][0].received.partition(b"\r\n\r\n")
    assert b"Content-Type: application/problem+json" in head
    assert b"Connection: close" in head
    problem = json.loads(payload)
    assert problem["status"] == 408
    assert f"within {TIMEOUT:g} seconds" in problem["detail"]
    assert b"Content-Type: text/html" in kinds["page"][0].received.partition(b"\r\n\r\n")[0]
    log = (service["log"] / "gunicorn.log").read_text()
    assert "request body not received within 2 s: POST /api/v1/entries answered 408" in log


def test_clients_that_stall_or_drip_their_headers_are_let_go_and_the_workers_go_on(service):
    port = service["port"]
    kinds = {
        "stalled": [
            Client(port, b"POST / HTTP/1.1\r\nHost: diary\r\nContent-Le") for _ in range(12)
        ],
        "dripped": [
            Client(port, b"GET /healthz HTTP/1.1\r\n", dripped=b"X-Slow: " + b"a" * 200)
            for _ in range(8)
        ],
    }

    outcomes = outcomes_after_stalling(service, kinds)

    assert outcomes == {kind: ["408"] * len(group) for kind, group in kinds.items()}
    assert (
        "request headers not received within 2 s" in (service["log"] / "gunicorn.log").read_text()
    )


def test_a_normal_upload_still_works_after_them(service):
    response = requests.post(
        f"{service['url']}/api/v1/entries",
        headers={"Authorization": f"Bearer {service['token']}"},
        data={"text": "an ordinary upload"},
        files={"file": ("a.jpg", image_bytes(), "image/jpeg")},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert response.json()["text"] == "an ordinary upload"


def test_a_drip_is_cut_at_the_total_bound_not_per_byte(service):
    """One byte every 0.3 s, well inside any per-read timeout, for longer than the bound."""
    body = multipart_body("drip", image_bytes())
    client = Client(
        service["port"],
        multipart_head("/api/v1/entries", service["token"], len(body)),
        dripped=body,
        every=0.3,
    )
    try:
        assert client.outcome(wait=TIMEOUT * 5 + 10) == "408"
        # It was cut, not finished: most of the body was never sent.
        assert client.sent < len(body) / 2
    finally:
        client.close()


def test_a_slow_but_steady_upload_within_the_bound_is_accepted(tmp_path: Path):
    """12 pieces over about 3 s: longer than the other tests' 2 s bound, under this 8 s one."""
    env, token = start_service(tmp_path, REQUEST_BODY_TIMEOUT="8")
    body = multipart_body("slow but steady", image_bytes(size=(400, 300)))
    step = len(body) // 12 + 1
    pieces = [body[index : index + step] for index in range(0, len(body), step)]

    def steadily() -> Iterator[bytes]:
        for piece in pieces:
            time.sleep(0.25)
            yield piece

    with gunicorn_server(env) as url:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        connection.request(
            "POST",
            "/api/v1/entries",
            body=steadily(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Content-Length": str(len(body)),
            },
        )
        response = connection.getresponse()
        payload = response.read()
        connection.close()
    assert response.status == 201, payload
    assert json.loads(payload)["text"] == "slow but steady"


# --- the middleware itself, on a socket pair (no gunicorn) -------------------------


def reading_app(environ: dict, start_response) -> list[bytes]:
    """A WSGI app that reads the whole body, as a form parser would."""
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def call_with_socket(middleware: RequestBodyDeadline, server_end: socket.socket) -> bytes:
    """One request whose body comes from `server_end`, as gunicorn would hand it over."""
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_LENGTH": "5",
        "gunicorn.socket": server_end,
        "wsgi.input": server_end.makefile("rb"),
    }
    result = middleware(environ, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(result)
    finally:
        result.close()


def deadline_threads() -> int:
    return sum(thread.name == "request-body-deadline" for thread in threading.enumerate())


def test_one_watchdog_thread_serves_every_request_of_a_process():
    middleware = RequestBodyDeadline(reading_app, seconds=30)
    before = deadline_threads()
    for number in range(50):
        client_end, server_end = socket.socketpair()
        with client_end, server_end:
            client_end.sendall(b"%05d" % number)
            assert call_with_socket(middleware, server_end) == b"%05d" % number
    assert deadline_threads() == before + 1
    assert not middleware.watchdog._pending, "finished requests are no longer watched"


def test_a_body_still_arriving_when_the_time_is_up_is_cut_off():
    middleware = RequestBodyDeadline(reading_app, seconds=0.3)
    client_end, server_end = socket.socketpair()
    with client_end, server_end:
        client_end.sendall(b"ab")  # three bytes short, and no more come
        with pytest.raises(RequestBodyTimeout):
            call_with_socket(middleware, server_end)


def test_a_finished_request_keeps_its_connection_after_the_time_is_up():
    """The next request on a kept-alive connection must still be readable."""
    middleware = RequestBodyDeadline(reading_app, seconds=0.2)
    client_end, server_end = socket.socketpair()
    with client_end, server_end:
        client_end.sendall(b"first")
        assert call_with_socket(middleware, server_end) == b"first"
        time.sleep(0.6)  # well past the first body's deadline
        client_end.sendall(b"again")
        server_end.settimeout(5)
        assert server_end.recv(5) == b"again"
