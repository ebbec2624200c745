"""Liveness (/healthz) and readiness (/readyz) for the platform and for operators.

/healthz touches nothing: the platform kills instances that fail it, and a
database blip must not make it kill every instance at once. /readyz checks the
database and the photo store, each within a hard time bound, and says which
failed; the details of a failure go to the log, not to the anonymous caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue

from ..extensions import db
from ..infra.storage import current_storage

log = logging.getLogger(__name__)

bp: Blueprint = Blueprint("health", __name__)

DEFAULT_CHECK_TIMEOUT = 2.0


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers HTTP. No database, no storage."""
    return _no_store(jsonify(status="ok"))


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: the database answers `SELECT 1` and the photo store is reachable."""
    timeout = float(current_app.config.get("READY_CHECK_TIMEOUT", DEFAULT_CHECK_TIMEOUT))
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    checks = run_checks(
        {
            "database": lambda: check_database(app, timeout),
            "storage": lambda: check_storage(app, timeout),
        },
        timeout,
    )
    ready = all(check["state"] == "ok" for check in checks.values())
    response = jsonify(status="ok" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    return _no_store(response)


def run_checks(checks: dict[str, Callable[[], None]], timeout: float) -> dict[str, dict[str, Any]]:
    """Run the checks side by side; each is "ok", "failed" or "timeout", with its time."""
    executor = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    started = {name: time.perf_counter() for name in checks}
    futures = {name: executor.submit(check) for name, check in checks.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.perf_counter() - started[name]))
        try:
            future.result(timeout=remaining)
            state = "ok"
        except FutureTimeout:
            state = "timeout"
            log.error("readiness check %s did not finish within %.1f s", name, timeout)
        except Exception as error:
            state = "failed"
            log.error("readiness check %s failed: %s: %s", name, type(error).__name__, error)
        elapsed = (time.perf_counter() - started[name]) * 1000
        results[name] = {"state": state, "ms": round(elapsed, 1)}
    # A check still running after its bound ends by its own timeouts (connect
    # timeout, S3 read timeout); the response does not wait for it.
    executor.shutdown(wait=False, cancel_futures=True)
    return results


def check_database(app: Flask, timeout: float) -> None:
    """`SELECT 1` on the app's pool, under a statement timeout on PostgreSQL."""
    with app.app_context(), db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # SET LOCAL ends with the transaction, so the pooled connection is unchanged.
            connection.execute(sa.text(f"SET LOCAL statement_timeout = {int(timeout * 1000)}"))
        connection.execute(sa.text("SELECT 1")).scalar_one()
        connection.rollback()


def check_storage(app: Flask, timeout: float) -> None:
    """Head the bucket (S3) or write a probe file (local folder)."""
    with app.app_context():
        current_storage().check(timeout)


def _no_store(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    return response
