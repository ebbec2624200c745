"""`flask --app diary db-create-app-role ROLE`: a least-privilege login for the running app.

On RDS the app would otherwise log in as the master user, who owns the tables
and may drop them. Run as the owner of the diary's tables (the user that runs
the migrations, with the same database settings), this creates ROLE, or gives
an existing one a new password, and grants it exactly what the app needs at run
time: CONNECT on the database, USAGE on the schema, SELECT/INSERT/UPDATE/DELETE
on the tables (only SELECT on alembic_version) and USAGE/SELECT on the sequences.
Default privileges give the same grants on whatever later migrations create, so
a new release needs no second run. The role gets no CREATE on the schema, is no
superuser, owns nothing and belongs to no other role; anything else it had on the
tables is revoked, so running the command again always ends in the same state.

The password is hashed here (SCRAM, as psql's \\password does) before it is sent,
so it appears in no statement the server could log, and it is never printed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import psycopg
import sqlalchemy as sa
from psycopg import sql

from .logs import add_secret

log = logging.getLogger(__name__)

# Unquoted PostgreSQL identifiers fold to lower case: a lower-case simple name is
# the one spelling that means the same in SQL, in libpq and in a Secrets Manager secret.
ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RESERVED_ROLE_NAMES = frozenset(
    {"public", "none", "all", "user", "current_user", "current_role", "session_user"}
)
MIN_PASSWORD_LENGTH = 12
TABLE_PRIVILEGES = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
SEQUENCE_PRIVILEGES = sql.SQL("USAGE, SELECT")
# Any fixed number ("roles" in ASCII): two runs at once queue instead of racing.
ROLE_LOCK_ID = 0x726F6C6573


class RoleError(Exception):
    """The role cannot be made safely; the message says why and what to do."""


@dataclass
class AppRole:
    """What the command did."""

    name: str
    created: bool
    database: str
    schema: str
    owner: str
    tables: int
    sequences: int
    revoked_public_create: bool


def check_role_name(name: str) -> None:
    """Refuse anything but a simple lower-case identifier that PostgreSQL allows as a role."""
    if not ROLE_NAME.fullmatch(name):
        raise RoleError(
            f"role name {name!r} is not a simple identifier: use lower-case letters, digits "
            "and _ (not first a digit), at most 63 characters"
        )
    if name.startswith("pg_") or name in RESERVED_ROLE_NAMES:
        raise RoleError(f"role name {name!r} is reserved by PostgreSQL")


def create_app_role(engine: sa.Engine, name: str, password: str) -> AppRole:
    """Create or update the app's role and its grants, all in one transaction."""
    add_secret(password)
    check_role_name(name)
    if engine.dialect.name != "postgresql":
        raise RoleError(
            f"database roles need PostgreSQL; this app uses {engine.dialect.name}, where "
            "the app's file has no users to separate"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise RoleError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    pooled = engine.raw_connection()
    try:
        connection = pooled.driver_connection
        assert isinstance(connection, psycopg.Connection)
        try:
            role = _apply(connection, name, password)
            connection.commit()
        except psycopg.Error as error:
            connection.rollback()
            # The server's own words only: never a statement, which holds the password hash.
            message = error.diag.message_primary or type(error).__name__
            raise RoleError(f"PostgreSQL refused: {message}") from None
        except RoleError:
            connection.rollback()
            raise
    finally:
        pooled.close()
    log.info(
        "database role %s %s with the app's grants",
        role.name,
        "created" if role.created else "updated",
    )
    return role


def _apply(connection: psycopg.Connection, name: str, password: str) -> AppRole:
    cursor = connection.cursor()
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (ROLE_LOCK_ID,))
    # The migrations' own table says which schema is the diary's and who owns it.
    found = cursor.execute(
        """
        SELECT n.nspname, pg_get_userbyid(c.relowner), current_database(), current_user,
               pg_has_role(current_user, c.relowner, 'USAGE')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = to_regclass('alembic_version')
        """
    ).fetchone()
    if found is None:
        database = cursor.execute("SELECT current_database()").fetchone()
        raise RoleError(
            f"database {database[0] if database else '?'} has no diary tables: run "
            "`flask --app diary db upgrade` first, with these same settings"
        )
    schema, owner, database, current_user, acts_as_owner = found
    if not acts_as_owner:
        raise RoleError(
            f"the diary's tables belong to {owner}, and {current_user} cannot act for it: "
            f"run this with {owner}'s credentials (the user that runs the migrations)"
        )
    if name in (owner, current_user):
        raise RoleError(
            f"{name} owns the diary's tables (or runs this command): the app's role must be "
            "another one, which owns nothing"
        )

    existing = cursor.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    # Hashed by libpq with the server's password_encryption (scram-sha-256): the
    # password itself is never part of a statement.
    verifier = connection.pgconn.encrypt_password(password.encode(), name.encode()).decode()
    add_secret(verifier)
    role = sql.Identifier(name)
    if existing is None:
        # The defaults: NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS.
        cursor.execute(
            sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(role, sql.Literal(verifier))
        )
    else:
        _refuse_a_privileged_role(cursor, name, existing[0])
        cursor.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(role, sql.Literal(verifier))
        )

    tables, sequences = _grant(cursor, role, database, schema, owner)
    revoked_public_create = _no_create_on_schema(cursor, name, schema)
    return AppRole(
        name=name,
        created=existing is None,
        database=database,
        schema=schema,
        owner=owner,
        tables=tables,
        sequences=sequences,
        revoked_public_create=revoked_public_create,
    )


