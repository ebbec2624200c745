"""Where diary's CPU goes per request: `python -m bench.profile [scenario ...]`.

In-process with Flask's test client against a fresh PostgreSQL database seeded as
the bench seeds it (moto S3 for storage), so no HTTP server and no load generator
share the measurement. For each scenario: CPU milliseconds per request without a
profiler (time.process_time over PROFILE_REQUESTS requests after a warm-up), then
the same under cProfile, printed by cumulative and by own time. cProfile adds its
own cost to every Python call, so read its figures as shares, not as milliseconds.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import sys
import time
from collections.abc import Callable

import boto3
from flask.testing import FlaskClient

from bench.run import (
    PAGE_USER,
    PASSWORD,
    POST_USER,
    bearer,
    seed_entries,
    seed_users,
)
from tests.servers import flask_cli, moto_s3_server, postgres_database, service_env

REQUESTS = int(os.environ.get("PROFILE_REQUESTS", "300"))
TOP = int(os.environ.get("PROFILE_TOP", "35"))


def scenarios(client: FlaskClient) -> dict[str, Callable[[], object]]:
    def post_text() -> object:
        answer = client.post("/", data={"text": "A text-only entry"}, headers=bearer(POST_USER))
        assert answer.status_code == 200, answer.data
        return answer

    def timeline() -> object:
        answer = client.get("/", headers={"Accept": "text/html"})
        assert answer.status_code == 200, answer.status_code
        return answer

    def legacy_get() -> object:
        answer = client.get("/", headers=bearer(PAGE_USER))
        assert answer.status_code == 200, answer.status_code
        answer.get_data()  # the body is streamed: make it
        return answer

    def api_page() -> object:
        answer = client.get("/api/v1/entries?limit=20", headers=bearer(PAGE_USER))
        assert answer.status_code == 200, answer.status_code
        return answer

    return {
        "post_text": post_text,
        "timeline": timeline,
        "get": legacy_get,
        "api_page": api_page,
    }


def sign_in(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page
    )
    answer = client.post(
        "/login",
        data={
            "csrf_token": match.group(1) if match else "",
            "email": f"user{PAGE_USER}@bench.example",
            "password": PASSWORD,
        },
    )
    assert answer.status_code in (302, 303), answer.status_code


def main(argv: list[str]) -> int:
    wanted = argv or ["post_text", "timeline", "get", "api_page"]
    with moto_s3_server() as s3, postgres_database() as database_url:
        bucket = "diary-profile"
        boto3.client(
            "s3",
            endpoint_url=s3,
            region_name="ap-northeast-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106  (moto)
        ).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"}
        )
        env = service_env(
            database_url,
            s3,
            bucket,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106  (moto)
            SESSION_COOKIE_SECURE="false",
        )
        flask_cli(env, "db", "upgrade")
        seed_users(database_url)
        seed_entries(database_url, 1000)
        os.environ.update(env)
        from diary import create_app

        app = create_app()
        client = app.test_client()
        sign_in(client)
        runs = scenarios(client)
        for name in wanted:
            run = runs[name]
            for _ in range(30):
                run()
            started = time.process_time()
            for _ in range(REQUESTS):
                run()
            plain = (time.process_time() - started) * 1000 / REQUESTS
            # CPU time, not wall time: waiting on PostgreSQL is not what is being split.
            profiler = cProfile.Profile(time.process_time)
            started = time.process_time()
            profiler.enable()
            for _ in range(REQUESTS):
                run()
            profiler.disable()
            profiled = (time.process_time() - started) * 1000 / REQUESTS
            print(
                f"\n=== {name}: {plain:.2f} ms CPU per request"
                f" ({profiled:.2f} ms under cProfile), {REQUESTS} requests"
            )
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("cumulative").print_stats(TOP)
            stats.sort_stats("tottime").print_stats(TOP)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
