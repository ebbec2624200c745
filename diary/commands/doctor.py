"""`flask --app diary doctor`: why can't this deployment reach its database or bucket?

Run inside the running environment (App Runner or ECS exec, or the same image
with the same variables). The checks are one ordered table, STEPS: each line of
the report has a result, its time and, on failure, a hint naming the usual cause,
so the first failing line says what to fix; a step whose prerequisite did not
pass is skipped. Exits non-zero when anything failed. Never prints the password.

If the configuration is so broken that the app cannot start, `flask` cannot
load the command at all; `python -m diary.commands.doctor` reports that case too.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from functools import partial
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from botocore.exceptions import ClientError
from flask import Flask, current_app
from flask.cli import ScriptInfo, with_appcontext
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from .. import config as settings
from ..infra.logs import add_secret, redact
from ..infra.storage import Storage

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

# S3's refusals with a likelier cause than the permissions (HINT_S3_DENIED).
S3_CODE_HINTS = {
    "404": HINT_BUCKET_MISSING,
    "NoSuchBucket": HINT_BUCKET_MISSING,
    "301": HINT_BUCKET_REGION,
    "PermanentRedirect": HINT_BUCKET_REGION,
    "AuthorizationHeaderMalformed": HINT_BUCKET_REGION,
}

# libpq's words for a failed TLS handshake or a TLS policy refusal; looked for
# before the login hint because these fail before any password is sent.
TLS_HINTS = (
    (("does not match host name",), HINT_DB_TLS_HOSTNAME),
    (("certificate verify failed", "self-signed certificate"), HINT_DB_TLS_CA),
    (("root certificate file", "could not read root certificate"), HINT_DB_TLS_ROOTCERT),
    (("server does not support ssl",), HINT_DB_TLS_UNSUPPORTED),
    (("no encryption",), HINT_DB_TLS_REQUIRED),
)

SERVER_FACTS = sa.text(
    "SELECT current_setting('server_version'),"
    " (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
)


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
    """A check that did not simply pass: what it saw and the hint for the operator."""

    status = "fail"

    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


class CheckWarning(CheckFailed):
    """It works, but not for long (an SQLite file in production): shown, not counted."""

    status = "warn"


class Checkup:
    """What the steps look at, and how long each network step may wait."""

    def __init__(self, app: Flask, timeout: float) -> None:
        self.app, self.timeout = app, timeout
        self.url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
        self.storage: Storage = app.extensions["diary.storage"]
        # The app's own (TLS settings included), so the doctor connects as it does.
        self.connect_args = app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {})


class Server(NamedTuple):
    """A network address to trace hop by hop, with the usual cause of each hop's failure."""

    host: str
    port: int
    scheme: str | None  # http(s): once connected, ask for HEAD /
    unresolved: str
    refused: str
    silent: str


T = TypeVar("T")


def bounded(function: Callable[[], T], timeout: float) -> T:
    """Call `function` but give up after `timeout` s (DNS lookups cannot time out by themselves)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doctor")
    try:
        return executor.submit(function).result(timeout=timeout)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


# --- the steps: each returns what it saw or raises CheckFailed ---------------------


def configuration(d: Checkup) -> str:
    # create_app has validated every variable already; confirm the result is usable.
    database = settings.describe_database(d.app.config["SQLALCHEMY_DATABASE_URI"])
    detail = f"database {database}; storage {d.storage.describe()}; SECRET_KEY set"
    if d.url.get_backend_name() == "sqlite" and not (d.app.debug or d.app.testing):
        raise CheckWarning(detail, HINT_SQLITE)
    return detail


def database_server(d: Checkup) -> Server:
    host, port = d.url.host or "localhost", d.url.port or 5432
    return Server(host, port, None, HINT_DB_DNS, HINT_DB_REFUSED, HINT_DB_TIMEOUT)


def storage_server(d: Checkup) -> Server:
    endpoint = urlsplit(d.storage.endpoint)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    hints = HINT_S3_DNS, HINT_S3_REFUSED, HINT_S3_TIMEOUT
    return Server(endpoint.hostname or "", port, endpoint.scheme, *hints)


def resolves(server_of: Callable[[Checkup], Server]) -> Callable[[Checkup], str]:
    """The step: the server's host name resolves (within the timeout: DNS has no own bound)."""

    def check(d: Checkup) -> str:
        server = server_of(d)
        lookup = partial(socket.getaddrinfo, server.host, server.port, type=socket.SOCK_STREAM)
        try:
            found = {address[4][0] for address in bounded(lookup, d.timeout)}
        except TimeoutError:
            problem = f"no DNS answer within {d.timeout:g} s"
        except OSError as error:
            problem = error.strerror or str(error)
        else:
            return f"{server.host} -> {', '.join(sorted(found))}"
        raise CheckFailed(f"{server.host}: {problem}", server.unresolved)

    return check


