"""The container without a Docker engine: the Dockerfile read and linted, its file set
assembled and booted, and the entrypoint run for real (two at once on PostgreSQL)."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import requests
from alembic.config import Config
from alembic.script import ScriptDirectory

from diary.infra.migrate_lock import MIGRATION_LOCK_ID

from .servers import ROOT, free_port, postgres_database, wait_for_port
from .tls import new_ca

DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker-entrypoint.sh"
VENV_BIN = Path(sys.executable).parent


def latest_revision() -> str:
    """The head of migrations/versions, so a new migration needs no edit here."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def copies(stage: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from a stage)."""
    result = []
    for keyword, rest in stage:
        words = shlex.split(rest)
        if keyword == "COPY" and not any(word.startswith("--from") for word in words):
            paths = [word for word in words if not word.startswith("--")]
            result.append((paths[:-1], paths[-1]))
    return result


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves `path` out, per .dockerignore (last match wins)."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path, *(str(parent) for parent in Path(path).parents if str(parent) != ".")]
        hit = any(
            fnmatch.fnmatch(candidate, pattern)
            or fnmatch.fnmatch(candidate, pattern.removeprefix("**/"))
            or fnmatch.fnmatch(Path(candidate).name, pattern.removeprefix("**/"))
            for candidate in candidates
        )
        if hit:
            excluded = not negate
    return excluded


# --- the Dockerfile, read ------------------------------------------------------


def test_hadolint_passes():
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_stages_on_a_slim_python_311_with_wheels_built_first_and_installed_last():
    steps = instructions()
    bases = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(bases) == 2
    assert all(base.split()[0].startswith("python:3.11-slim") for base in bases)
    build_runs = " ".join(rest for keyword, rest in steps[: steps.index(final_stage()[0])])
    assert "pip wheel --wheel-dir /wheels -r requirements.txt" in build_runs
    final_runs = " ".join(rest for keyword, rest in final_stage() if keyword == "RUN")
    assert "--no-index --find-links=/wheels" in final_runs
    assert "from=build" in final_runs


def test_the_final_image_copies_only_what_runs():
    copied = {source.rstrip("/") for sources, _ in copies(final_stage()) for source in sources}

    assert copied == {
        "diary",
        "migrations",
        "templates",
        "static",
        "wsgi.py",
        "gunicorn.conf.py",
        "docker-entrypoint.sh",
    }
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not dockerignore_excludes(source), source


RDS_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_BUNDLE = "/app/certs/rds-global-bundle.pem"


def build_stage() -> list[tuple[str, str]]:
    steps = instructions()
    return steps[: steps.index(final_stage()[0])]


def test_the_image_ships_the_rds_ca_bundle_and_points_db_sslrootcert_at_it():
    [fetched] = [shlex.split(rest) for keyword, rest in build_stage() if keyword == "ADD"]
    # The URL is an ARG's default (a build without the internet may name another).
    arguments = dict(rest.split("=", 1) for keyword, rest in build_stage() if keyword == "ARG")
    assert fetched[0] == "${RDS_CA_BUNDLE_URL}"
    assert arguments["RDS_CA_BUNDLE_URL"] == RDS_BUNDLE_URL  # from AWS itself, never a copy here
    fetched_to = fetched[-1]
    [copied] = [
        shlex.split(rest)
        for keyword, rest in final_stage()
        if keyword == "COPY" and RDS_BUNDLE in rest
    ]
    assert copied == ["--from=build", "--chmod=0644", fetched_to, RDS_BUNDLE]
    environment = " ".join(rest for keyword, rest in final_stage() if keyword == "ENV")
    assert f"DB_SSLROOTCERT={RDS_BUNDLE}" in environment.split()


