"""Configuration from the environment, validated once at start-up.

Layers, later wins: built-in defaults, the environment, then the test config.
Anything malformed stops the app with a ConfigError naming the variable, so a
bad deployment fails at boot instead of on the first request.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import available_timezones

from sqlalchemy.engine import URL, make_url

DEFAULT_REGION = "ap-northeast-1"
# libpq's sslmode values, weakest first.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# An RDS endpoint's name is in its certificate, signed by the RDS CAs the image ships.
RDS_SSLMODE = "verify-full"


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(
    value: str | Iterable[str], name: str = "TRUSTED_PROXY_CIDRS"
) -> tuple[Network, ...]:
    """Comma-separated CIDRs (or single addresses) as networks; ConfigError names `name`.

    Strict, as gunicorn's own check is: 10.0.0.1/8 (host bits set) is refused
    rather than silently read as 10.0.0.0/8.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    networks = []
    for item in (str(each).strip() for each in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            raise ConfigError(
                f"{name} must be a comma-separated list of CIDRs such as 10.40.0.0/16, got {item!r}"
            ) from None
    return tuple(networks)


def defaults(instance_path: str) -> dict[str, Any]:
    instance = Path(instance_path)
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance / 'diary.sqlite3'}",
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        "BUCKET": None,
        "AWS_REGION": DEFAULT_REGION,
        "S3_ENDPOINT_URL": None,
        "S3_CONNECT_TIMEOUT": 3.0,
        "S3_READ_TIMEOUT": 10.0,
        "S3_MAX_ATTEMPTS": 2,
        "S3_FAILURE_COOLDOWN": 10.0,
        # Where DB_SECRET came from, to read it again after RDS rotates the password.
        "DB_SECRET_ARN": None,
        # PostgreSQL TLS: None leaves it to DATABASE_URL (libpq's default is "prefer",
        # which neither insists on TLS nor checks the server's certificate).
        "DB_SSLMODE": None,
        "DB_SSLROOTCERT": None,
        "LOCAL_STORAGE_DIR": str(instance / "photos"),
        "IMAGE_URL_EXPIRES": 15 * 60,
        # Database connections per process: one per request thread (gunicorn's
        # GUNICORN_THREADS), so an instance holds WEB_CONCURRENCY x this at most.
        "DB_POOL_SIZE": 4,
        "MAX_UPLOAD_MB": 20,
        # A request's headers, then its body, must arrive within these many seconds
        # (diary/infra/gunicorn_worker.py, diary/web/request_deadline.py): a client that stalls
        # mid-request must not hold a worker thread. The body's bound is under the
        # 120 s App Runner allows a whole request; 20 MB in 60 s needs about 3 Mbit/s.
        "REQUEST_HEADER_TIMEOUT": 10.0,
        "REQUEST_BODY_TIMEOUT": 60.0,
        "MAX_ENTRY_CHARS": 20_000,
        "SECRET_KEY": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Accounts come from the CLI unless sign-up is allowed.
        "ALLOW_SIGNUP": False,
        "DEFAULT_TIMEZONE": "Asia/Tokyo",
        # `flask --app diary purge` removes entries trashed longer ago.
        "TRASH_DAYS": 30,
        # Where throttling counts. Unset: database:// (the app's own database,
        # shared by every instance) on PostgreSQL, memory:// (per process) on SQLite.
        "RATELIMIT_STORAGE_URI": None,
        "RATELIMIT_HEADERS_ENABLED": True,
        # Failed sign-ins allowed per client address, per account from browsers
        # without its device cookie, and per device cookie (docs/operations.md).
        "SIGNIN_LIMIT_PER_ADDRESS": "20 per 15 minutes",
        "SIGNIN_LIMIT_PER_ACCOUNT": "10 per 15 minutes",
        # Peers whose X-Forwarded-For/-Proto are believed (diary/web/proxies.py): nobody
        # by default, so a client cannot choose the address it is throttled by.
        "TRUSTED_PROXY_CIDRS": (),
        "SIGNIN_LIMIT_PER_DEVICE": "10 per 15 minutes",
        # Sign-up attempts (with ALLOW_SIGNUP) per client address, and by everyone together.
        "SIGNUP_LIMIT_PER_ADDRESS": "10 per hour",
        "SIGNUP_LIMIT_GLOBAL": "100 per hour",
    }


