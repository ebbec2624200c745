"""End to end: the real gunicorn, production-like settings, PostgreSQL and S3, over HTTP."""

from __future__ import annotations

import io
import json
import os
import runpy
import socket
import subprocess
import sys
import time
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


# --- gunicorn.conf.py against the platforms' proxies --------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    """gunicorn.conf.py's settings as gunicorn reads them, for this environment."""
    from gunicorn.config import Config

    for name in ("GUNICORN_KEEPALIVE", "TRUSTED_PROXY_CIDRS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    config = Config()
    for name in ("keepalive", "forwarded_allow_ips"):
        config.set(name, settings[name])  # gunicorn's own validation
    return {"keepalive": config.keepalive, "forwarded_allow_ips": config.forwarded_allow_ips}


def template_metadata(name: str) -> dict:
    from cfnlint.decode import decode

    parsed, problems = decode(str(ROOT / "deploy" / name))
    assert not problems
    return parsed["Metadata"]


def test_idle_connections_outlive_the_proxies_idle_and_request_timeouts(monkeypatch):
    """The proxy must be the side that closes an idle keep-alive connection; when gunicorn
    closes first, a request the proxy sends meanwhile becomes a 502."""
    keepalive = gunicorn_settings(monkeypatch)["keepalive"]
    load_balancer = template_metadata("ecs-express.yaml")["Timeouts"]
    app_runner = template_metadata("apprunner.yaml")["Timeouts"]
    assert load_balancer["LoadBalancerIdleTimeoutSeconds"] == 60  # ELB's default
    assert keepalive > load_balancer["LoadBalancerIdleTimeoutSeconds"]
    assert keepalive > app_runner["FrontEndRequestTimeoutSeconds"]
    assert gunicorn_settings(monkeypatch, GUNICORN_KEEPALIVE="400")["keepalive"] == 400


def read_response(connection: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (headers and Content-Length body); b"" if closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(body) < length:
        body += connection.recv(4096)
    return head


def test_an_idle_keep_alive_connection_is_still_served_after_the_old_five_seconds(production):
    port = int(production["url"].rsplit(":", 1)[1])
    request = b"GET /healthz HTTP/1.1\r\nHost: diary\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        assert read_response(connection).startswith(b"HTTP/1.1 200")
        # Idle as a load balancer's pooled connection is between requests. gunicorn's
        # keepalive was 5 s: it closed this connection at about that point.
        time.sleep(7)
        connection.sendall(request)
        assert read_response(connection).startswith(b"HTTP/1.1 200")


def test_gunicorn_believes_forwarded_headers_from_trusted_proxy_cidrs_only(monkeypatch):
    assert gunicorn_settings(monkeypatch)["forwarded_allow_ips"] == []
    trusted = gunicorn_settings(monkeypatch, TRUSTED_PROXY_CIDRS="10.40.0.0/16, 0.0.0.0/0,::/0")
    assert trusted["forwarded_allow_ips"] == ["10.40.0.0/16", "0.0.0.0/0", "::/0"]


def test_gunicorn_refuses_a_bad_trusted_proxy_cidrs_naming_it():
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--check-config", "wsgi:app"],
        cwd=ROOT,
        env={**os.environ, "TRUSTED_PROXY_CIDRS": "10.40.0.1/16", "SECRET_KEY": "x" * 32},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "TRUSTED_PROXY_CIDRS must be a comma-separated list of CIDRs" in result.stderr


def test_a_direct_client_cannot_claim_https_or_an_address_through_gunicorn(production):
    """By default nobody's X-Forwarded-* counts: HSTS is for requests that came over HTTPS."""
    response = requests.get(
        production["url"] + "/login",
        headers={
            "Accept": "text/html",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.9",
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response.headers
