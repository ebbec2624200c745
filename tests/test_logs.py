"""Logs are JSON lines on stdout: one per request, errors with tracebacks, never a secret."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import request

from diary import create_app
from diary.accounts import create_user
from diary.infra.logs import redact
from diary.models import User

from .servers import free_port, gunicorn_server

PASSWORD = "correct horse battery"
TRACE_ROOT = "1-67891233-abcdef012345678912345678"


def log_lines(captured: str) -> list[dict[str, Any]]:
    """Every line written must be a JSON object; return them parsed."""
    lines = [line for line in captured.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def request_lines(captured: str, path: str) -> list[dict[str, Any]]:
    return [
        line
        for line in log_lines(captured)
        if line["logger"] == "diary.request" and line["path"] == path
    ]


def test_one_json_line_per_request_with_method_path_status_duration_and_user(
    client, auth, user, capsys
):
    capsys.readouterr()

    response = client.get("/api/v1/entries?q=secret-query", headers=auth)

    [line] = request_lines(capsys.readouterr().out, "/api/v1/entries")
    assert line["level"] == "INFO"
    assert (line["method"], line["status"], line["user_id"]) == ("GET", 200, user.id)
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["X-Request-Id"]
    assert "secret-query" not in json.dumps(line)  # the query string is not logged


def test_anonymous_requests_log_no_user(client, capsys):
    capsys.readouterr()

    client.get("/api/v1/entries")

    [line] = request_lines(capsys.readouterr().out, "/api/v1/entries")
    assert (line["status"], line["user_id"]) == (401, None)


def test_a_signed_in_browser_is_logged_with_its_user(client, user, capsys):
    client.post("/login", data={"email": user.email, "password": PASSWORD})
    capsys.readouterr()

    client.get("/settings")

    lines = request_lines(capsys.readouterr().out, "/settings")
    assert [line["user_id"] for line in lines] == [user.id]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Request-Id": "abc-123"}, "abc-123"),
        (
            {"X-Amzn-Trace-Id": f"Root={TRACE_ROOT};Parent=53995c3f;Sampled=1"},
            TRACE_ROOT,
        ),
        (
            {"X-Request-Id": "given-wins", "X-Amzn-Trace-Id": "Root=1-67891233-abcdef0123"},
            "given-wins",
        ),
    ],
)
def test_the_request_id_comes_from_the_caller_or_the_platform_and_is_echoed(
    client, capsys, headers, expected
):
    capsys.readouterr()

    response = client.get("/api/v1/entries", headers=headers)

    assert response.headers["X-Request-Id"] == expected
    [line] = request_lines(capsys.readouterr().out, "/api/v1/entries")
    assert line["request_id"] == expected


@pytest.mark.parametrize(
    "given", [None, "", "has spaces", "<script>", "x" * 500, '{"json": "injection"}']
)
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_generated_one(client, capsys, given):
    headers = {} if given is None else {"X-Request-Id": given}
    capsys.readouterr()

    response = client.get("/api/v1/entries", headers=headers)

    generated = response.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    [line] = request_lines(capsys.readouterr().out, "/api/v1/entries")
    assert line["request_id"] == generated


def test_successful_liveness_probes_are_not_logged_but_everything_else_is(client, capsys):
    capsys.readouterr()

    client.get("/healthz")
    client.get("/readyz")

    out = capsys.readouterr().out
    assert request_lines(out, "/healthz") == []
    assert len(request_lines(out, "/readyz")) == 1


def test_an_error_is_logged_once_with_its_traceback_and_the_request_id(app, capsys):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production, not as under TESTING

    @app.get("/boom-for-test")
    def boom() -> str:
        raise RuntimeError("kaboom in a view")

    capsys.readouterr()

    response = app.test_client().get("/boom-for-test", headers={"X-Request-Id": "req-err-1"})

    assert response.status_code == 500
    lines = log_lines(capsys.readouterr().out)
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert error["error"] == "RuntimeError"
    assert "Traceback (most recent call last)" in error["traceback"]
    assert "kaboom in a view" in error["traceback"]
    assert error["request_id"] == "req-err-1"
    [request_line] = request_lines("\n".join(json.dumps(line) for line in lines), "/boom-for-test")
    assert (request_line["status"], request_line["request_id"]) == (500, "req-err-1")


def test_secrets_sent_to_the_app_never_reach_the_log(app, user, make_token, capsys):
    """Even a careless view that logs headers, form and config leaks nothing."""
    token = make_token(user)
    cookie_value = "session-cookie-value-" + os.urandom(8).hex()
    database_password = "db-pass-" + os.urandom(8).hex()
    careless = logging.getLogger("diary.careless")
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.post("/careless-for-test")
    def careless_view() -> str:
        careless.warning("headers %s", dict(request.headers))
        careless.warning("form %s", request.form.to_dict())
        careless.warning("json form %s", json.dumps(request.form.to_dict()))
        raise RuntimeError(f"could not connect to postgresql://diary:{database_password}@db/diary")

    client = app.test_client()
    client.set_cookie("session", cookie_value)
    capsys.readouterr()

    client.post(
        "/careless-for-test",
        data={"email": user.email, "password": PASSWORD},
        headers={"Authorization": f"Bearer {token}", "Cookie": f"session={cookie_value}"},
    )
    client.post("/login", data={"email": user.email, "password": PASSWORD})
    client.get("/api/v1/entries", headers={"Authorization": f"Bearer {token}"})

    out = capsys.readouterr().out
    assert log_lines(out)  # something was logged, and it is all JSON
    assert "careless" in out and "Traceback" in out
    for secret in (token, cookie_value, PASSWORD, database_password):
        assert secret not in out


def test_a_failed_sign_up_logs_neither_the_password_hash_nor_the_statements_parameters(
    app_with, capsys
):
    app = app_with(ALLOW_SIGNUP=True, PROPAGATE_EXCEPTIONS=False)
    with app.app_context():
        taken_id = create_user("first@example.com", PASSWORD).id
    new_email = f"new-{os.urandom(4).hex()}@example.com"

    def reuse_an_id(_mapper: Any, _connection: Any, new_user: User) -> None:
        new_user.id = taken_id  # the INSERT fails in the database, with its parameters

    sa.event.listen(User, "before_insert", reuse_an_id)
    capsys.readouterr()
    try:
        response = app.test_client().post(
            "/signup",
            data={"email": new_email, "password": PASSWORD, "confirm": PASSWORD},
            headers={"Accept": "text/html"},
        )
    finally:
        sa.event.remove(User, "before_insert", reuse_an_id)

    assert response.status_code == 500
    out = capsys.readouterr().out
    [error] = [line for line in log_lines(out) if line["level"] == "ERROR"]
    assert "IntegrityError" in error["traceback"] or "UniqueViolation" in error["traceback"]
    for leaked in (new_email, "scrypt:", "pbkdf2:", "password_hash':", "[parameters:"):
        assert leaked not in out


def test_a_line_quoting_a_lone_surrogate_is_still_written(app, capsys):
    # A client's JSON "\ud800" quoted in a message failed the UTF-8 stream: the line was lost.
    logging.getLogger("diary.test").warning("refused %s", "entry \ud800")

    [line] = [line for line in log_lines(capsys.readouterr().out) if line["logger"] == "diary.test"]
    assert line["message"] == "refused entry \ufffd"


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        ("connect to postgresql://diary:hunter2pw@db/diary", "hunter2pw"),
        (
            "[parameters: {'email': 'a@example.com', 'password_hash': 'scrypt:32768:8:1$Zk$9f0a'}]",
            "Zk$9f0a",
        ),
        ('{"password_hash": "opaque-hash-value"}', "opaque-hash-value"),
        ("hash scrypt:32768:8:1$Zk3fsalt$9f0a1b2c3d", "Zk3fsalt$9f0a1b2c3d"),
        ("PBKDF2:sha256:600000$salt1234$0123abcdef", "salt1234$0123abcdef"),
        ("Authorization: Bearer tok-abc-123", "tok-abc-123"),
        ("authorization: BEARER tok-abc-123", "tok-abc-123"),
        ("{'Cookie': 'session=cookie-xyz'}", "cookie-xyz"),
        ("SET-COOKIE: session=cookie-xyz", "cookie-xyz"),
        ("{'password': 'pw-123456'}", "pw-123456"),
        ("PASSWD=pw-123456", "pw-123456"),
        ("client_secret: sec-123456", "sec-123456"),
        ("Token=tok-123456", "tok-123456"),
        ("日記の写真 Bearer tok-abc-123", "tok-abc-123"),  # non-ASCII lines take the patterns
    ],
)
def test_redact_masks_every_credential_pattern_in_any_case(line: str, hidden: str):
    masked = redact(line)
    assert hidden not in masked
    assert "***" in masked


@pytest.mark.parametrize(
    "line",
    [
        '{"message": "GET /api/v1/entries 200", "status": 200, "user_id": 1}',
        "日記 /entries/12 200",
    ],
)
def test_redact_leaves_lines_without_credentials_as_they_are(line: str):
    assert redact(line) == line


def test_the_database_password_from_db_secret_never_reaches_the_log(
    monkeypatch, tmp_path: Path, capsys
):
    password = "pw-from-secret-" + os.urandom(6).hex()
    secret = {"username": "diary", "password": password, "host": "127.0.0.1", "port": free_port()}
    monkeypatch.setenv("DB_SECRET", json.dumps(secret))
    # Nothing listens there: no certificate to verify (verify-full would need a CA bundle).
    monkeypatch.setenv("DB_SSLMODE", "require")
    monkeypatch.setenv("SECRET_KEY", "key-" + os.urandom(16).hex())
    app = create_app({"LOCAL_STORAGE_DIR": str(tmp_path)})

    # A token lookup against the unreachable database fails, and the failure is logged.
    response = app.test_client().get(
        "/api/v1/entries", headers={"Authorization": "Bearer whatever"}
    )

    out = capsys.readouterr().out
    assert response.status_code == 503
    assert "host=127.0.0.1" in out and "database unavailable" in out
    assert password not in out
    assert os.environ["SECRET_KEY"] not in out


def test_gunicorn_writes_only_json_lines_and_no_duplicate_access_log(tmp_path: Path):
    log_path = tmp_path / "gunicorn.log"
    password = "gunicorn-db-pw-" + os.urandom(6).hex()
    env = {
        "DB_SECRET": json.dumps(
            {"username": "diary", "password": password, "host": "127.0.0.1", "port": free_port()}
        ),
        "DB_SSLMODE": "require",  # nothing listens there, so no certificate to verify
        "SECRET_KEY": "e2e-" + os.urandom(16).hex(),
        "LOCAL_STORAGE_DIR": str(tmp_path / "photos"),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_LOG": str(log_path),
    }
    with gunicorn_server(env) as url:
        response = requests.get(
            url + "/api/v1/entries",
            headers={"Authorization": "Bearer tok-abc-123456", "Cookie": "session=cookie-xyz-987"},
            timeout=20,
        )
        assert response.status_code == 503  # the database is unreachable
        request_id = response.headers["X-Request-Id"]

    text = log_path.read_text()
    lines = log_lines(text)
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    mentions = [line for line in lines if line.get("path") == "/api/v1/entries"]
    assert [line["request_id"] for line in mentions] == [request_id]  # one line, not two
    for secret in (password, "tok-abc-123456", "cookie-xyz-987", env["SECRET_KEY"]):
        assert secret not in text
