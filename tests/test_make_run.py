"""`make run` and the commands it prints work as printed, in a fresh checkout.

Each test copies the project to a temp folder (its own instance/ folder, so the
developer's is never touched), links the test run's virtualenv as .venv and
runs what a newcomer would: `make run`, then the printed `flask --app diary`
lines, with none of the diary's variables in the environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from .servers import ROOT, free_port

STAMP = ".venv/.installed-stamp"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    copy = tmp_path / "checkout"
    for name in ("diary", "migrations", "templates", "static"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt"):
        shutil.copy2(ROOT / name, copy / name)
    # The virtualenv running the tests stands in for the one `make` would set up.
    (copy / ".venv").symlink_to(Path(sys.prefix))
    return copy


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any of the diary's settings."""
    ours = {"SECRET_KEY", "DATABASE_URL", "BUCKET", "FLASK_DEBUG", "FLASK_APP", "PORT"}
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ours and not name.startswith(("DB_", "S3_", "MAX_", "PYTEST"))
    }
    return {**env, **extra}


def run(checkout: Path, *command: str, env: dict[str, str], stdin: str = ""):
    # A new session has no controlling terminal: prompts read stdin, as in a script.
    return subprocess.run(
        command,
        cwd=checkout,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
        check=False,
    )


def test_the_commands_make_run_prints_work_as_printed(checkout: Path) -> None:
    port = free_port()
    env = clean_env(PORT=str(port))
    # -o: the linked virtualenv is ready; make must not reinstall into it.
    server = subprocess.Popen(
        ["make", "-o", STAMP, "run"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(server.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, "".join(printed)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "".join(printed)
                time.sleep(0.2)

        advice = [line.strip() for line in printed if line.strip().startswith(".venv/bin/flask")]
        assert len(advice) == 2, "".join(printed)
        create_user, create_token = advice
        assert create_user == ".venv/bin/flask --app diary users create you@example.com"

        created = run(
            checkout, *create_user.split(), env=env, stdin="a long password\na long password\n"
        )
        assert created.returncode == 0, created.stderr
        token_run = run(checkout, *create_token.split(), env=env)
        assert token_run.returncode == 0, token_run.stderr
        assert "Traceback" not in created.stderr + token_run.stderr
        token = next(word for word in token_run.stdout.split() if word.startswith("diary_"))

        # The server `make run` started and the commands share the database and the key.
        response = requests.get(
            f"http://127.0.0.1:{port}/api/v1/entries",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        help_run = run(checkout, ".venv/bin/flask", "--app", "diary", "--help", env=env)
        assert help_run.returncode == 0 and "Traceback" not in help_run.stderr, help_run.stderr
        assert "users" in help_run.stdout
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        reader.join(timeout=10)
        server.stdout.close()


def test_the_instance_config_is_written_once_private_and_never_committed(checkout: Path) -> None:
    env = clean_env()
    first = run(checkout, "make", "-o", STAMP, "instance/config.py", env=env)
    assert first.returncode == 0, first.stderr
    config = checkout / "instance" / "config.py"
    written = config.read_text()
    assert written.startswith("SECRET_KEY = '") and len(written.strip()) > 60
    assert config.stat().st_mode & 0o077 == 0

    again = run(checkout, "make", "-o", STAMP, "instance/config.py", env=env)
    assert again.returncode == 0 and config.read_text() == written

    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "instance/config.py"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "instance/ must be git-ignored"


def test_production_still_refuses_to_start_without_a_secret_key(checkout: Path) -> None:
    """No instance config and no SECRET_KEY: one line naming it, a failing status."""
    result = run(
        checkout,
        ".venv/bin/flask",
        "--app",
        "diary",
        "tokens",
        "list",
        "x@example.com",
        env=clean_env(),
    )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if "SECRET_KEY is not set" in line
    ]


@pytest.mark.parametrize(
    ("args", "variable", "value"),
    [
        (["--help"], "MAX_UPLOAD_MB", "lots"),
        (["users", "create", "x@example.com", "--password-stdin"], "DEFAULT_TIMEZONE", "Mars/Base"),
        (["db", "upgrade"], "SESSION_COOKIE_SECURE", "maybe"),
    ],
)
def test_a_bad_variable_stops_the_flask_command_with_one_line(
    checkout: Path, args: list[str], variable: str, value: str
) -> None:
    env = clean_env(SECRET_KEY="x" * 32, **{variable: value})

    result = run(checkout, ".venv/bin/flask", "--app", "diary", *args, env=env)

    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"Error: {variable} ")
