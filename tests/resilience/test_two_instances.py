"""Two gunicorn instances sharing the database, the bucket and Redis."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import requests

from ..servers import free_port, gunicorn_server, unavailable, wait_for_port
from .conftest import PASSWORD, sign_in

pytestmark = pytest.mark.resilience


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def two_instances(migrated) -> Iterator[tuple[str, str]]:
    with redis_server() as redis_url, ExitStack() as stack:
        # Plain HTTP on loopback, no TLS proxy in front: let the client send the cookie back.
        env = {**migrated, "RATELIMIT_STORAGE_URI": redis_url, "SESSION_COOKIE_SECURE": "false"}
        first = stack.enter_context(gunicorn_server(env))
        second = stack.enter_context(gunicorn_server(env))
        yield first, second


def test_a_session_made_on_one_instance_works_on_the_other(two_instances):
    first, second = two_instances
    with requests.Session() as browser:
        assert sign_in(browser, first, PASSWORD).status_code in (302, 303)
        timeline = browser.get(
            f"{second}/", headers={"Accept": "text/html"}, allow_redirects=False, timeout=10
        )
    assert timeline.status_code == 200
    assert "/login" not in timeline.headers.get("Location", "")


def test_sign_in_throttling_counts_failures_across_both_instances(two_instances):
    first, second = two_instances
    statuses = []
    with requests.Session() as browser:
        # Alternate instances: a per-process counter would never reach the limit.
        for attempt in range(24):
            base = first if attempt % 2 else second
            statuses.append(sign_in(browser, base, "wrong password").status_code)
    assert 429 in statuses, statuses
    assert statuses.index(429) <= 20, statuses
