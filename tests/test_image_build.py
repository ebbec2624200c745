"""The container image built for real from the unchanged Dockerfile, booted, and
driven with the original Go service's curl transcript.

No Docker engine and no Docker Hub here, so the Dockerfile's base
`python:3.11-slim-bookworm` is stood in for by a debootstrapped Debian bookworm
(minbase, python3 3.11, venv, pip) tagged under that exact name in a buildah
storage of our own (vfs driver, chroot isolation, no daemon; needs root). The
build itself is the real one: both stages, the RUN --mount of the wheels,
nothing pulled (--pull-never). The booted container is the built image's own
files, entrypoint, environment, working directory and USER, run by
`buildah run`.

Kept between runs in /var/cache/diary-image-test (DIARY_IMAGE_CACHE), as it is
safe to keep: the stand-in base (only ever made from Debian's packages), and
the wheels `pip wheel -r requirements.txt` downloaded, filed under the hash of
requirements.txt and the base image, and handed to the build's pip through a
pip.conf mounted for the RUN steps only (it never reaches the image). The
image itself is built anew every run.

Select these tests with `-m image` (`make image`). Locally, without root or
without buildah, they skip; with CI=true that is a failure (.ci/run installs
buildah and debootstrap). A Docker engine is not used: there is none on these
machines to test that path with, and BuildKit would fetch the Dockerfile's
`# syntax=` frontend from Docker Hub.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.server
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import image_bytes
from .servers import ROOT, free_port, postgres_database, unavailable
from .tls import new_ca

pytestmark = pytest.mark.image

BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
CACHE = Path(os.environ.get("DIARY_IMAGE_CACHE", "/var/cache/diary-image-test"))
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What the official image has that the Dockerfile relies on: python (3.11), venv and pip.
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip")
IMAGE_USER_ID = 10001
LEGACY_KEYS = ["ID", "CreatedAt", "UpdatedAt", "DeletedAt", "Text", "Img"]
# The build runs pip against PyPI once and unpacks ~45 packages; a cold debootstrap
# is 1-3 minutes. Bounds, not expectations: a hung step fails instead of blocking CI.
SLOW_STEP_SECONDS = 1200


def run(
    command: list[str], *, timeout: float = 120, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, input=stdin
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{shlex.join(command)} exited {result.returncode}\n"
            f"--- stdout (end)\n{result.stdout[-4000:]}\n--- stderr (end)\n{result.stderr[-4000:]}"
        )
    return result


class Buildah:
    """buildah on a storage of our own: nothing touches the machine's default storage."""

    def __init__(self, root: Path, runroot: Path) -> None:
        self.prefix = [
            "buildah",
            "--storage-driver",
            "vfs",
            "--root",
            str(root),
            "--runroot",
            str(runroot),
        ]

    def __call__(self, *args: str, **options) -> subprocess.CompletedProcess[str]:
        return run([*self.prefix, *args], **options)

    def has_image(self, name: str) -> bool:
        return self("inspect", "--type", "image", name, check=False).returncode == 0

    def image_id(self, name: str) -> str:
        return json.loads(self("inspect", "--type", "image", name).stdout)["FromImageID"]

    def image_config(self, name: str) -> dict:
        """The image's Docker-format config: Env, User, WorkingDir, Entrypoint, Healthcheck."""
        return json.loads(self("inspect", "--type", "image", name).stdout)["Docker"]["config"]


def buildah_or_reason() -> Buildah | str:
    """buildah on our cache, or why there is none on this machine."""
    if shutil.which("buildah") is None:
        return "buildah is not installed (apt-get install buildah debootstrap)"
    if os.geteuid() != 0:
        # Rootless buildah needs subordinate ids and user namespaces set up for the
        # user; the suite's machines run as root, so this test does not try.
        return "building the image with buildah needs root here"
    return Buildah(CACHE / "storage", Path("/run/diary-image-test"))


def cannot_build(buildah: Buildah) -> str | None:
    """Why buildah cannot make a container on this machine, if it cannot."""
    probe = run([*buildah.prefix, "from", "scratch"], check=False)
    if probe.returncode != 0:
        return f"buildah cannot create a container here: {probe.stderr.strip()[-500:]}"
    buildah("rm", probe.stdout.strip())
    return None


