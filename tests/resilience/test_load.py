"""Mixed load and contention against the real gunicorn: no 5xx, no lost acknowledged write."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ..servers import gunicorn_server
from .conftest import SECONDS, TOKEN, count_rows

pytestmark = pytest.mark.resilience
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONNECTIONS = 64
MAX_REQUESTS_PER_CONNECTION = 2_000


def test_mixed_read_write_load_at_64_connections_loses_no_acknowledged_write(migrated, report):
    with gunicorn_server(migrated) as base:
        deadline = time.monotonic() + SECONDS
        acknowledged: list[int] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()

        def client(number: int) -> None:
            with requests.Session() as http:
                for step in range(MAX_REQUESTS_PER_CONNECTION):
                    if time.monotonic() > deadline:
                        return
                    if step % 2:
                        answer = http.get(
                            f"{base}/api/v1/entries?limit=20", headers=AUTH, timeout=30
                        )
                    else:
                        answer = http.post(
                            f"{base}/api/v1/entries",
                            json={"text": f"load {number}-{step}"},
                            headers=AUTH,
                            timeout=30,
                        )
                        if answer.status_code == 201:
                            with lock:
                                acknowledged.append(answer.json()["id"])
                    with lock:
                        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        with ThreadPoolExecutor(CONNECTIONS) as pool:
            list(pool.map(client, range(CONNECTIONS)))

    stored = count_rows(migrated["DATABASE_URL"], acknowledged)
    report(
        f"mixed load, {CONNECTIONS} connections: {sum(statuses.values())} answers"
        f" {dict(sorted(statuses.items()))}; {len(acknowledged)} acknowledged writes,"
        f" {stored} of them in the database"
    )
    assert not [status for status in statuses if status >= 500], statuses
    assert acknowledged, statuses
    assert stored == len(acknowledged)


def test_fifty_concurrent_edits_of_one_entry_end_in_one_of_the_writes(migrated, report):
    with gunicorn_server(migrated) as base:
        created = requests.post(
            f"{base}/api/v1/entries", json={"text": "original"}, headers=AUTH, timeout=30
        )
        entry_url = f"{base}/api/v1/entries/{created.json()['id']}"
        texts = [f"edit number {n}" for n in range(50)]
        barrier = threading.Barrier(50, timeout=30)

        def edit(text: str) -> int:
            barrier.wait()
            return requests.patch(
                entry_url, json={"text": text}, headers=AUTH, timeout=30
            ).status_code

        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(edit, texts))
        final = requests.get(entry_url, headers=AUTH, timeout=30).json()["text"]

    counts = {status: statuses.count(status) for status in sorted(set(statuses))}
    report(f"50 concurrent edits of one entry: answers {counts}; final text {final!r}")
    assert 500 not in statuses and all(status < 500 for status in statuses), statuses
    assert final in texts
