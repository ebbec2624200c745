"""Faults under load: PostgreSQL stopped and started, S3 that never answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import requests

from ..conftest import image_bytes, new_bucket
from ..servers import free_port, gunicorn_server, silent_server, unavailable
from .conftest import SECONDS, TOKEN, count_rows, flask_cli, seed_account, service_env

pytestmark = pytest.mark.resilience
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# The fault tests shorten the load phases: each phase is a fraction of the run.
PHASE = max(2.0, SECONDS / 4)


class PrivatePostgres:
    """A PostgreSQL of our own in a temp dir on a free loopback port.

    Stopping the machine's shared cluster would break everyone else's tests, so
    this one is ours to stop and start. PostgreSQL refuses to run as root: as
    root, the server runs as the `postgres` OS user.
    """

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="diary-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )

    def start(self) -> None:
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-t",
            "30",
            "-l",
            str(self.directory / "log"),
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def remove(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        unavailable(f"no PostgreSQL 15 binaries in {PG_BIN}")
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


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


def test_postgresql_stopped_during_load_fails_fast_with_503_and_recovers(s3_endpoint):
    with private_postgres() as postgres:
        env = service_env(
            postgres.url, s3_endpoint, new_bucket(s3_endpoint, f"diary-pg-{os.urandom(4).hex()}")
        )
        flask_cli(env, "db", "upgrade")
        seed_account(postgres.url)
        with gunicorn_server(env) as base:
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
            postgres.start()
            recovered_at = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                probe = requests.get(f"{base}/api/v1/entries", headers=AUTH, timeout=15)
                if probe.status_code == 200:
                    recovered_at = time.monotonic()
                    break
                time.sleep(0.2)
            time.sleep(PHASE)
            for writer in writers:
                writer.stopping.set()
            for writer in writers:
                writer.join(timeout=60)

        answers = [answer for writer in writers for answer in writer.answers]
        acknowledged = [entry_id for writer in writers for entry_id in writer.acknowledged]
        stored = count_rows(postgres.url, acknowledged)

    assert down.status_code == 503
    assert down.headers["Content-Type"].startswith("application/problem+json")
    assert "Retry-After" in down.headers
    assert down_seconds < 2.5
    failures = [answer for answer in answers if answer[0] != 201]
    slow_or_wrong = [answer for answer in failures if answer[0] != 503 or answer[1] >= 2.5]
    assert not slow_or_wrong, (len(failures), slow_or_wrong[:10])
    assert recovered_at is not None, (
        "the service did not recover within 30 s of PostgreSQL starting"
    )
    assert stored == len(acknowledged) and acknowledged


def test_unreachable_s3_fails_photo_uploads_while_text_and_reads_keep_working(migrated):
    with silent_server() as silent:
        env = {
            **migrated,
            "S3_ENDPOINT_URL": silent,
            "S3_CONNECT_TIMEOUT": "1",
            "S3_READ_TIMEOUT": "2",
            "S3_MAX_ATTEMPTS": "1",
            "READY_CHECK_TIMEOUT": "2",
        }
        with gunicorn_server(env) as base:
            photo = requests.post(
                f"{base}/api/v1/entries",
                data={"text": "with photo"},
                files={"file": ("a.jpg", image_bytes(), "image/jpeg")},
                headers=AUTH,
                timeout=30,
            )
            text_only = requests.post(
                f"{base}/api/v1/entries", json={"text": "words only"}, headers=AUTH, timeout=30
            )
            listing = requests.get(f"{base}/api/v1/entries", headers=AUTH, timeout=30)
            ready = requests.get(f"{base}/readyz", timeout=30)
            healthy = requests.get(f"{base}/healthz", timeout=30)

    assert photo.status_code == 503
    assert photo.headers["Content-Type"].startswith("application/problem+json")
    assert photo.elapsed.total_seconds() < 10
    assert text_only.status_code == 201
    assert listing.status_code == 200
    assert ready.status_code == 503
    assert "storage" in ready.text
    assert healthy.status_code == 200