@contextmanager
def cache_lock() -> Iterator[None]:
    """One image test at a time on this machine: they share the cache and two cores."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- the stand-in base ---------------------------------------------------------


def ensure_stand_in_base(buildah: Buildah, log: list[str]) -> None:
    if buildah.has_image(BASE_IMAGE):
        log.append(f"base {BASE_IMAGE}: present")
        return
    if shutil.which("debootstrap") is None:
        unavailable("debootstrap is not installed, so no stand-in base image can be made")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="base-") as work:
        rootfs = Path(work) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            timeout=SLOW_STEP_SECONDS,
        )
        # The downloaded .debs and package lists are not part of an image.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / leftover).glob("*"):
                if item.is_file():
                    item.unlink()
        # The official image's pip installs anywhere and `python` is python 3; Debian's
        # marks the system environment as externally managed and names it python3 only.
        (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        (rootfs / "usr/bin/python").symlink_to("python3")
        # pip in the build stage reaches PyPI the way this machine does, through
        # whatever certificate authorities this machine trusts (an egress proxy's too).
        shutil.copyfile(
            "/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt"
        )
        archive = Path(work) / "rootfs.tar"
        run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], timeout=300)
        container = buildah("from", "scratch").stdout.strip()
        try:
            buildah("add", container, str(archive), "/", timeout=600)
            buildah(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "python3",
                "--label",
                "diary.stand-in=debootstrap bookworm minbase for tests/test_image_build.py",
                container,
            )
            buildah("commit", "--format", "docker", container, BASE_IMAGE, timeout=600)
        finally:
            buildah("rm", container, check=False)
    log.append(f"base {BASE_IMAGE}: made by debootstrap in {time.monotonic() - started:.0f} s")


# --- the wheels ----------------------------------------------------------------


def ensure_wheelhouse(buildah: Buildah, log: list[str]) -> Path:
    """The wheels the build's `pip wheel` step needs, downloaded once by the same pip.

    Filed under the hash of requirements.txt and of the base image: a change to
    either fetches anew, and older sets are removed.
    """
    requirements = (ROOT / "requirements.txt").read_bytes()
    key = hashlib.sha256(requirements + buildah.image_id(BASE_IMAGE).encode()).hexdigest()[:16]
    wheels_root = CACHE / "wheels"
    wheelhouse = wheels_root / key
    if (wheelhouse / "pip.conf").exists():
        log.append(f"wheels {key}: present")
        return wheelhouse
    started = time.monotonic()
    wheels_root.mkdir(exist_ok=True)
    for stale in wheels_root.iterdir():
        shutil.rmtree(stale)
    partial = Path(tempfile.mkdtemp(dir=wheels_root, prefix="partial-"))
    container = buildah("from", "--pull-never", BASE_IMAGE).stdout.strip()
    try:
        buildah(
            "run",
            "--isolation",
            "chroot",
            "--volume",
            f"{partial}:/wheels",
            "--volume",
            f"{ROOT / 'requirements.txt'}:/build/requirements.txt:ro",
            container,
            "--",
            "pip",
            "wheel",
            "--wheel-dir",
            "/wheels",
            "-r",
            "/build/requirements.txt",
            timeout=SLOW_STEP_SECONDS,
        )
    finally:
        buildah("rm", container, check=False)
    # Read by the build's pip through /etc/pip.conf: every requirement from these
    # wheels, nothing from the network.
    (partial / "pip.conf").write_text(
        "[global]\nno-index = true\nfind-links = /var/cache/diary-wheels\n"
    )
    partial.rename(wheelhouse)
    log.append(f"wheels {key}: fetched in {time.monotonic() - started:.0f} s")
    return wheelhouse


# --- files the Dockerfile downloads ----------------------------------------------


def url_arguments() -> dict[str, str]:
    """ARGs whose default is an http(s) URL: what the build would fetch from the internet."""
    found = {}
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        words = line.split(None, 1)
        if len(words) == 2 and words[0].upper() == "ARG" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            value = value.strip().strip("\"'")
            if value.startswith(("http://", "https://")):
                found[name.strip()] = value
    return found


def literal_downloads() -> list[str]:
    """ADD sources that are URLs written out: this test cannot stand in for those."""
    found = []
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True) if line.strip() else []
        if words and words[0].upper() == "ADD":
            found += [word for word in words[1:-1] if word.startswith(("http://", "https://"))]
    return found


def stand_in_download(url: str, folder: Path) -> Path:
    """A local file in place of what `url` serves."""
    if url.startswith("https://truststore.pki.rds.amazonaws.com/"):
        # The RDS CA bundle: a CA of our own under Amazon RDS's unit name, which is
        # what the build stage's check of the bundle looks for.
        return new_ca(folder, "Amazon RDS stand-in Root CA", unit="Amazon RDS").path
    pytest.fail(f"no local stand-in is known for {url}; add one to stand_in_download()")


@contextmanager
def local_downloads(folder: Path) -> Iterator[list[str]]:
    """Serve stand-ins for the Dockerfile's URL ARGs on loopback; yield the --build-arg options."""
    written = literal_downloads()
    if written:
        pytest.fail(
            f"the Dockerfile downloads {written}, which the build here cannot reach: name the URL "
            "in an ARG (ARG NAME=<url>, then ADD ${NAME} ...) so the test can supply a stand-in"
        )
    arguments = url_arguments()
    if not arguments:
        yield []
        return
    folder.mkdir(exist_ok=True)
    files = {name: stand_in_download(url, folder) for name, url in arguments.items()}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args, directory=str(folder))

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the build's own output says what it fetched

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield [
            option
            for name, path in files.items()
            for option in ("--build-arg", f"{name}=http://127.0.0.1:{port}/{quote(path.name)}")
        ]
    finally:
        server.shutdown()
        server.server_close()


