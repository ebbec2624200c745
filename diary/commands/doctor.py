"""`flask --app diary doctor`: why can't this deployment reach its database or bucket?

Run inside the running environment (App Runner or ECS exec, or the same image
with the same variables). Every step is its own check with a result, its time
and, on failure, a hint naming the usual cause, so the first failing line says
what to fix. Exits non-zero when anything failed. Never prints the password.

If the configuration is so broken that the app cannot start, `flask` cannot
load the command at all; `python -m diary.commands.doctor` reports that case too.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError
from botocore.exceptions import ReadTimeoutError as BotoReadTimeout
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from .. import config as settings
from ..infra.logs import add_secret, redact
from ..infra.storage import LocalStorage, S3Storage

DEFAULT_TIMEOUT = 3.0

HINT_CONFIG = "fix the variable named above; see docs/operations.md for the settings"
HINT_SQLITE = (
    "set DATABASE_URL, DB_ENDPOINT/DB_USER/DB_PASSWORD or DB_SECRET: the embedded SQLite "
    "file is lost whenever the container is replaced"
)
HINT_DB_DNS = (
    "check DB_ENDPOINT (or host in DB_SECRET); an RDS endpoint resolves only where DNS "
    "works: the service needs VPC egress (App Runner VPC connector, ECS tasks in the VPC)"
)
HINT_DB_REFUSED = (
    "nothing listens there: check DB_ENDPOINT and DB_PORT, and that the database is running"
)
HINT_DB_TIMEOUT = (
    "the database timed out: the database security group must allow TCP 5432 from the "
    "App Runner VPC connector's (or the ECS task's) security group, and the service must "
    "run with VPC egress on the database's VPC"
)
HINT_DB_LOGIN = (
    "login failed: check DB_USER/DB_PASSWORD or DB_SECRET (after the secret rotates, "
    "the service re-reads it if DB_SECRET_ARN is set and Secrets Manager is reachable; "
    "otherwise deploy again so it gets the new value)"
)
HINT_DB_NAME = "the database does not exist: check DB_NAME (or dbname in DB_SECRET)"
HINT_DB_TLS_CA = (
    "TLS: the database's certificate is not signed by a CA in DB_SSLROOTCERT (the password "
    "was never sent): for RDS use the bundle the image ships, /app/certs/rds-global-bundle.pem "
    "(an RDS Proxy needs DB_SSLROOTCERT=system); otherwise the CA of your own server"
)
HINT_DB_TLS_HOSTNAME = (
    "TLS: the database's certificate does not name the host connected to (the password was "
    "never sent): DB_ENDPOINT must be the RDS endpoint name itself, not an IP address or a "
    "DNS alias of your own; DB_SSLMODE=verify-ca checks the CA without the name"
)
HINT_DB_TLS_ROOTCERT = (
    "TLS: the CA bundle named by DB_SSLROOTCERT is missing or unreadable; the image ships "
    "Amazon RDS's at /app/certs/rds-global-bundle.pem"
)
HINT_DB_TLS_REQUIRED = (
    "the server accepts only TLS connections (RDS with rds.force_ssl): set DB_SSLMODE to "
    "verify-full (the default with DB_ENDPOINT/DB_SECRET) or require"
)
HINT_DB_TLS_UNSUPPORTED = (
    "the server does not offer TLS but DB_SSLMODE requires it: turn TLS on at the server, "
    "or, on a trusted network only, set DB_SSLMODE=prefer"
)
HINT_SCHEMA_BEHIND = (
    "the schema is behind: run `flask db upgrade` (or start the service with MIGRATE_ON_START=true)"
)
HINT_SCHEMA_PRIVILEGES = (
    "the database user cannot read the schema: connect as the owner of the diary's tables "
    "(the user that ran the migrations)"
)
HINT_SCHEMA_AHEAD = (
    "the database is at a revision this code does not know: it was migrated by a newer "
    "release; deploy that release (or downgrade with the newer code)"
)
HINT_S3_DNS = (
    "the S3 endpoint does not resolve: check AWS_REGION and S3_ENDPOINT_URL, and that the "
    "VPC has DNS resolution enabled"
)
HINT_S3_TIMEOUT = (
    "S3 timed out: with a VPC connector (or tasks in private subnets) all traffic leaves "
    "through the VPC; add an S3 gateway VPC endpoint to the private subnets' route table, "
    "or a NAT gateway"
)
HINT_S3_REFUSED = "nothing listens at the S3 endpoint: check S3_ENDPOINT_URL"
HINT_BUCKET_MISSING = "no such bucket: check BUCKET (and AWS_REGION), or create the bucket"
HINT_BUCKET_REGION = "the bucket is in another region: set AWS_REGION to the bucket's region"
HINT_S3_DENIED = (
    "access denied: the instance role (App Runner) or task role (ECS) needs s3:ListBucket on "
    "the bucket and s3:PutObject/s3:GetObject/s3:DeleteObject on its objects (and kms:* on a "
    "KMS key, if the bucket uses one); a VPC endpoint policy can deny too"
)
HINT_LOCAL_STORAGE = "LOCAL_STORAGE_DIR must be a writable folder for the service's user"


@dataclass
class Result:
    """One check: "ok", "warn", "fail" or "skip", its time, what it saw, and a hint."""

    name: str
    status: str
    ms: float | None = None
    detail: str = ""
    hint: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "fail"


class CheckFailed(Exception):
    """A check's failure with the hint for the operator."""

    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