def _integer(env: Mapping[str, str], name: str, *, minimum: int = 1) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _number(env: Mapping[str, str], name: str, *, zero_allowed: bool = False) -> float | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
        least = "0 or more" if zero_allowed else "greater than 0"
        raise ConfigError(f"{name} must be a number {least}, got {raw}")
    return value


def _boolean(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _timezone(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if raw not in available_timezones():
        raise ConfigError(f"{name} must be an IANA time zone such as Asia/Tokyo, got {raw!r}")
    return raw


RATELIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster", "valkey")


def _storage_uri(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if raw == "database://":
        return raw
    scheme = raw.partition("://")[0]
    if scheme not in RATELIMIT_SCHEMES or "://" not in raw:
        # Never echo the value: a Redis URL may carry a password.
        raise ConfigError(
            f"{name} must be database:// (the app's own database), memory:// or a redis:// URL"
        )
    return raw


def _sslmode(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if raw not in SSL_MODES:
        raise ConfigError(f"{name} must be one of {', '.join(SSL_MODES)}, got {raw!r}")
    return raw


def database_url_from_env(env: Mapping[str, str]) -> str | None:
    """Build the SQLAlchemy URL from DATABASE_URL, DB_* or DB_SECRET.

    DB_SECRET is the JSON of an RDS-managed Secrets Manager secret as App Runner
    and ECS inject it; it fills in whatever the DB_* variables leave out.
    """
    if url := env.get("DATABASE_URL"):
        return normalise_database_url(url)

    secret: dict[str, Any] = {}
    if raw_secret := env.get("DB_SECRET"):
        try:
            secret = json.loads(raw_secret)
        except json.JSONDecodeError:
            # Never echo the value: it holds the password.
            raise ConfigError("DB_SECRET is not valid JSON") from None
        if not isinstance(secret, dict):
            raise ConfigError("DB_SECRET must be a JSON object")

    host = env.get("DB_ENDPOINT") or secret.get("host")
    user = env.get("DB_USER") or secret.get("username")
    password = env.get("DB_PASSWORD") or secret.get("password")
    name = env.get("DB_NAME") or secret.get("dbname") or "postgres"
    port = env.get("DB_PORT") or secret.get("port") or 5432
    if not (host or user or password or secret):
        return None
    missing = [
        var
        for var, value in (("DB_ENDPOINT", host), ("DB_USER", user), ("DB_PASSWORD", password))
        if not value
    ]
    if missing:
        raise ConfigError(
            f"database settings incomplete: set {', '.join(missing)} (or provide them in DB_SECRET)"
        )
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ConfigError(f"DB_PORT must be a whole number, got {port!r}") from None
    # Secrets Manager passwords routinely contain @ : / % which would break the URL.
    return (
        f"postgresql+psycopg://{quote(str(user), safe='')}:{quote(str(password), safe='')}"
        f"@{host}:{port}/{quote(str(name), safe='')}"
    )


def normalise_database_url(url: str) -> str:
    """Accept the usual spellings (postgres://, postgresql://) and pick psycopg 3."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError("DATABASE_URL is not a valid database URL") from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise ConfigError(
            f"DATABASE_URL must be PostgreSQL or SQLite, got {parsed.get_backend_name()!r}"
        )
    return parsed.render_as_string(hide_password=False)


def from_env(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The settings the environment provides; absent variables are left out."""
    config: dict[str, Any] = {}
    if url := database_url_from_env(env):
        config["SQLALCHEMY_DATABASE_URI"] = url
        if not env.get("DATABASE_URL"):
            # Built from DB_ENDPOINT/DB_SECRET: an RDS endpoint, so verify who answers.
            config["DB_SSLMODE"] = RDS_SSLMODE
    if sslmode := _sslmode(env, "DB_SSLMODE"):
        config["DB_SSLMODE"] = sslmode
    if env.get("DB_SSLROOTCERT"):
        config["DB_SSLROOTCERT"] = env["DB_SSLROOTCERT"]
    for name in (
        "BUCKET",
        "S3_ENDPOINT_URL",
        "SECRET_KEY",
        "AWS_REGION",
        "LOCAL_STORAGE_DIR",
        "DB_SECRET_ARN",
    ):
        if env.get(name):
            config[name] = env[name]
    for name in (
        "MAX_UPLOAD_MB",
        "MAX_ENTRY_CHARS",
        "IMAGE_URL_EXPIRES",
        "S3_MAX_ATTEMPTS",
        "TRASH_DAYS",
    ):
        if (value := _integer(env, name)) is not None:
            config[name] = value
    # gunicorn runs GUNICORN_THREADS requests at once per worker; each needs one connection.
    if (threads := _integer(env, "GUNICORN_THREADS")) is not None:
        config["DB_POOL_SIZE"] = threads
    if (pool_size := _integer(env, "DB_POOL_SIZE")) is not None:
        config["DB_POOL_SIZE"] = pool_size
    for name in (
        "S3_CONNECT_TIMEOUT",
        "S3_READ_TIMEOUT",
        "S3_FAILURE_COOLDOWN",
        "REQUEST_HEADER_TIMEOUT",
        "REQUEST_BODY_TIMEOUT",
    ):
        if (value := _number(env, name)) is not None:
            config[name] = value
    # Only for serving plain HTTP without debug on a trusted machine.
    if (secure := _boolean(env, "SESSION_COOKIE_SECURE")) is not None:
        config["SESSION_COOKIE_SECURE_FROM_ENV"] = secure
    if (allow_signup := _boolean(env, "ALLOW_SIGNUP")) is not None:
        config["ALLOW_SIGNUP"] = allow_signup
    if default_timezone := _timezone(env, "DEFAULT_TIMEZONE"):
        config["DEFAULT_TIMEZONE"] = default_timezone
    if storage_uri := _storage_uri(env, "RATELIMIT_STORAGE_URI"):
        config["RATELIMIT_STORAGE_URI"] = storage_uri
    if (proxies := env.get("TRUSTED_PROXY_CIDRS")) is not None:
        config["TRUSTED_PROXY_CIDRS"] = parse_networks(proxies, "TRUSTED_PROXY_CIDRS")
    return config


def finalise(config: dict[str, Any], *, debug: bool) -> None:
    """Derive dependent settings and refuse to start on what cannot work."""
    if not config.get("SECRET_KEY"):
        if debug or config.get("TESTING"):
            config["SECRET_KEY"] = "dev-only-not-secret"  # noqa: S105 (debug/testing only)
        else:
            raise ConfigError(
                "SECRET_KEY is not set: set it to a long random string "
                "(python -c 'import secrets; print(secrets.token_hex(32))')"
            )
    config["MAX_CONTENT_LENGTH"] = int(config["MAX_UPLOAD_MB"]) * 1024 * 1024
    config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(config["SQLALCHEMY_DATABASE_URI"])
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]
    # SQLAlchemy writes a failed statement's parameters into the exception's
    # text, which the 500 handler logs: a sign-up that failed wrote the new
    # password's hash (and any entry's text) into the log.
    options.setdefault("hide_parameters", True)
    if url.get_backend_name() == "postgresql":
        connect_args = options.setdefault("connect_args", {})
        # A dead or unreachable database must fail a request quickly, not hang it.
        connect_args.setdefault("connect_timeout", 5)
        connect_args.update(tls_connect_args(config, url))
        # A pooled connection cut while idle (a restart, a failover, an idle
        # timeout on the way to RDS) is found by a ping at checkout and replaced,
        # instead of failing the request that drew it.
        options.setdefault("pool_pre_ping", True)
        # One connection per request thread and no overflow: the connections an
        # instance can open are known (deploy/README.md sizes the database by it).
        # A request that finds none free waits pool_timeout, then gets a 503.
        options.setdefault("pool_size", config["DB_POOL_SIZE"])
        options.setdefault("max_overflow", 0)
        options.setdefault("pool_timeout", 10)
    if config.get("RATELIMIT_STORAGE_URI"):
        _storage_uri(config, "RATELIMIT_STORAGE_URI")
    else:
        # Every instance must see the same counts; on PostgreSQL the database is shared.
        postgres = url.get_backend_name() == "postgresql"
        config["RATELIMIT_STORAGE_URI"] = "database://" if postgres else "memory://"
    # Flask's own defaults already hold SESSION_COOKIE_SECURE=False, so setdefault
    # would never apply: decide here unless the environment chose explicitly.
    if config.get("SESSION_COOKIE_SECURE_FROM_ENV") is None:
        config["SESSION_COOKIE_SECURE"] = not (debug or config.get("TESTING"))
    else:
        config["SESSION_COOKIE_SECURE"] = config["SESSION_COOKIE_SECURE_FROM_ENV"]
    # The test config may give the list as text or strings, like the environment does.
    config["TRUSTED_PROXY_CIDRS"] = parse_networks(config["TRUSTED_PROXY_CIDRS"])
    if config["DEFAULT_TIMEZONE"] not in available_timezones():
        raise ConfigError(
            f"DEFAULT_TIMEZONE must be an IANA time zone such as Asia/Tokyo, "
            f"got {config['DEFAULT_TIMEZONE']!r}"
        )


def tls_connect_args(config: Mapping[str, Any], url: URL) -> dict[str, str]:
    """libpq's sslmode and sslrootcert from DB_SSLMODE and DB_SSLROOTCERT.

    DB_SSLMODE (set, or verify-full by default for DB_ENDPOINT/DB_SECRET) wins over
    an sslmode in DATABASE_URL; without it the URL decides. DB_SSLROOTCERT is used
    whenever the server's certificate is verified, unless the URL names its own.
    A verification that cannot succeed stops the app here rather than on every
    connection: libpq would otherwise look for ~/.postgresql/root.crt.
    """
    sslmode = config.get("DB_SSLMODE")
    if sslmode is not None and sslmode not in SSL_MODES:
        raise ConfigError(f"DB_SSLMODE must be one of {', '.join(SSL_MODES)}, got {sslmode!r}")
    args: dict[str, str] = {"sslmode": sslmode} if sslmode else {}
    effective = sslmode or _query_value(url, "sslmode")
    if not (effective or "").startswith("verify-"):
        return args
    if _query_value(url, "sslrootcert"):
        rootcert, named = _query_value(url, "sslrootcert"), "sslrootcert in DATABASE_URL"
    else:
        rootcert, named = config.get("DB_SSLROOTCERT"), "DB_SSLROOTCERT"
        if not rootcert:
            raise ConfigError(
                f"DB_SSLROOTCERT is not set, but sslmode {effective} verifies the database's "
                "certificate (verify-full is the default with DB_ENDPOINT/DB_SECRET): set it to "
                "the CA bundle that signed it (the image ships Amazon RDS's at "
                "/app/certs/rds-global-bundle.pem)"
            )
        args["sslrootcert"] = rootcert
    # "system": libpq (16 and later) uses the operating system's trusted CAs.
    if rootcert != "system" and not _holds_a_certificate(Path(rootcert)):
        raise ConfigError(
            f"{named} must be a readable PEM file of CA certificates for sslmode {effective}, "
            f"got {rootcert!r}"
        )
    return args


def _query_value(url: URL, name: str) -> str | None:
    value = url.query.get(name)
    if isinstance(value, tuple):
        value = value[-1] if value else None
    return value or None


def _holds_a_certificate(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return b"-----BEGIN CERTIFICATE-----" in file.read(1024 * 1024)
    except OSError:
        return False


def describe_database(uri: str) -> str:
    """Driver, host and database name for the start-up log; never the password."""
    url = make_url(uri)
    if url.get_backend_name() == "sqlite":
        return f"{url.drivername} file={url.database}"
    return f"{url.drivername} host={url.host}:{url.port or 5432} name={url.database}"