# --- the build -------------------------------------------------------------------


@dataclass
class BuiltImage:
    buildah: Buildah
    name: str
    config: dict
    log: list[str]


@pytest.fixture(scope="module")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    found = buildah_or_reason()
    if isinstance(found, str):
        unavailable(f"cannot build the container image: {found}")
    buildah = found
    log: list[str] = []
    with cache_lock():
        if reason := cannot_build(buildah):
            unavailable(f"cannot build the container image: {reason}")
        # Under the lock nobody else uses this storage: what is left in it now was
        # left by a run that was killed.
        buildah("rm", "--all", check=False)
        ensure_stand_in_base(buildah, log)
        wheelhouse = ensure_wheelhouse(buildah, log)
        name = f"localhost/diary-image-test:{uuid.uuid4().hex[:12]}"
        started = time.monotonic()
        with local_downloads(tmp_path_factory.mktemp("downloads")) as download_args:
            buildah(
                "bud",
                "--isolation",
                "chroot",
                "--pull-never",
                # Docker's format keeps HEALTHCHECK, as `docker build` would.
                "--format",
                "docker",
                "--layers=false",
                "--volume",
                f"{wheelhouse}:/var/cache/diary-wheels:ro",
                "--volume",
                f"{wheelhouse / 'pip.conf'}:/etc/pip.conf:ro",
                *download_args,
                "--tag",
                name,
                "--file",
                str(ROOT / "Dockerfile"),
                str(ROOT),
                timeout=SLOW_STEP_SECONDS,
            )
        log.append(f"image {name}: built in {time.monotonic() - started:.0f} s")
        try:
            yield BuiltImage(buildah, name, buildah.image_config(name), log)
        finally:
            buildah("rm", "--all", check=False)
            buildah("rmi", name, check=False)
            print("\n".join(["", "image test:", *log]))


# --- the container, booted --------------------------------------------------------