def bundle_check(path: Path) -> subprocess.CompletedProcess[str]:
    """The build stage's check of the fetched bundle, run here on `path`."""
    [fetched_to] = [shlex.split(rest)[-1] for keyword, rest in build_stage() if keyword == "ADD"]
    [command] = [rest for keyword, rest in build_stage() if keyword == "RUN" and fetched_to in rest]
    return subprocess.run(
        ["sh", "-c", command.replace(fetched_to, shlex.quote(str(path)))],
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_build_fails_unless_it_fetched_a_bundle_of_amazon_rds_cas(tmp_path: Path):
    rds = new_ca(tmp_path, "Amazon RDS ap-northeast-1 Root CA RSA2048 G1", unit="Amazon RDS")
    other = new_ca(tmp_path, "Some Other Root CA", unit="Elsewhere")
    bundle = tmp_path / "global-bundle.pem"
    bundle.write_bytes(other.path.read_bytes() + rds.path.read_bytes())
    error_page = tmp_path / "error.pem"
    error_page.write_text("<html><body>Service Unavailable</body></html>")

    assert bundle_check(bundle).returncode == 0, bundle_check(bundle).stderr
    assert bundle_check(other.path).returncode != 0
    assert bundle_check(error_page).returncode != 0


@pytest.mark.parametrize(
    "path",
    [".git", ".venv", "instance/diary.sqlite3", "tests/test_health.py", "deploy", ".env", "bench"],
)
def test_the_build_context_leaves_out_secrets_and_everything_that_does_not_run(path):
    assert dockerignore_excludes(path)


def test_the_service_runs_as_a_non_root_user_on_port_8080():
    stage = final_stage()
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(index for index, (keyword, _) in enumerate(stage) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in stage[last_user:])
    assert ("EXPOSE", "8080") in stage


def test_the_entrypoint_is_an_executable_script_copied_into_the_image():
    [entrypoint] = [rest for keyword, rest in final_stage() if keyword == "ENTRYPOINT"]
    [path] = json.loads(entrypoint)
    workdir = [rest for keyword, rest in final_stage() if keyword == "WORKDIR"][-1]
    script = ROOT / Path(path).relative_to(workdir)
    assert script == ENTRYPOINT
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/bin/sh\n")
    assert "exec gunicorn -c gunicorn.conf.py wsgi:app" in script.read_text()


# --- the entrypoint, run ---------------------------------------------------------


def entrypoint_env(**extra: str) -> dict[str, str]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_URL", "BUCKET", "S3_", "MIGRATE_ON_START"))
    }
    return {
        **clean,
        # The image puts its virtualenv first on PATH; so does this.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SECRET_KEY": "entrypoint-" + os.urandom(8).hex(),
        "WEB_CONCURRENCY": "1",
        **extra,
    }


@contextmanager
def entrypoint(script: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(script)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd="/"
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def assemble_image(target: Path) -> Path:
    """Lay out /app as the final stage's COPY steps would, honouring .dockerignore."""
    for sources, destination in copies(final_stage()):
        for source in sources:
            origin = ROOT / source.rstrip("/")
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    target / source.rstrip("/"),
                    ignore=lambda folder, names: [
                        name
                        for name in names
                        if dockerignore_excludes(str((Path(folder) / name).relative_to(ROOT)))
                    ],
                )
            else:
                shutil.copy2(origin, target / destination / Path(source).name)
    return target / "docker-entrypoint.sh"


def test_the_image_file_set_migrates_and_serves_from_the_entrypoint(tmp_path: Path):
    app_root = tmp_path / "app"
    app_root.mkdir()
    script = assemble_image(app_root)
    assert not any(app_root.rglob("__pycache__"))
    port = free_port()
    env = entrypoint_env(
        PORT=str(port),
        MIGRATE_ON_START="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'diary.sqlite3'}",
        LOCAL_STORAGE_DIR=str(tmp_path / "photos"),
        PYTHONDONTWRITEBYTECODE="1",
    )

    with entrypoint(script, env, tmp_path / "out.log") as process:
        wait_for_port(port, process, timeout=60)
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200

    assert ready.status_code == 200, ready.text
    log = (tmp_path / "out.log").read_text()
    assert "migrating database schema from an empty database" in log
    # Migration progress included, the container's log is JSON lines only.
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert any(line["logger"].startswith("alembic") for line in lines)


