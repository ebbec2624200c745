"""The original Go service (bench/original/) for the side-by-side: build, run, recorded figures.

Built in GOPATH mode against Debian's Go packages (/usr/share/gocode), so nothing is
downloaded. When Go or those packages are missing, or the build fails, the bench shows
the figures recorded from a real run instead (bench/original/recorded.json) and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "original"
RECORDED = SOURCE / "recorded.json"
GOPATH = "/usr/share/gocode"


class BuildFailed(Exception):
    """The Go service could not be built here; the message says why."""


def build(directory: Path) -> Path:
    """Compile bench/original into `directory`; its path, or BuildFailed."""
    # GO= names another toolchain (or a missing one, to see the recorded figures).
    go = os.environ.get("GO") or shutil.which("go")
    if go is None or not os.access(go, os.X_OK):
        raise BuildFailed(f"no Go toolchain ({go or 'no `go` on PATH'}; Debian package golang-go)")
    binary = directory / "original-service"
    env = {
        **os.environ,
        # Debian ships Go libraries as sources under /usr/share/gocode, for GOPATH mode.
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOPROXY": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    try:
        result = subprocess.run(
            [go, "build", "-o", str(binary), "."],
            cwd=SOURCE,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BuildFailed("`go build` took longer than 10 minutes") from error
    if result.returncode != 0:
        raise BuildFailed(f"`go build` failed: {result.stderr.strip()[-2000:]}")
    return binary


@contextmanager
def running(binary: Path, database_url: str, env: Mapping[str, str], port: int) -> Iterator[int]:
    """The Go service on 127.0.0.1:`port` against `database_url`; yields its pid."""
    from tests.servers import wait_for_port

    # The original read DB_* variables, not a URL; the bench's URL is postgresql://user@host:port/db.
    rest = database_url.split("://", 1)[1]
    credentials, _, location = rest.rpartition("@")
    address, _, name = location.partition("/")
    host, _, db_port = address.partition(":")
    user, _, password = credentials.partition(":")
    full_env = {
        **os.environ,
        **env,
        "DB_ENDPOINT": host,
        "DB_PORT": db_port or "5432",
        "DB_USER": user or "postgres",
        "DB_PASSWORD": password,
        "DB_NAME": name,
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    # A file, not a pipe: a pipe nobody reads would block the server once full.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(binary)], env=full_env, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            try:
                wait_for_port(port, process, timeout=30)
            except RuntimeError as error:
                process.kill()
                process.wait(timeout=10)
                log.seek(0)
                output = log.read().decode(errors="replace").strip()
                raise BuildFailed(f"the Go service did not start: {error}: {output}") from None
            yield process.pid
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)


def load_recorded() -> dict:
    return json.loads(RECORDED.read_text())


def save_recorded(document: dict) -> None:
    RECORDED.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