class Container:
    """A working container from the built image; `boot` runs its ENTRYPOINT.

    `network` is a process whose network namespace the container shares (None: the
    machine's own, i.e. host networking). Every process the container runs, and
    every curl, goes into that namespace.
    """

    def __init__(self, image: BuiltImage, env: Mapping[str, str], log_path: Path) -> None:
        self.image = image
        self.env = dict(env)
        self.log_path = log_path
        self.name = image.buildah("from", "--pull-never", image.name).stdout.strip()
        self.process: subprocess.Popen[bytes] | None = None
        self.private_network = False

    def _env_options(self) -> list[str]:
        return [option for key, value in self.env.items() for option in ("--env", f"{key}={value}")]

    def _in_network(self, command: list[str]) -> list[str]:
        if self.private_network and self.process is not None:
            return ["nsenter", "--target", str(self.process.pid), "--net", *command]
        return command

    def boot(self, *, private_network: bool) -> None:
        """Start the image's ENTRYPOINT with its CMD, as `docker run IMAGE` would."""
        command = [
            *self.image.buildah.prefix,
            "run",
            "--isolation",
            "chroot",
            *self._env_options(),
            self.name,
            "--",
            *(self.image.config.get("Entrypoint") or []),
            *(self.image.config.get("Cmd") or []),
        ]
        self.private_network = private_network
        if private_network:
            # A network namespace of its own with only loopback up: the image's own
            # port 8080 cannot clash with anything else on this machine.
            command = [
                "unshare",
                "--net",
                "sh",
                "-c",
                'ip link set lo up && exec "$@"',
                "sh",
                *command,
            ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def exec(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A one-off command in the container, through its entrypoint (`docker run IMAGE args`)."""
        return run(
            self._in_network(
                [
                    *self.image.buildah.prefix,
                    "run",
                    "--isolation",
                    "chroot",
                    *self._env_options(),
                    self.name,
                    "--",
                    *(self.image.config.get("Entrypoint") or []),
                    *args,
                ]
            ),
            stdin=stdin,
            timeout=120,
        )

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The image's HEALTHCHECK command, run in the container as Docker would."""
        test = self.image.config["Healthcheck"]["Test"]
        assert test[0] == "CMD", test
        return run(
            self._in_network(
                [
                    *self.image.buildah.prefix,
                    "run",
                    "--isolation",
                    "chroot",
                    *self._env_options(),
                    self.name,
                    "--",
                    *test[1:],
                ]
            ),
            check=False,
            timeout=60,
        )

    def curl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """curl as the original service's users ran it, from inside the container's network."""
        return run(
            self._in_network(["curl", "--silent", "--show-error", "--max-time", "30", *args]),
            check=False,
            timeout=60,
        )

    def wait_until_serving(self, port: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the container exited with {self.process.returncode}:\n{self.log()}")
            if self.curl("--fail", f"http://127.0.0.1:{port}/healthz").returncode == 0:
                return
            time.sleep(0.5)
        pytest.fail(f"the container did not answer /healthz within {timeout} s:\n{self.log()}")

    def processes(self) -> list[int]:
        """The pids of everything running under `buildah run` (the host sees them all)."""
        assert self.process is not None
        children: dict[int, list[int]] = {}
        for status in Path("/proc").glob("[0-9]*/stat"):
            with suppress(OSError, IndexError, ValueError):
                fields = status.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(status.parent.name))
        found, queue = [], [self.process.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            queue += children.get(pid, [])
        return found

    def gunicorn(self) -> dict[int, int]:
        """pid -> real uid of each gunicorn process of the container."""
        owners = {}
        for pid in self.processes():
            with suppress(OSError):
                if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    status = Path(f"/proc/{pid}/status").read_text()
                    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
                    owners[pid] = int(uid_line.split()[1])
        return owners

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> int | None:
        """SIGTERM to the entrypoint's process (gunicorn, once exec'd), as `docker stop` sends."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            owners = self.gunicorn()
            for pid in owners:
                with suppress(OSError):
                    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                    if parent not in owners:
                        os.kill(pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def remove(self) -> None:
        self.stop()
        self.image.buildah("rm", self.name, check=False)


@contextmanager
def container(image: BuiltImage, env: Mapping[str, str], log_path: Path) -> Iterator[Container]:
    booted = Container(image, env, log_path)
    try:
        yield booted
    finally:
        booted.remove()


def original_transcript(box: Container, port: int, photo: Path) -> None:
    """What the Go service's users ran, against the container: create a user and a
    token with the image's own CLI, post a text and a photo, list the entries."""
    box.exec(
        "flask",
        "--app",
        "diary",
        "users",
        "create",
        "me@example.com",
        "--password-stdin",
        stdin="correct horse battery staple\n",
    )
    token = box.exec(
        "flask", "--app", "diary", "tokens", "create", "me@example.com", "--name", "curl"
    ).stdout.split()[-1]
    bearer = f"Authorization: Bearer {token}"

    posted = box.curl(
        "-H", bearer, "-F", "text=今日は晴れ", "-F", f"file=@{photo}", f"http://127.0.0.1:{port}/"
    )
    assert posted.returncode == 0, posted.stderr
    created = json.loads(posted.stdout)
    assert list(created) == LEGACY_KEYS, created
    assert created["Text"] == "今日は晴れ" and created["Img"], created

    listed = box.curl("-H", bearer, f"http://127.0.0.1:{port}/")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [list(row) for row in rows] == [LEGACY_KEYS]
    assert rows[0]["ID"] == created["ID"] and rows[0]["Img"] == created["Img"]
    assert rows[0]["DeletedAt"] is None

    health = box.curl("-i", f"http://127.0.0.1:{port}/healthz")
    assert health.stdout.startswith("HTTP/1.1 200"), health.stdout


def assert_runs_as_the_image_user(box: Container) -> None:
    # The master and both workers (WEB_CONCURRENCY defaults to 2). The first worker
    # answers /healthz as soon as it is forked (each has its own socket, reuse_port),
    # which can be before the master has forked the second.
    deadline = time.monotonic() + 30
    while len(owners := box.gunicorn()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(owners) >= 3, owners
    assert set(owners.values()) == {IMAGE_USER_ID}, owners


def test_the_image_on_its_embedded_defaults_serves_the_original_curl_transcript_on_8080(
    built_image: BuiltImage, tmp_path: Path
):
    config = built_image.config
    assert config["User"] == f"{IMAGE_USER_ID}:{IMAGE_USER_ID}"
    assert "PORT=8080" in config["Env"] and "8080/tcp" in config["ExposedPorts"]
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes())
    # Nothing but what a first `docker run` needs: a key, and migrations on start
    # for the embedded SQLite database in /app/instance.
    env = {"SECRET_KEY": "image-" + os.urandom(16).hex(), "MIGRATE_ON_START": "true"}

    with container(built_image, env, tmp_path / "container.log") as box:
        box.boot(private_network=True)
        box.wait_until_serving(8080)
        assert_runs_as_the_image_user(box)
        original_transcript(box, 8080, photo)
        assert box.healthcheck().returncode == 0
        # exec in the entrypoint: docker stop's SIGTERM reaches gunicorn, which exits cleanly.
        assert box.stop() == 0, box.log()

    log = (tmp_path / "container.log").read_text()
    assert "database sqlite file=/app/instance/diary.sqlite3" in log
    assert "storage local folder=/app/instance/photos" in log
    assert "Shutting down: Master" in log


def test_the_image_on_postgresql_serves_the_original_curl_transcript(
    built_image: BuiltImage, tmp_path: Path
):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes(color="navy"))
    port = free_port()
    with postgres_database() as database_url:
        # Host networking, as App Runner's VPC connector gives the container a
        # route to RDS; the platform chooses PORT.
        env = {
            "SECRET_KEY": "image-" + os.urandom(16).hex(),
            "MIGRATE_ON_START": "true",
            "DATABASE_URL": database_url,
            "PORT": str(port),
        }
        with container(built_image, env, tmp_path / "container.log") as box:
            box.boot(private_network=False)
            box.wait_until_serving(port)
            assert_runs_as_the_image_user(box)
            original_transcript(box, port, photo)

    log = (tmp_path / "container.log").read_text()
    assert "database postgresql+psycopg host=127.0.0.1:5432" in log
    assert "migrating database schema from an empty database" in log