def test_two_instances_starting_together_migrate_exactly_once(tmp_path: Path):
    with postgres_database() as database_url:
        ports = [free_port(), free_port()]
        logs = [tmp_path / f"instance-{index}.log" for index in (0, 1)]
        # Hold the migration lock ourselves, so both instances are surely
        # waiting on it at the same moment before either may migrate.
        with psycopg.connect(database_url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
            with (
                entrypoint(
                    ENTRYPOINT,
                    entrypoint_env(
                        PORT=str(ports[0]), MIGRATE_ON_START="true", DATABASE_URL=database_url
                    ),
                    logs[0],
                ) as first,
                entrypoint(
                    ENTRYPOINT,
                    entrypoint_env(
                        PORT=str(ports[1]), MIGRATE_ON_START="TRUE", DATABASE_URL=database_url
                    ),
                    logs[1],
                ) as second,
            ):
                wait_for_log(logs, "waiting for the migration lock")
                assert alembic_version(database_url) is None  # nobody migrated past the lock
                holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))

                for port, process in zip(ports, (first, second), strict=True):
                    wait_for_port(port, process, timeout=60)
                    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
                    assert health.status_code == 200
                    # exec: the entrypoint's process became gunicorn, so SIGTERM reaches it.
                    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
                    assert b"gunicorn" in cmdline

        texts = [log.read_text() for log in logs]
        combined = "".join(texts)
        assert combined.count("migrating database schema from an empty database") == 1
        assert combined.count("already at the latest migration") == 1
        assert alembic_version(database_url) == latest_revision()


