"""End to end: the real gunicorn, production-like settings, PostgreSQL and S3, over HTTP."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from PIL import Image as PILImage

from .conftest import image_bytes, new_bucket
from .servers import (
    flask_cli,
    gunicorn_server,
    listening_workers,
    postgres_database,
    sockets_on_port,
)


@pytest.fixture(scope="module")
def production(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """gunicorn serving a migrated database and a bucket, with an account and a token."""
    with postgres_database() as database_url:
        env = {
            "DATABASE_URL": database_url,
            "BUCKET": new_bucket(s3_endpoint, "diary-e2e"),
            "S3_ENDPOINT_URL": s3_endpoint,
            "SECRET_KEY": "e2e-" + os.urandom(16).hex(),
            "WEB_CONCURRENCY": "2",
            "GUNICORN_LOG": str(tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"),
        }
        flask_cli(env, "db", "upgrade")
        flask_cli(
            env, "users", "create", "e2e@example.com", "--password-stdin", stdin="e2e password\n"
        )
        token = flask_cli(env, "tokens", "create", "e2e@example.com", "--name", "curl").split()[-1]
        with gunicorn_server(env) as base_url:
            yield {"url": base_url, "token": token, "env": env}


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_curl_multipart_upload_to_root_and_list_back(production, tmp_path: Path):
    photo = tmp_path / "dinner.jpg"
    photo.write_bytes(image_bytes(size=(120, 80)))
    auth = f"Authorization: Bearer {production['token']}"

    posted = curl(
        "-H",
        auth,
        "-F",
        "text=今日は朝からランニングをした",
        "-F",
        f"file=@{photo}",
        production["url"] + "/",
    )

    assert posted.returncode == 0, posted.stderr
    entry = json.loads(posted.stdout)
    assert list(entry) == ["ID", "CreatedAt", "UpdatedAt", "DeletedAt", "Text", "Img"]
    assert entry["Text"] == "今日は朝からランニングをした"

    listed = curl("-H", auth, production["url"] + "/")
    assert [e["ID"] for e in json.loads(listed.stdout)] == [entry["ID"]]

    s3 = boto3.client(
        "s3", endpoint_url=production["env"]["S3_ENDPOINT_URL"], region_name="ap-northeast-1"
    )
    stored = s3.get_object(Bucket=production["env"]["BUCKET"], Key=entry["Img"])
    assert PILImage.open(io.BytesIO(stored["Body"].read())).size == (120, 80)


def test_api_over_http_with_presigned_photo_urls(production):
    headers = {"Authorization": f"Bearer {production['token']}"}
    photo = image_bytes(size=(50, 50))

    created = requests.post(
        production["url"] + "/api/v1/entries",
        data={"text": "via the API"},
        files={"file": ("p.jpg", photo, "image/jpeg")},
        headers=headers,
        timeout=20,
    )
    assert created.status_code == 201
    url = created.json()["images"][0]["url"]
    fetched = requests.get(url, timeout=10)
    assert fetched.status_code == 200
    assert PILImage.open(io.BytesIO(fetched.content)).size == (50, 50)

    listed = requests.get(production["url"] + "/api/v1/entries", headers=headers, timeout=10)
    assert listed.json()["items"][0]["text"] == "via the API"


def test_errors_over_http_are_problem_json(production):
    response = requests.get(production["url"] + "/api/v1/entries", timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_keep_alive_connections_opened_at_once_are_spread_over_both_workers(production):
    """A proxy opens its pool of keep-alive connections in one burst. With one
    shared listening socket, whichever worker woke first took nearly all of them
    and the other core idled (the bench saw half the rate in such runs); with
    reuse_port each worker has its own socket and the kernel splits the burst."""
    port = int(production["url"].rsplit(":", 1)[1])
    workers = listening_workers(port, expected=2)

    burst = [socket.socket() for _ in range(48)]
    try:
        for connection in burst:
            connection.setblocking(False)
            connection.connect_ex(("127.0.0.1", port))
        request = b"GET /healthz HTTP/1.1\r\nHost: diary\r\n\r\n"
        for connection in burst:
            connection.setblocking(True)
            connection.settimeout(10)
            connection.sendall(request)
        for connection in burst:
            assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        held = [sockets_on_port(pid, port) for pid in workers]
    finally:
        for connection in burst:
            connection.close()

    assert sum(held) == len(burst)
    # An even split is 24/24; a fair coin per connection gives fewer than 10 on
    # one side in one burst in 65,000.
    assert min(held) >= 10, held
