"""The real servers the suite runs against: PostgreSQL, moto's S3 server, gunicorn.

Locally a missing server skips the tests that need it; with CI=true it fails
them, so a broken CI machine can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .tls import ServerCertificate

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where every server must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing server is a failure, not a skip)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    import psycopg

    name = f"diary_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """moto in server mode, in its own process, on a loopback port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, timeout=30)
    except RuntimeError as error:
        process.kill()
        unavailable(f"moto S3 server did not start: {error}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers: an S3 behind a
    VPC connector with no endpoint looks exactly like this."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@contextmanager
def gunicorn_server(env: Mapping[str, str], app: str = "wsgi:app") -> Iterator[str]:
    """The real gunicorn with the project's gunicorn.conf.py (serving `app`, diary unless told)."""
    port = free_port()
    full_env = {**os.environ, **env, "PORT": str(port)}
    # GUNICORN_LOG (in `env` or the test run's environment) keeps the server's log to read.
    log_path = Path(env.get("GUNICORN_LOG") or os.environ.get("GUNICORN_LOG", "/dev/null"))
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, process, timeout=30)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def gunicorn_worker_pids(master: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def gunicorn_master_pid(port: str | int) -> int:
    """The master of the gunicorn started by gunicorn_server on `port` (found by its PORT)."""
    marker = f"PORT={port}".encode()
    out = subprocess.run(
        ["pgrep", "-f", "gunicorn -c gunicorn.conf.py"], capture_output=True, text=True, check=False
    )
    for pid in (int(p) for p in out.stdout.split()):
        with suppress(OSError):
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                parent = int(Path(f"/proc/{pid}/stat").read_text().split()[3])
                if marker not in Path(f"/proc/{parent}/environ").read_bytes().split(b"\0"):
                    return pid
    raise RuntimeError(f"no gunicorn master serves port {port}")


TCP_STATES = {"established": "01", "listening": "0A"}


def sockets_on_port(pid: int, port: int, state: str = "established") -> int:
    """How many TCP sockets on local `port` in `state` process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == TCP_STATES[state] and fields[9] in inodes:
                count += 1
    return count


def listening_workers(port: int, expected: int, timeout: float = 30) -> list[int]:
    """The pids of gunicorn's workers on `port` once `expected` of them listen."""
    deadline = time.monotonic() + timeout
    while True:
        workers = gunicorn_worker_pids(gunicorn_master_pid(port))
        with suppress(OSError):  # a worker may exit while we look
            ready = [pid for pid in workers if sockets_on_port(pid, port, "listening")]
            if len(ready) >= expected:
                return ready
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(workers)} workers, not {expected}, listen on {port}")
        time.sleep(0.1)


def service_env(database_url: str, s3_endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    """The environment of a production-like diary on these servers (2 workers, a fresh key)."""
    return {
        "DATABASE_URL": database_url,
        "BUCKET": bucket,
        "S3_ENDPOINT_URL": s3_endpoint,
        "SECRET_KEY": "test-" + os.urandom(16).hex(),
        "WEB_CONCURRENCY": "2",
        **extra,
    }


def run_flask(
    env: Mapping[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `flask --app diary ...` as an operator would, in its own process; must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "diary", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def flask_cli(env: Mapping[str, str], *args: str, stdin: str = "") -> str:
    """As run_flask; its stdout."""
    return run_flask(env, *args, stdin=stdin).stdout


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL of our own in a temp dir on a free loopback port.

    Stopping the machine's shared cluster would break everyone else's tests, so
    this one is ours to stop and start. PostgreSQL refuses to run as root: as
    root, the server runs as the `postgres` OS user.
    """

    def __init__(self, password: str | None = None, tls: ServerCertificate | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="diary-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.password = password
        self.tls = tls
        login = f"postgres:{password}" if password else "postgres"
        self.url = f"postgresql://{login}@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        auth = ["--auth=trust"]
        if self.password:
            # Logins over TCP must give the password (as on RDS); the socket stays trusted.
            password_file = self.directory / "password"
            password_file.write_text(self.password)
            if os.geteuid() == 0:
                shutil.chown(password_file, "postgres")
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={password_file}"]
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", *auth, "--no-sync"
        )
        if self.tls:
            self._require_tls()

    def _require_tls(self) -> None:
        """Serve TLS with the given certificate and refuse TCP logins without it (as RDS
        does with rds.force_ssl): a login that works has surely used TLS."""
        assert self.tls is not None
        for source, name in (
            (self.tls.certificate_path, "server.crt"),
            (self.tls.key_path, "server.key"),
        ):
            target = self.directory / name
            shutil.copyfile(source, target)
            target.chmod(0o600)  # PostgreSQL refuses a key others can read
            if os.geteuid() == 0:
                shutil.chown(target, "postgres")
        method = "scram-sha-256" if self.password else "trust"
        (self.data / "pg_hba.conf").write_text(
            f"local all all trust\nhostssl all all 127.0.0.1/32 {method}\n"
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
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off"
            + (
                f" -c ssl=on -c ssl_cert_file={self.directory / 'server.crt'}"
                f" -c ssl_key_file={self.directory / 'server.key'}"
                if self.tls
                else ""
            ),
            "start",
        )

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def remove(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_postgres(
    password: str | None = None, tls: ServerCertificate | None = None
) -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own; with `password`, TCP logins must give it;
    with `tls`, it serves that certificate and TCP logins must use TLS."""
    if not (PG_BIN / "initdb").exists():
        unavailable(f"no PostgreSQL 15 binaries in {PG_BIN}")
    server = PrivatePostgres(password, tls)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()