def _refuse_a_privileged_role(cursor: psycopg.Cursor, name: str, oid: int) -> None:
    """An existing role is reused only if it is as plain as a new one would be."""
    row = cursor.execute(
        """
        SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls
        FROM pg_roles WHERE oid = %s::oid
        """,
        (oid,),
    ).fetchone()
    assert row is not None
    attributes = [
        attribute
        for attribute, has in zip(
            ("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"), row, strict=True
        )
        if has
    ]
    if attributes:
        raise RoleError(
            f"role {name} exists with {', '.join(attributes)}: the app's role must have none; "
            "pick another name"
        )
    owned = cursor.execute(
        """
        SELECT count(*) FROM pg_shdepend
        WHERE refclassid = 'pg_authid'::regclass AND refobjid = %s::oid AND deptype = 'o'
        """,
        (oid,),
    ).fetchone()
    if owned and owned[0]:
        raise RoleError(
            f"role {name} owns {owned[0]} database object(s): the app's role must own "
            "nothing; pick another name"
        )
    groups = cursor.execute(
        """
        SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname) FROM pg_roles g
        WHERE g.oid <> %s::oid AND pg_has_role(%s::oid, g.oid, 'MEMBER')
        """,
        (oid, oid),
    ).fetchone()
    if groups and groups[0]:
        raise RoleError(
            f"role {name} is a member of {groups[0]} and would have their privileges too: "
            "revoke those memberships or pick another name"
        )


def _grant(
    cursor: psycopg.Cursor, role: sql.Identifier, database: str, schema: str, owner: str
) -> tuple[int, int]:
    """Exactly the app's privileges on the owner's tables and sequences, now and later."""
    schema_name, owner_name = sql.Identifier(schema), sql.Identifier(owner)
    cursor.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role)
    )
    cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_name, role))
    cursor.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(schema_name, role))
    relations = cursor.execute(
        """
        SELECT c.relname, c.relkind = 'S'
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND pg_get_userbyid(c.relowner) = %s
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        ORDER BY c.relname
        """,
        (schema, owner),
    ).fetchall()
    tables = sequences = 0
    for relation, is_sequence in relations:
        qualified = sql.Identifier(schema, relation)
        kind = sql.SQL("SEQUENCE" if is_sequence else "TABLE")
        # From nothing, so a TRUNCATE or REFERENCES someone once granted goes away.
        cursor.execute(sql.SQL("REVOKE ALL ON {} {} FROM {}").format(kind, qualified, role))
        if is_sequence:
            privileges = SEQUENCE_PRIVILEGES
            sequences += 1
        elif relation == "alembic_version":
            # The doctor reads the schema's revision; only migrations change it.
            privileges = sql.SQL("SELECT")
            tables += 1
        else:
            privileges = TABLE_PRIVILEGES
            tables += 1
        cursor.execute(sql.SQL("GRANT {} ON {} {} TO {}").format(privileges, kind, qualified, role))
    for privileges, kind in ((TABLE_PRIVILEGES, "TABLES"), (SEQUENCE_PRIVILEGES, "SEQUENCES")):
        cursor.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON {} TO {}"
            ).format(owner_name, schema_name, privileges, sql.SQL(kind), role)
        )
    return tables, sequences


def _no_create_on_schema(cursor: psycopg.Cursor, name: str, schema: str) -> bool:
    """Make sure the role cannot create tables; True if PUBLIC lost CREATE for it.

    PostgreSQL 14 and older let PUBLIC create in schema public, so every role could.
    """
    if not _may_create(cursor, name, schema):
        return False
    cursor.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(schema)))
    if _may_create(cursor, name, schema):
        raise RoleError(
            f"every role may create tables in schema {schema} and {name} could too; its owner "
            f"must run REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC"
        )
    return True


def _may_create(cursor: psycopg.Cursor, name: str, schema: str) -> bool:
    row = cursor.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", (name, schema)).fetchone()
    return bool(row and row[0])