def answers(server_of: Callable[[Checkup], Server]) -> Callable[[Checkup], str]:
    """The step: the server accepts a connection (and, over HTTP, answers HEAD /)."""

    def check(d: Checkup) -> str:
        server = server_of(d)
        where = f"{server.host}:{server.port}"
        try:
            if server.scheme is None:
                socket.create_connection(server[:2], timeout=d.timeout).close()
                return f"{where} accepts connections"
            http = HTTPSConnection if server.scheme == "https" else HTTPConnection
            with closing(http(*server[:2], timeout=d.timeout)) as connection:
                connection.request("HEAD", "/")
                status = connection.getresponse().status
            return f"{server.scheme}://{where} answered HTTP {status}"
        except TimeoutError:
            raise CheckFailed(f"{where}: no answer within {d.timeout:g} s", server.silent) from None
        except ConnectionRefusedError:
            raise CheckFailed(f"{where}: connection refused", server.refused) from None
        except OSError as error:
            raise CheckFailed(f"{where}: {error.strerror or error}", server.silent) from None

    return check


def connected(d: Checkup, use: Callable[[sa.Connection], T]) -> T:
    """`use` a fresh connection made as the app makes them; nothing pooled stays behind."""
    connect_args: dict[str, Any] = {}
    if d.url.get_backend_name() == "postgresql":
        # libpq's own bound; `bounded` is the hard one.
        connect_args = {**d.connect_args, "connect_timeout": max(2, int(d.timeout))}
    engine = sa.create_engine(d.url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            return use(connection)
    finally:
        engine.dispose()


def database_login(d: Checkup) -> str:
    if d.url.get_backend_name() == "sqlite":
        try:
            connected(d, lambda connection: connection.execute(sa.text("SELECT 1")))
        except sa.exc.OperationalError as error:
            raise CheckFailed(str(error.orig or error), HINT_SQLITE) from None
        return f"SQLite file {d.url.database} opens"
    try:
        facts = bounded(
            lambda: connected(d, lambda c: c.execute(SERVER_FACTS).one()), d.timeout + 1
        )
    except TimeoutError:
        raise CheckFailed(
            f"the server accepted the connection but did not answer within {d.timeout:g} s",
            HINT_DB_TIMEOUT,
        ) from None
    except sa.exc.OperationalError as error:
        message = str(error.orig or error)
        raise CheckFailed(message.strip().splitlines()[0], login_hint(message.lower())) from None
    version, tls = facts
    # The sslmode libpq used: the app's setting, else the URL's, else libpq's default.
    sslmode = d.connect_args.get("sslmode") or d.url.query.get("sslmode") or "prefer"
    return (
        f"logged in as {d.url.username} to {d.url.database} (PostgreSQL {version}; "
        f"{tls or 'no TLS'}, sslmode {sslmode})"
    )


def login_hint(message: str) -> str:
    """The usual cause of a refused connection, from libpq's (lower-cased) message."""
    first_line = message.strip().splitlines()[0]
    if "database" in first_line and "does not exist" in first_line:
        return HINT_DB_NAME
    if "timeout" in first_line or "timed out" in first_line:
        return HINT_DB_TIMEOUT
    tls = (hint for words, hint in TLS_HINTS if any(word in message for word in words))
    return next(tls, HINT_DB_LOGIN)


def database_schema(d: Checkup) -> str:
    migrations = Path(d.app.extensions["migrate"].directory)
    # Relative to the project (next to the package), not to wherever we were started.
    script = ScriptDirectory(str(Path(d.app.root_path).parent / migrations))
    heads = set(script.get_heads())
    known = {revision.revision for revision in script.walk_revisions()}
    try:
        current = connected(d, lambda c: set(MigrationContext.configure(c).get_current_heads()))
    except sa.exc.ProgrammingError as error:
        message = str(error.orig or error).strip().splitlines()[0]
        raise CheckFailed(message, HINT_SCHEMA_PRIVILEGES) from None
    latest, at = ", ".join(sorted(heads)), ", ".join(sorted(current))
    if current == heads:
        return f"at the latest migration ({latest})"
    if not current:
        raise CheckFailed(f"no migration applied; latest is {latest}", HINT_SCHEMA_BEHIND)
    if current - known:
        raise CheckFailed(f"at {at}, unknown to this release (latest {latest})", HINT_SCHEMA_AHEAD)
    raise CheckFailed(f"at {at}; latest is {latest}", HINT_SCHEMA_BEHIND)


def storage_call(function: Callable[[], T], seconds: float, hint: str) -> T:
    """`function` bounded by `seconds`; S3's refusals name their cause, the rest get `hint`."""
    try:
        return bounded(function, seconds)
    except TimeoutError:
        raise CheckFailed(f"no answer within {seconds:g} s", hint) from None
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        detail = f"S3 says {code} (HTTP {status})"
        raise CheckFailed(detail, S3_CODE_HINTS.get(code, HINT_S3_DENIED)) from None
    except Exception as error:
        raise CheckFailed(f"{type(error).__name__}: {error}", hint) from None


def bucket_exists(d: Checkup) -> str:
    storage_call(lambda: d.storage.check(d.timeout), d.timeout * 2 + 1, HINT_S3_TIMEOUT)
    return f"{d.storage.describe()}: exists and is reachable"


def put_and_delete(d: Checkup, hint: str = HINT_S3_TIMEOUT) -> str:
    written = storage_call(lambda: d.storage.probe(d.timeout), d.timeout * 4 + 1, hint)
    return f"wrote and deleted {written}"


def folder_writable(d: Checkup) -> str:
    return put_and_delete(d, HINT_LOCAL_STORAGE)


# --- the table ---------------------------------------------------------------------


def on_a_server(d: Checkup) -> bool:
    return d.url.get_backend_name() != "sqlite"


def on_the_network(d: Checkup) -> bool:
    return d.storage.endpoint is not None


def in_a_folder(d: Checkup) -> bool:
    return d.storage.endpoint is None


@dataclass(frozen=True)
class Step:
    """A line of the report: `check` runs when every step it `needs` passed, else it is skipped.

    `when` says whether this deployment has the step at all: it asks what the database
    and the storage are (a server or a file, an endpoint or a folder), never their class.
    """

    name: str
    check: Callable[[Checkup], str]
    needs: tuple[str, ...] = ()
    when: Callable[[Checkup], bool] = lambda d: True


STEPS = (
    # name, check, the steps it needs, when this deployment has it
    Step("configuration", configuration),
    Step("database host resolves", resolves(database_server), when=on_a_server),
    Step(
        "database port answers", answers(database_server), ("database host resolves",), on_a_server
    ),
    Step("database login", database_login, ("database port answers",)),
    Step("database schema", database_schema, ("database login",)),
    Step("s3 endpoint resolves", resolves(storage_server), when=on_the_network),
    Step("s3 endpoint answers", answers(storage_server), ("s3 endpoint resolves",), on_the_network),
    Step("s3 bucket exists", bucket_exists, ("s3 endpoint answers",), on_the_network),
    Step("s3 put and delete", put_and_delete, ("s3 bucket exists",), on_the_network),
    Step("storage folder writable", folder_writable, when=in_a_folder),
)


def attempt(step: Step, d: Checkup) -> Result:
    started = time.perf_counter()
    try:
        status, detail, hint = "ok", step.check(d), None
    except CheckFailed as outcome:
        status, detail, hint = outcome.status, outcome.detail, outcome.hint
    except Exception as error:
        # An unforeseen failure is still a result, not a crash of the whole report.
        status, detail, hint = "fail", f"{type(error).__name__}: {error}", None
    ms = round((time.perf_counter() - started) * 1000, 1)
    return Result(step.name, status, ms, redact(detail), hint)


def diagnose(app: Flask, timeout: float = DEFAULT_TIMEOUT) -> list[Result]:
    """The steps this deployment has, in order."""
    d = Checkup(app, timeout)
    add_secret(d.url.password)
    results: list[Result] = []
    failed: dict[str, str] = {}  # a step that did not pass -> the step that failed first
    for step in (step for step in STEPS if step.when(d)):
        cause = next((failed[name] for name in step.needs if name in failed), None)
        if cause:
            result = Result(step.name, "skip", detail=f"skipped: {cause} failed")
        else:
            result = attempt(step, d)
        if cause or result.failed:
            failed[step.name] = cause or step.name
        results.append(result)
    return results


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
    results = diagnose(current_app._get_current_object(), timeout)  # type: ignore[attr-defined]
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
    info = ScriptInfo(create_app=lambda: app)
    return doctor_command.main(args=args, standalone_mode=False, obj=info) or 0


if __name__ == "__main__":
    sys.exit(main())
