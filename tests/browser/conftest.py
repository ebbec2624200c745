"""A real headless Chromium against the real gunicorn, PostgreSQL and an S3 bucket."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import new_bucket
from ..servers import ROOT, flask_cli, gunicorn_server, postgres_database, unavailable

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
PASSWORD = "browser password 1"


@pytest.fixture(scope="session")
def site(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """gunicorn as in production: PostgreSQL, photos in a bucket, a real secret key."""
    with postgres_database() as database_url:
        env = {
            "DATABASE_URL": database_url,
            "BUCKET": new_bucket(s3_endpoint, f"diary-browser-{os.urandom(4).hex()}"),
            "S3_ENDPOINT_URL": s3_endpoint,
            "SECRET_KEY": "browser-" + os.urandom(16).hex(),
            "WEB_CONCURRENCY": "2",
            # The sign-up page is one of the pages to see.
            "ALLOW_SIGNUP": "true",
            "GUNICORN_LOG": str(tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"),
        }
        flask_cli(env, "db", "upgrade")
        with gunicorn_server(env) as base_url:
            yield {"url": base_url, "env": env, "s3": s3_endpoint}


@pytest.fixture
def account(site: dict) -> dict[str, str]:
    """A fresh account, created the way operators do: the CLI, password on stdin."""
    email = f"browser-{os.urandom(4).hex()}@example.com"
    flask_cli(site["env"], "users", "create", email, "--password-stdin", stdin=PASSWORD + "\n")
    return {"email": email, "password": PASSWORD}


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        unavailable(f"Chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright's Python package is not installed")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
        except Exception as error:  # Playwright raises its own Error type for a broken browser
            unavailable(f"Chromium did not start: {error}")
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots of this run only: the previous run's are removed first."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