def wait_for_log(logs: list[Path], text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(text in log.read_text() for log in logs):
            return
        time.sleep(0.1)
    pytest.fail(
        f"not every instance logged {text!r}: " + " | ".join(log.read_text() for log in logs)
    )


def alembic_version(database_url: str) -> str | None:
    with psycopg.connect(database_url) as connection:
        exists = connection.execute("SELECT to_regclass('alembic_version')").fetchone()
        if exists is None or exists[0] is None:
            return None
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None


def test_without_migrate_on_start_the_entrypoint_serves_without_migrating(tmp_path: Path):
    with postgres_database() as database_url:
        port = free_port()
        env = entrypoint_env(PORT=str(port), DATABASE_URL=database_url)
        with entrypoint(ENTRYPOINT, env, tmp_path / "out.log") as process:
            wait_for_port(port, process, timeout=60)
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert alembic_version(database_url) is None


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_malformed_migrate_on_start_stops_the_container(tmp_path: Path, value):
    result = subprocess.run(
        [str(ENTRYPOINT)],
        env=entrypoint_env(MIGRATE_ON_START=value, PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 64
    assert "MIGRATE_ON_START must be true or false" in result.stderr


def test_arguments_run_instead_of_the_server_for_one_off_commands(tmp_path: Path):
    result = subprocess.run(
        [str(ENTRYPOINT), "flask", "--app", "diary", "doctor", "--json"],
        env=entrypoint_env(
            DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}",
            LOCAL_STORAGE_DIR=str(tmp_path / "photos"),
            MIGRATE_ON_START="true",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The doctor ran (and found the unmigrated schema): no migration, no server.
    assert result.returncode == 1
    assert '"database schema"' in result.stdout
    assert "no migration applied" in result.stdout


# --- migrating on start: signals and the owner's credentials ------------------------


def stand_ins(tmp_path: Path, *, flask: str, gunicorn: str = "exit 0") -> Path:
    """A `flask` and a `gunicorn` earlier on PATH than the real ones, each recording its
    arguments and the database variables it was given in $STAND_IN_LOG."""
    folder = tmp_path / "stand-ins"
    folder.mkdir()
    for name, body in (("flask", flask), ("gunicorn", gunicorn)):
        script = folder / name
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{name} $* DB_SECRET=${{DB_SECRET:-}} DB_SECRET_ARN=${{DB_SECRET_ARN:-}}'
            f' DB_PASSWORD=${{DB_PASSWORD:-}} MIGRATION_DB_SECRET=${{MIGRATION_DB_SECRET:-}}"'
            ' >> "$STAND_IN_LOG"\n'
            f"{body}\n"
        )
        script.chmod(0o755)
    return folder


def stand_in_env(folder: Path, log: Path, **extra: str) -> dict[str, str]:
    env = entrypoint_env(STAND_IN_LOG=str(log), **extra)
    env["PATH"] = f"{folder}{os.pathsep}{env['PATH']}"
    return env


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} within {timeout} s")


def children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(each) for each in out.stdout.split()]


def stop_during_migration(tmp_path: Path, signal_number: int) -> tuple[int, int, str]:
    """Start the entrypoint with a migration that sleeps, signal it once the migration runs;
    (exit status, the migration's pid, the container's output)."""
    log = tmp_path / "calls.log"
    folder = stand_ins(tmp_path, flask="exec sleep 600")
    env = stand_in_env(folder, log, MIGRATE_ON_START="true")
    migration = None
    with open(tmp_path / "out.log", "wb") as out:
        process = subprocess.Popen([str(ENTRYPOINT)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(
                lambda: log.exists() and children(process.pid),
                30,
                "the migration started",
            )
            (migration,) = children(process.pid)
            process.send_signal(signal_number)
            # Generous: a forwarded signal ends `sleep` at once, a held one after 600 s.
            returncode = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            # A held signal leaves the stand-in behind: never let it outlive the test.
            if migration is not None and Path(f"/proc/{migration}").exists():
                os.kill(migration, signal.SIGKILL)
    assert "gunicorn" not in log.read_text()
    return returncode, migration, (tmp_path / "out.log").read_text()


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_during_the_migration_stops_it_and_the_container(
    tmp_path: Path, signal_number: int
):
    """The platform's SIGTERM reaches the migration at once: no waiting for it to finish
    (it would be SIGKILLed first), and no server started after it. Several times over: the
    signal can interrupt the shell's wait after the migration has already ended, and the
    exit status must still be the migration's."""
    for attempt in range(8):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        returncode, migration, output = stop_during_migration(folder, signal_number)
        assert returncode == 128 + signal.SIGTERM, (attempt, output)
        assert not Path(f"/proc/{migration}").exists()
        assert "not starting the server" in output


def test_the_migration_logs_in_with_migration_db_secret_and_the_server_never_sees_it(
    tmp_path: Path,
):
    log = tmp_path / "calls.log"
    folder = stand_ins(tmp_path, flask="exit 0")
    owner = '{"username": "diary", "password": "owner-secret"}'
    app_role = '{"username": "diary_app", "password": "app-secret"}'
    env = stand_in_env(
        folder,
        log,
        MIGRATE_ON_START="true",
        MIGRATION_DB_SECRET=owner,
        DB_SECRET=app_role,
        DB_SECRET_ARN="arn:aws:secretsmanager:ap-northeast-1:111122223333:secret:app",
        DB_PASSWORD="app-secret",
    )

    result = subprocess.run(
        [str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 0, result.stderr
    migration, server = log.read_text().splitlines()
    assert migration.startswith("flask --app diary db-upgrade-locked ")
    # The owner's secret stands in for every app credential, the re-read ARN included.
    assert f"DB_SECRET={owner} DB_SECRET_ARN= DB_PASSWORD= " in migration
    assert server.startswith("gunicorn -c gunicorn.conf.py wsgi:app ")
    assert f"DB_SECRET={app_role} " in server
    assert "DB_PASSWORD=app-secret" in server
    assert server.endswith("MIGRATION_DB_SECRET=")


def test_without_migrating_the_owner_secret_is_still_kept_from_the_server(tmp_path: Path):
    log = tmp_path / "calls.log"
    folder = stand_ins(tmp_path, flask="exit 0")
    env = stand_in_env(folder, log, MIGRATION_DB_SECRET='{"username": "diary"}')

    result = subprocess.run(
        [str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 0, result.stderr
    (server,) = log.read_text().splitlines()
    assert server.startswith("gunicorn ") and server.endswith("MIGRATION_DB_SECRET=")


def test_migration_db_secret_with_database_url_is_refused(tmp_path: Path):
    """DATABASE_URL wins over DB_SECRET in the app: the owner's secret would be ignored."""
    log = tmp_path / "calls.log"
    folder = stand_ins(tmp_path, flask="exit 0")
    env = stand_in_env(
        folder,
        log,
        MIGRATE_ON_START="true",
        MIGRATION_DB_SECRET='{"username": "diary"}',
        DATABASE_URL="postgresql://diary_app@db/diary",
    )

    result = subprocess.run(
        [str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 64
    assert "MIGRATION_DB_SECRET cannot be combined with DATABASE_URL" in result.stderr
    assert not log.exists()


def test_a_failed_migration_stops_the_container_with_its_status(tmp_path: Path):
    log = tmp_path / "calls.log"
    folder = stand_ins(tmp_path, flask="exit 3")
    env = stand_in_env(folder, log, MIGRATE_ON_START="true")

    result = subprocess.run(
        [str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 3
    assert "gunicorn" not in log.read_text()
