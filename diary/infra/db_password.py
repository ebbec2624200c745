"""Follow RDS password rotation: re-read the secret when PostgreSQL refuses the login.

RDS rotates the managed master password, every 7 days by default. App Runner
and ECS inject DB_SECRET once, when an instance starts, so from a rotation on
every new connection was refused until the service was deployed again. With
DB_SECRET_ARN set, a refused login makes the app fetch the secret again (at
most once per REFRESH_INTERVAL per process) and log in with the new password;
connections already open keep working throughout.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import make_url

from ..extensions import db
from .logs import add_secret

log = logging.getLogger(__name__)

# A wrong password must not become a request to Secrets Manager per connection attempt.
REFRESH_INTERVAL = 30.0
# invalid_password, invalid_authorization_specification
LOGIN_REFUSED_STATES = {"28P01", "28000"}

NETWORK_HINT = (
    "with VPC egress (App Runner VPC connector, tasks in private subnets) the app reaches "
    "Secrets Manager only through a secretsmanager interface endpoint or a NAT gateway "
    "(deploy/network-data.yaml makes it for both platforms)"
)


def login_refused(error: BaseException) -> bool:
    """True for PostgreSQL refusing the user or password, not for an unreachable server."""
    if getattr(error, "sqlstate", None) in LOGIN_REFUSED_STATES:
        return True
    return "password authentication failed" in str(error)


class SecretPassword:
    """The database password, as the secret held it when last read."""

    def __init__(
        self,
        arn: str,
        password: str,
        *,
        region: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.arn = arn
        self.current = password
        self._region = region
        self._clock = clock
        self._read_at = -math.inf
        self._lock = threading.Lock()
        self._client: Any = None

    def _secrets_manager(self) -> Any:
        if self._client is None:
            # Short bounds: this runs while a request waits for a database connection.
            config = Config(
                region_name=self._region,
                connect_timeout=2,
                read_timeout=5,
                retries={"total_max_attempts": 2, "mode": "standard"},
            )
            self._client = boto3.session.Session().client("secretsmanager", config=config)
        return self._client

    def refresh(self) -> bool:
        """Read the secret again; True if it now holds a different password."""
        with self._lock:
            now = self._clock()
            if now - self._read_at < REFRESH_INTERVAL:
                return False
            self._read_at = now
            try:
                response = self._secrets_manager().get_secret_value(SecretId=self.arn)
                password = json.loads(response["SecretString"])["password"]
            except (BotoCoreError, ClientError) as error:
                log.error(
                    "database login refused and re-reading DB_SECRET_ARN failed: %s; %s",
                    type(error).__name__,
                    NETWORK_HINT,
                )
                return False
            except (KeyError, TypeError, ValueError):
                log.error("the secret at DB_SECRET_ARN is not JSON with a password member")
                return False
            if not isinstance(password, str) or password == self.current:
                return False
            add_secret(password)
            self.current = password
            log.warning("database password re-read from DB_SECRET_ARN after a refused login")
            return True


def init_app(app: Flask) -> None:
    """With DB_SECRET_ARN set and PostgreSQL in use, follow the secret's rotations."""
    arn = app.config.get("DB_SECRET_ARN")
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if not arn or url.get_backend_name() != "postgresql":
        return
    password = SecretPassword(arn, url.password or "", region=app.config["AWS_REGION"])
    app.extensions["diary.db_password"] = password
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "do_connect")
    def connect_with_current_password(
        dialect: Any, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
    ) -> Any:
        cparams["password"] = password.current
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as error:
            if not (login_refused(error) and password.refresh()):
                raise
        cparams["password"] = password.current
        return dialect.connect(*cargs, **cparams)
