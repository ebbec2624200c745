"""Faults under load: PostgreSQL stopped and started, S3 that never answers."""

from __future__ import annotations

import os
import threading
import time

import pytest
import requests

from ..conftest import image_bytes, new_bucket
from ..servers import (
    flask_cli,
    gunicorn_server,
    private_postgres,
    service_env,
    silent_server,
)
from .conftest import PASSWORD, SECONDS, TOKEN, count_rows, seed_account, sign_in

pytestmark = pytest.mark.resilience
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html", "Accept-Language": "en"}
# The fault tests shorten the load phases: each phase is a fraction of the run.
PHASE = max(2.0, SECONDS / 4)


class Writer(threading.Thread):
    """Posts text entries until told to stop (or its bound), recording every answer."""

    def __init__(self, base: str, limit_seconds: float) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.deadline = time.monotonic() + limit_seconds
        self.acknowledged: list[int] = []
        self.answers: list[tuple[int, float, str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with requests.Session() as http:
            for number in range(20_000):
                if self.stopping.is_set() or time.monotonic() > self.deadline:
                    return
                started = time.monotonic()
                try:
                    answer = http.post(
                        f"{self.base}/api/v1/entries",
                        json={"text": f"w{number}"},
                        headers=AUTH,
                        timeout=15,
                    )
                except requests.RequestException:
                    self.answers.append((0, time.monotonic() - started, ""))
                    continue
                self.answers.append(
                    (
                        answer.status_code,
                        time.monotonic() - started,
                        answer.headers.get("Content-Type", ""),
                    )
                )
                if answer.status_code == 201:
                    self.acknowledged.append(answer.json()["id"])
                time.sleep(0.01)


def test_postgresql_stopped_during_load_fails_fast_with_503_and_recovers(s3_endpoint, report):
    with private_postgres() as postgres:
        env = service_env(
            postgres.url,
            s3_endpoint,
            new_bucket(s3_endpoint, f"diary-pg-{os.urandom(4).hex()}"),
            # Plain HTTP on loopback: let the browser's session cookie come back.
            SESSION_COOKIE_SECURE="false",
        )
        flask_cli(env, "db", "upgrade")
        seed_account(postgres.url)
        with gunicorn_server(env) as base, requests.Session() as browser:
            assert sign_in(browser, base, PASSWORD).status_code in (302, 303)
            writers = [Writer(base, limit_seconds=6 * PHASE + 60) for _ in range(4)]
            for writer in writers:
                writer.start()
            time.sleep(PHASE)
            postgres.stop()
            time.sleep(PHASE)
            down = requests.post(
                f"{base}/api/v1/entries", json={"text": "while down"}, headers=AUTH, timeout=15
            )
            down_seconds = down.elapsed.total_seconds()
            # A signed-in reader's page looks the user up first: that must be the 503 page too.
            page_down = browser.get(base, headers=HTML, allow_redirects=False, timeout=15)
            postgres.start()
            started_at = time.monotonic()
            recovered_at = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                probe = requests.get(f"{base}/api/v1/entries", headers=AUTH, timeout=15)
                if probe.status_code == 200:
                    recovered_at = time.monotonic()
                    break
                time.sleep(0.2)
            page_after = browser.get(base, headers=HTML, allow_redirects=False, timeout=15)
            time.sleep(PHASE)
            for writer in writers:
                writer.stopping.set()
            for writer in writers:
                writer.join(timeout=60)

        answers = [answer for writer in writers for answer in writer.answers]
        acknowledged = [entry_id for writer in writers for entry_id in writer.acknowledged]
        stored = count_rows(postgres.url, acknowledged)

    failed = [answer for answer in answers if answer[0] != 201]
    report(
        f"PostgreSQL stopped {PHASE:g} s under 4 writers: {len(answers)} answers,"
        f" {len(failed)} not 201 (statuses {sorted({a[0] for a in failed})}), slowest of those"
        f" {max((a[1] for a in failed), default=0) * 1000:.0f} ms; POST while down"
        f" {down.status_code} in {down_seconds * 1000:.0f} ms; first 200 "
        + (f"{recovered_at - started_at:.1f} s" if recovered_at else "never")
        + f" after start; {len(acknowledged)} acknowledged, {stored} in the database"
    )
    assert down.status_code == 503
    assert down.headers["Content-Type"].startswith("application/problem+json")
    assert "Retry-After" in down.headers
    assert down_seconds < 2.5
    assert page_down.status_code == 503, page_down.text[:300]
    assert page_down.headers["Content-Type"].startswith("text/html")
    assert "cannot reach its database" in page_down.text
    assert page_down.elapsed.total_seconds() < 2.5
    # Still signed in once the database is back: the outage ended no session.
    assert page_after.status_code == 200 and "Sign out" in page_after.text
    failures = [answer for answer in answers if answer[0] != 201]
    slow_or_wrong = [answer for answer in failures if answer[0] != 503 or answer[1] >= 2.5]
    assert not slow_or_wrong, (len(failures), slow_or_wrong[:10])
    assert recovered_at is not None, (
        "the service did not recover within 30 s of PostgreSQL starting"
    )
    assert stored == len(acknowledged) and acknowledged


def test_unreachable_s3_fails_photo_uploads_while_text_and_reads_keep_working(migrated, report):
    """S3 is a socket that accepts and never answers, for the whole load phase.

    Photo uploads, text writes and reads run side by side: the uploads must get
    a 503 problem within the S3 timeouts, while the text writes and reads,
    which need no storage, keep succeeding and keep their data.
    """
    with silent_server() as silent:
        env = {
            **migrated,
            "S3_ENDPOINT_URL": silent,
            "S3_CONNECT_TIMEOUT": "1",
            "S3_READ_TIMEOUT": "2",
            "S3_MAX_ATTEMPTS": "1",
            "READY_CHECK_TIMEOUT": "2",
        }
        photo = image_bytes()
        with gunicorn_server(env) as base:
            deadline = time.monotonic() + 2 * PHASE
            uploads: list[tuple[int, float, str]] = []
            reads: list[int] = []
            lock = threading.Lock()

            def upload_photos() -> None:
                with requests.Session() as http:
                    while time.monotonic() < deadline:
                        answer = http.post(
                            f"{base}/api/v1/entries",
                            data={"text": "with photo"},
                            files={"file": ("a.jpg", photo, "image/jpeg")},
                            headers=AUTH,
                            timeout=30,
                        )
                        with lock:
                            uploads.append(
                                (
                                    answer.status_code,
                                    answer.elapsed.total_seconds(),
                                    answer.headers.get("Content-Type", ""),
                                )
                            )

            def read() -> None:
                with requests.Session() as http:
                    while time.monotonic() < deadline:
                        answer = http.get(f"{base}/api/v1/entries", headers=AUTH, timeout=30)
                        with lock:
                            reads.append(answer.status_code)
                        time.sleep(0.01)

            writers = [Writer(base, limit_seconds=2 * PHASE) for _ in range(4)]
            others = [threading.Thread(target=upload_photos) for _ in range(4)]
            others += [threading.Thread(target=read) for _ in range(4)]
            for thread in [*writers, *others]:
                thread.start()
            time.sleep(PHASE)  # in the middle of the load
            ready = requests.get(f"{base}/readyz", timeout=30)
            healthy = requests.get(f"{base}/healthz", timeout=30)
            for thread in [*writers, *others]:
                thread.join(timeout=60)

        written = [answer for writer in writers for answer in writer.answers]
        acknowledged = [entry_id for writer in writers for entry_id in writer.acknowledged]
        stored = count_rows(migrated["DATABASE_URL"], acknowledged)

    report(
        f"S3 silent for {2 * PHASE:g} s: {len(uploads)} photo uploads, statuses"
        f" {sorted({u[0] for u in uploads})}, slowest {max(u[1] for u in uploads) * 1000:.0f} ms;"
        f" {len(written)} text writes, statuses {sorted({w[0] for w in written})},"
        f" {stored} of {len(acknowledged)} acknowledged in the database; {len(reads)} reads,"
        f" statuses {sorted(set(reads))}; /readyz {ready.status_code}, /healthz"
        f" {healthy.status_code}"
    )
    assert uploads
    assert all(status == 503 for status, _, _ in uploads), uploads
    assert all(kind.startswith("application/problem+json") for _, _, kind in uploads)
    # Connect 1 s + read 2 s, one attempt: well under the platforms' 120 s cut-off.
    assert max(seconds for _, seconds, _ in uploads) < 10
    assert written and all(status == 201 for status, _, _ in written), written[:10]
    # Not just answered at the end: uploads waiting on S3 once held every thread of a
    # worker, and each writer got 2 entries in during the whole phase.
    assert len(written) >= 4 * 4, len(written)
    assert stored == len(acknowledged)
    assert reads and all(status == 200 for status in reads)
    assert ready.status_code == 503
    assert "storage" in ready.text
    assert healthy.status_code == 200
