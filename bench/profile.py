"""Where diary's CPU goes per request: `python -m bench.profile [scenario ...]`.

In-process against a fresh PostgreSQL database seeded as the bench seeds it (moto S3
for storage): the WSGI app is called directly, as gunicorn calls it, with request
environments built before the clock starts, so neither an HTTP server, a load
generator nor a test client's own work is in the figures. For each scenario
(post_text, timeline, get, api_page, and healthz, the floor every request pays): CPU
milliseconds and SQL statements per request without a profiler (time.process_time over
PROFILE_REQUESTS requests after a warm-up), then the same requests under cProfile timed
by CPU, printed by PROFILE_SORT (cumulative time unless told), PROFILE_TOP lines, and
written to PROFILE_DUMP/<scenario>.prof when PROFILE_DUMP names a folder. cProfile adds
a cost to every Python call, so read its figures as shares, not milliseconds.

One thread and no gunicorn: what gunicorn adds (its HTTP parsing, the request body
deadline, which steps aside without gunicorn's socket) is only in `make bench`.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import boto3
import sqlalchemy as sa
from flask import Flask
from werkzeug.test import EnvironBuilder

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
TOP = int(os.environ.get("PROFILE_TOP", "40"))
DUMP = os.environ.get("PROFILE_DUMP")  # a folder: each scenario's stats as <name>.prof
WARM_UP = 30


def call(app: Flask, environ: dict[str, Any]) -> int:
    """One request through the WSGI app, its body consumed (GET / streams); the status."""
    status: list[str] = []

    def start_response(line: str, headers: list, exc_info: object = None) -> None:
        status.append(line)

    body: Iterable[bytes] = app(environ, start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return int(status[0].split()[0])


def session_cookie(app: Flask) -> str:
    """Sign user 1 in through the pages, as a browser would; the Cookie header."""
    client = app.test_client()
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
    if answer.status_code not in (302, 303):
        raise RuntimeError(f"signing in failed: HTTP {answer.status_code}")
    cookie = client.get_cookie("session")
    if cookie is None:
        raise RuntimeError("signing in set no session cookie")
    return f"session={cookie.value}"


def environments(cookie: str) -> dict[str, Callable[[], dict[str, Any]]]:
    """A fresh WSGI environment for each scenario, as the bench's wrk sends them."""

    def post_text() -> dict[str, Any]:
        return EnvironBuilder(
            path="/",
            method="POST",
            headers=bearer(POST_USER),
            data={"text": "A text-only entry"},
        ).get_environ()

    def timeline() -> dict[str, Any]:
        return EnvironBuilder(
            path="/", headers={"Cookie": cookie, "Accept": "text/html"}
        ).get_environ()

    def legacy_get() -> dict[str, Any]:
        return EnvironBuilder(path="/", headers=bearer(PAGE_USER)).get_environ()

    def api_page() -> dict[str, Any]:
        return EnvironBuilder(
            path="/api/v1/entries", query_string="limit=20", headers=bearer(PAGE_USER)
        ).get_environ()

    def healthz() -> dict[str, Any]:
        # The floor: what every request pays before its view does anything.
        return EnvironBuilder(path="/healthz").get_environ()

    return {
        "post_text": post_text,
        "timeline": timeline,
        "get": legacy_get,
        "api_page": api_page,
        "healthz": healthz,
    }


def run(
    app: Flask,
    make: Callable[[], dict[str, Any]],
    count: int,
    profiler: cProfile.Profile | None = None,
) -> float:
    """CPU seconds for `count` requests; the environments are built first, off the clock."""
    prepared = [make() for _ in range(count)]
    for environ in prepared:
        # The body stream is read once; keep it in memory so building it costs nothing later.
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read())
    if profiler is not None:
        profiler.enable()
    started = time.process_time()
    for environ in prepared:
        status = call(app, environ)
        if status != 200:
            raise RuntimeError(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}: {status}")
    spent = time.process_time() - started
    if profiler is not None:
        profiler.disable()
    return spent


def main(argv: list[str]) -> int:
    wanted = argv or ["post_text", "timeline", "get", "api_page"]
    # The app's request log lines are still made and written, as under gunicorn,
    # but to /dev/null rather than between the figures.
    report, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115
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
        makers = environments(session_cookie(app))
        with app.app_context():
            engine = app.extensions["sqlalchemy"].engine
        statements = [0]

        def count(*_: object) -> None:
            statements[0] += 1

        # Every statement sent, cursor by cursor (COMMIT and ROLLBACK are not cursors).
        sa.event.listen(engine, "before_cursor_execute", count)
        for name in wanted:
            make = makers[name]
            run(app, make, WARM_UP)
            statements[0] = 0
            plain = run(app, make, REQUESTS) * 1000 / REQUESTS
            per_request = statements[0] / REQUESTS
            # Timed by CPU, not wall time: waiting on PostgreSQL is not what is being split.
            profiler = cProfile.Profile(time.process_time)
            profiled = run(app, make, REQUESTS, profiler) * 1000 / REQUESTS
            print(
                f"\n=== {name}: {plain:.2f} ms CPU per request"
                f" ({profiled:.2f} ms under cProfile), {per_request:g} SQL statements"
                f" per request, {REQUESTS} requests",
                file=report,
                flush=True,
            )
            if DUMP:
                profiler.dump_stats(Path(DUMP) / f"{name}.prof")
            stats = pstats.Stats(profiler, stream=report)
            stats.sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(TOP)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
