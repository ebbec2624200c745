"""Fixtures for the resilience suite: a real gunicorn on PostgreSQL and S3, seeded with SQL.

Every load loop is bounded by RESILIENCE_SECONDS (10 in `make test`, 60 in
`make resilience`) and by a request count, and talks to loopback only.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator

import psycopg
import pytest
import requests

from ..conftest import new_bucket
from ..servers import flask_cli, service_env

SECONDS = float(os.environ.get("RESILIENCE_SECONDS", "10"))
PASSWORD = "resilience password"
TOKEN = "resilience-token-0123456789abcdef0123456789"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "resilience: load, faults and hostile input against real servers"
    )


# What the tests counted, printed after the run (docs/resilience.md records them).
FIGURES: list[str] = []


@pytest.fixture
def report() -> Callable[[str], None]:
    """Record one line of figures for the summary at the end of the run."""
    return FIGURES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section(f"resilience figures (RESILIENCE_SECONDS={SECONDS:g})")
        for line in FIGURES:
            terminalreporter.write_line(line)


def seed_account(database_url: str, email: str = "load@example.com") -> None:
    """One account and one API token, inserted with SQL (the CLI is not under test here)."""
    from werkzeug.security import generate_password_hash

    with psycopg.connect(database_url, autocommit=True) as db:
        user_id = db.execute(
            "INSERT INTO users (email, password_hash, display_name, created_at)"
            " VALUES (%s, %s, '', now()) RETURNING id",
            (email, generate_password_hash(PASSWORD)),
        ).fetchone()[0]
        db.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at)"
            " VALUES (%s, 'load', %s, now())",
            (user_id, hashlib.sha256(TOKEN.encode()).hexdigest()),
        )


@pytest.fixture
def migrated(s3_endpoint: str) -> Iterator[dict[str, str]]:
    """A migrated database with one account, and a fresh bucket on the moto server."""
    from ..servers import postgres_database

    with postgres_database() as database_url:
        env = service_env(
            database_url, s3_endpoint, new_bucket(s3_endpoint, f"diary-res-{os.urandom(4).hex()}")
        )
        flask_cli(env, "db", "upgrade")
        seed_account(database_url)
        yield env


def count_rows(database_url: str, ids: list[int]) -> int:
    with psycopg.connect(database_url) as db:
        return db.execute("SELECT count(*) FROM entries WHERE id = ANY(%s)", (ids,)).fetchone()[0]


def csrf_token(http: requests.Session, base: str) -> str:
    page = http.get(f"{base}/login", timeout=10).text
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page
    )
    assert match, "no CSRF token on the sign-in page"
    return match.group(1)


def sign_in(http: requests.Session, base: str, password: str) -> requests.Response:
    return http.post(
        f"{base}/login",
        data={
            "csrf_token": csrf_token(http, base),
            "email": "load@example.com",
            "password": password,
        },
        allow_redirects=False,
        timeout=10,
    )