def bounded(function: Callable[[], Any], timeout: float) -> Any:
    """Call `function` but give up after `timeout` s (DNS lookups cannot time out by themselves)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doctor")
    try:
        return executor.submit(function).result(timeout=timeout)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


class Doctor:
    """Runs the checks in order; a check whose prerequisite failed is skipped."""

    def __init__(self, app: Flask, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.app = app
        self.config: Mapping[str, Any] = app.config
        self.timeout = timeout
        self.results: list[Result] = []
        self.url: URL = make_url(self.config["SQLALCHEMY_DATABASE_URI"])
        add_secret(self.url.password)

    # --- running ----------------------------------------------------------

    def check(self, name: str, function: Callable[[], str | Result]) -> Result:
        started = time.perf_counter()
        try:
            outcome = function()
            result = outcome if isinstance(outcome, Result) else Result(name, "ok", detail=outcome)
        except CheckFailed as failure:
            result = Result(name, "fail", detail=failure.detail, hint=failure.hint)
        except (TimeoutError, FutureTimeout):
            result = Result(name, "fail", detail=f"no answer within {self.timeout:g} s")
        except Exception as error:
            # An unforeseen failure is still a result, not a crash of the whole report.
            result = Result(name, "fail", detail=f"{type(error).__name__}: {error}")
        result.name = name
        result.ms = round((time.perf_counter() - started) * 1000, 1)
        result.detail = redact(result.detail)
        self.results.append(result)
        return result

    def skip(self, name: str, because: str) -> None:
        self.results.append(Result(name, "skip", detail=f"skipped: {because}"))

    def run(self) -> list[Result]:
        """All checks: configuration, database, storage."""
        self.check("configuration", self.check_config)
        self.run_database_checks()
        self.run_storage_checks()
        return self.results

    # --- configuration ----------------------------------------------------

    def check_config(self) -> str | Result:
        # create_app has validated every variable already; confirm the result is usable.
        database = settings.describe_database(self.config["SQLALCHEMY_DATABASE_URI"])
        storage = self.app.extensions["diary.storage"].describe()
        detail = f"database {database}; storage {storage}; SECRET_KEY set"
        if self.url.get_backend_name() == "sqlite" and not (
            self.app.debug or self.config.get("TESTING")
        ):
            return Result("configuration", "warn", detail=detail, hint=HINT_SQLITE)
        return detail

    # --- database ---------------------------------------------------------

    def run_database_checks(self) -> None:
        if self.url.get_backend_name() == "sqlite":
            for name in ("database host resolves", "database port answers"):
                self.skip(name, "SQLite file, no server")
            login = self.check("database login", self.check_sqlite_file)
        else:
            host, port = self.url.host or "localhost", self.url.port or 5432
            resolved = self.check(
                "database host resolves", lambda: self.check_resolves(host, port, HINT_DB_DNS)
            )
            if resolved.failed:
                for name in ("database port answers", "database login", "database schema"):
                    self.skip(name, "the host does not resolve")
                return
            answered = self.check(
                "database port answers",
                lambda: self.check_port(host, port, HINT_DB_REFUSED, HINT_DB_TIMEOUT),
            )
            if answered.failed:
                for name in ("database login", "database schema"):
                    self.skip(name, "the port does not answer")
                return
            login = self.check("database login", self.check_login)
        if login.failed:
            self.skip("database schema", "cannot log in")
            return
        self.check("database schema", self.check_schema)

    def engine(self) -> sa.Engine:
        connect_args: dict[str, Any] = {}
        if self.url.get_backend_name() == "postgresql":
            # The app's own (TLS settings included), so the doctor connects as it does.
            connect_args.update(self.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {}))
            # libpq's own bound; `bounded` is the hard one.
            connect_args["connect_timeout"] = max(2, int(self.timeout))
        return sa.create_engine(self.url, poolclass=NullPool, connect_args=connect_args)

    def check_resolves(self, host: str, port: int, hint: str) -> str:
        try:
            addresses = bounded(
                lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), self.timeout
            )
        except (TimeoutError, FutureTimeout):
            raise CheckFailed(f"{host}: no DNS answer within {self.timeout:g} s", hint) from None
        except OSError as error:
            raise CheckFailed(f"{host}: {error.strerror or error}", hint) from None
        found = sorted({address[4][0] for address in addresses})
        return f"{host} -> {', '.join(found)}"

    def check_port(self, host: str, port: int, refused_hint: str, timeout_hint: str) -> str:
        try:
            with socket.create_connection((host, port), timeout=self.timeout):
                pass
        except TimeoutError:
            raise CheckFailed(
                f"{host}:{port}: no answer within {self.timeout:g} s", timeout_hint
            ) from None
        except ConnectionRefusedError:
            raise CheckFailed(f"{host}:{port}: connection refused", refused_hint) from None
        except OSError as error:
            raise CheckFailed(f"{host}:{port}: {error.strerror or error}", timeout_hint) from None
        return f"{host}:{port} accepts connections"

    def check_login(self) -> str:
        def login() -> tuple[str, str]:
            engine = self.engine()
            try:
                with engine.connect() as connection:
                    version = connection.execute(sa.text("SHOW server_version")).scalar_one()
                    tls = connection.execute(
                        sa.text("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    ).scalar()
                    return str(version), str(tls) if tls else "no TLS"
            finally:
                engine.dispose()

        user = self.url.username
        try:
            version, tls = bounded(login, self.timeout + 1)
        except (TimeoutError, FutureTimeout):
            raise CheckFailed(
                f"the server accepted the connection but did not answer within {self.timeout:g} s",
                HINT_DB_TIMEOUT,
            ) from None
        except sa.exc.OperationalError as error:
            message = str(error.orig or error).strip().splitlines()[0]
            lowered = message.lower()
            if "database" in lowered and "does not exist" in lowered:
                raise CheckFailed(message, HINT_DB_NAME) from None
            if "timeout" in lowered or "timed out" in lowered:
                raise CheckFailed(message, HINT_DB_TIMEOUT) from None
            # Before the login words: these fail before any password is sent.
            if tls_hint := self.tls_hint(str(error.orig or error).lower()):
                raise CheckFailed(message, tls_hint) from None
            if any(word in lowered for word in ("password", "role", "authentication", "pg_hba")):
                raise CheckFailed(message, HINT_DB_LOGIN) from None
            raise CheckFailed(message, HINT_DB_LOGIN) from None
        sslmode = self.sslmode()
        return (
            f"logged in as {user} to {self.url.database} (PostgreSQL {version}; "
            f"{tls}, sslmode {sslmode})"
        )

    def sslmode(self) -> str:
        """The sslmode libpq uses: the app's setting, else the URL's, else libpq's default."""
        connect_args = self.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {})
        return str(connect_args.get("sslmode") or self.url.query.get("sslmode") or "prefer")

    @staticmethod
    def tls_hint(lowered: str) -> str | None:
        """The hint for a failed TLS handshake or a TLS policy refusal, from libpq's message."""
        if "does not match host name" in lowered:
            return HINT_DB_TLS_HOSTNAME
        if "certificate verify failed" in lowered or "self-signed certificate" in lowered:
            return HINT_DB_TLS_CA
        if "root certificate file" in lowered or "could not read root certificate" in lowered:
            return HINT_DB_TLS_ROOTCERT
        if "server does not support ssl" in lowered:
            return HINT_DB_TLS_UNSUPPORTED
        if "no encryption" in lowered:
            return HINT_DB_TLS_REQUIRED
        return None

    def check_sqlite_file(self) -> str:
        engine = self.engine()
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as error:
            raise CheckFailed(str(error.orig or error), HINT_SQLITE) from None
        finally:
            engine.dispose()
        return f"SQLite file {self.url.database} opens"

    def migrations_directory(self) -> Path:
        configured = Path(self.app.extensions["migrate"].directory)
        if configured.is_absolute():
            return configured
        # Relative to the project (next to the package), not to wherever we were started.
        return Path(self.app.root_path).parent / configured

    def check_schema(self) -> str:
        script = ScriptDirectory(str(self.migrations_directory()))
        heads = set(script.get_heads())
        known = {revision.revision for revision in script.walk_revisions()}
        engine = self.engine()
        try:
            with engine.connect() as connection:
                current = set(MigrationContext.configure(connection).get_current_heads())
        except sa.exc.ProgrammingError as error:
            message = str(error.orig or error).strip().splitlines()[0]
            raise CheckFailed(message, HINT_SCHEMA_PRIVILEGES) from None
        finally:
            engine.dispose()
        latest = ", ".join(sorted(heads))
        if current == heads:
            return f"at the latest migration ({latest})"
        if not current:
            raise CheckFailed(f"no migration applied; latest is {latest}", HINT_SCHEMA_BEHIND)
        if current - known:
            raise CheckFailed(
                f"at {', '.join(sorted(current))}, unknown to this release (latest {latest})",
                HINT_SCHEMA_AHEAD,
            )
        raise CheckFailed(
            f"at {', '.join(sorted(current))}; latest is {latest}", HINT_SCHEMA_BEHIND
        )

    # --- storage ----------------------------------------------------------

    def run_storage_checks(self) -> None:
        storage = self.app.extensions["diary.storage"]
        if isinstance(storage, LocalStorage):
            self.check("storage folder writable", lambda: self.check_local(storage))
            return
        assert isinstance(storage, S3Storage)
        endpoint = urlsplit(storage.client.meta.endpoint_url)
        host = endpoint.hostname or ""
        port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
        resolved = self.check(
            "s3 endpoint resolves", lambda: self.check_resolves(host, port, HINT_S3_DNS)
        )
        if resolved.failed:
            for name in ("s3 endpoint answers", "s3 bucket exists", "s3 put and delete"):
                self.skip(name, "the endpoint does not resolve")
            return
        answered = self.check(
            "s3 endpoint answers", lambda: self.check_http(endpoint.scheme, host, port)
        )
        if answered.failed:
            for name in ("s3 bucket exists", "s3 put and delete"):
                self.skip(name, "the endpoint does not answer")
            return
        client = storage.probe_client(self.timeout)
        exists = self.check("s3 bucket exists", lambda: self.check_bucket(client, storage.bucket))
        if exists.failed:
            self.skip("s3 put and delete", "no usable bucket")
            return
        self.check("s3 put and delete", lambda: self.check_put_delete(client, storage.bucket))

    def check_http(self, scheme: str, host: str, port: int) -> str:
        connection_class = (
            http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(host, port, timeout=self.timeout)
        try:
            connection.request("HEAD", "/")
            status = connection.getresponse().status
        except TimeoutError:
            raise CheckFailed(
                f"{host}:{port}: no answer within {self.timeout:g} s", HINT_S3_TIMEOUT
            ) from None
        except ConnectionRefusedError:
            raise CheckFailed(f"{host}:{port}: connection refused", HINT_S3_REFUSED) from None
        except OSError as error:
            raise CheckFailed(f"{host}:{port}: {error}", HINT_S3_TIMEOUT) from None
        finally:
            connection.close()
        return f"{scheme}://{host}:{port} answered HTTP {status}"

    def _s3_failure(self, error: Exception) -> CheckFailed:
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("404", "NoSuchBucket"):
                return CheckFailed(f"S3 says {code}: no such bucket", HINT_BUCKET_MISSING)
            if code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed"):
                return CheckFailed(f"S3 says {code}", HINT_BUCKET_REGION)
            if code in ("403", "AccessDenied") or status == 403:
                return CheckFailed(f"S3 says {code}", HINT_S3_DENIED)
            return CheckFailed(f"S3 says {code} (HTTP {status})", HINT_S3_DENIED)
        if isinstance(error, ConnectTimeoutError | BotoReadTimeout | EndpointConnectionError):
            return CheckFailed(f"{type(error).__name__}: {error}", HINT_S3_TIMEOUT)
        return CheckFailed(f"{type(error).__name__}: {error}", HINT_S3_TIMEOUT)

    def check_bucket(self, client: Any, bucket: str) -> str:
        try:
            bounded(lambda: client.head_bucket(Bucket=bucket), self.timeout * 2 + 1)
        except (TimeoutError, FutureTimeout):
            raise CheckFailed(f"no answer within {self.timeout:g} s", HINT_S3_TIMEOUT) from None
        except Exception as error:
            raise self._s3_failure(error) from None
        return f"bucket {bucket} exists and is reachable"

    def check_put_delete(self, client: Any, bucket: str) -> str:
        key = f"doctor-probe/{uuid.uuid4().hex}.txt"

        def put_and_delete() -> None:
            client.put_object(Bucket=bucket, Key=key, Body=b"diary doctor probe")
            client.delete_object(Bucket=bucket, Key=key)

        try:
            bounded(put_and_delete, self.timeout * 4 + 1)
        except (TimeoutError, FutureTimeout):
            raise CheckFailed(f"no answer within {self.timeout:g} s", HINT_S3_TIMEOUT) from None
        except Exception as error:
            raise self._s3_failure(error) from None
        return f"wrote and deleted s3://{bucket}/{key}"

    def check_local(self, storage: LocalStorage) -> str:
        try:
            storage.check(self.timeout)
        except OSError as error:
            raise CheckFailed(
                f"{storage.root}: {error.strerror or error}", HINT_LOCAL_STORAGE
            ) from None
        return f"{storage.root} is writable"


# --- output -----------------------------------------------------------------


def render(results: list[Result]) -> str:
    """The report operators read: one line per check, hints indented under failures."""
    width = max(len(result.name) for result in results)
    lines = []
    for result in results:
        time_text = f"{result.ms:>8.1f} ms" if result.ms is not None else " " * 11
        lines.append(
            f"{result.status.upper():<4}  {result.name:<{width}}  {time_text}  {result.detail}"
        )
        if result.hint and result.status in ("fail", "warn"):
            lines.append(f"      hint: {result.hint}")
    failed = sum(result.failed for result in results)
    lines.append(
        f"{failed} of {len(results)} checks failed"
        if failed
        else f"all {len(results)} checks passed"
    )
    return "\n".join(lines)


def report(results: list[Result], *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([asdict(result) for result in results], ensure_ascii=False))
    else:
        click.echo(render(results))


@click.command("doctor")
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each network step.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@with_appcontext
def doctor_command(timeout: float, as_json: bool) -> None:
    """Check configuration, database and storage from here; exit 1 if anything fails."""
    results = Doctor(current_app._get_current_object(), timeout).run()  # type: ignore[attr-defined]
    report(results, as_json=as_json)
    if any(result.failed for result in results):
        sys.exit(1)


COMMANDS = (doctor_command,)


def main(argv: list[str] | None = None) -> int:
    """`python -m diary.commands.doctor`: also reports a configuration the app refuses."""
    from .. import ConfigError, create_app

    args = argv if argv is not None else sys.argv[1:]
    try:
        app = create_app()
    except ConfigError as error:
        # The message names the variable and never its value.
        report(
            [Result("configuration", "fail", 0.0, redact(str(error)), HINT_CONFIG)],
            as_json="--json" in args,
        )
        return 1
    return doctor_command.main(args=args, standalone_mode=False, obj=_script_info(app)) or 0


def _script_info(app: Flask) -> Any:
    from flask.cli import ScriptInfo

    return ScriptInfo(create_app=lambda: app)


if __name__ == "__main__":
    sys.exit(main())
