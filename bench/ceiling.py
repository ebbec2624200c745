"""A yardstick, not diary: the least a Flask app spends on the original contract here.

`make bench` runs it under the same gunicorn.conf.py as diary, on the same database,
and measures it beside diary and the Go service. It is the original `GET /` and
text-only `POST /` reduced to what a Flask app cannot avoid: one route each, no
extensions, hooks, sessions or logs, and psycopg without SQLAlchemy on one
autocommit connection per thread. It runs the statements diary runs (token lookup,
the rows with each entry's first photo; the entry and its search terms in one
transaction) and answers with the same JSON.

It leaves out what diary must not: connection checks (pool_pre_ping), translated
errors, request limits and deadlines, the request log, validation, the last-used
time of tokens, photos. Its figures are therefore a ceiling for any Flask service
on this machine, never something to ship; the bench prints them so a target can be
read against what the framework alone allows.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import threading
from datetime import UTC, datetime
from typing import Any

import psycopg
from flask import Flask, Response, request

app = Flask(__name__)
_connections = threading.local()

FIND_OWNER = "SELECT t.user_id FROM api_tokens t WHERE t.token_hash = %s AND t.revoked_at IS NULL"
LIVE_ROWS = (
    "SELECT e.id, e.created_at, e.updated_at, e.text,"
    " (SELECT i.storage_key FROM images i WHERE i.entry_id = e.id ORDER BY i.position LIMIT 1)"
    " FROM entries e WHERE e.user_id = %s AND e.deleted_at IS NULL"
    " ORDER BY e.created_at, e.id LIMIT 500"
)
INSERT_ENTRY = (
    "INSERT INTO entries (user_id, text, created_at, updated_at) VALUES (%s, %s, %s, %s)"
    " RETURNING id"
)
INSERT_TERMS = "INSERT INTO entry_terms (user_id, term, entry_id) SELECT %s, unnest(%s::text[]), %s"


def connection() -> psycopg.Connection:
    db = getattr(_connections, "db", None)
    if db is None:
        url = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
        db = _connections.db = psycopg.connect(url, autocommit=True)
    return db


def owner() -> int | None:
    token = request.headers.get("Authorization", "").partition(" ")[2]
    row = connection().execute(FIND_OWNER, (hashlib.sha256(token.encode()).hexdigest(),))
    found = row.fetchone()
    return found[0] if found else None


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def item(entry_id: int, created: datetime, updated: datetime, text: str, img: Any) -> dict:
    return {
        "ID": entry_id,
        "CreatedAt": rfc3339(created),
        "UpdatedAt": rfc3339(updated),
        "DeletedAt": None,
        "Text": text,
        "Img": img or "",
    }


@app.get("/")
def list_all() -> Response:
    user_id = owner()
    if user_id is None:
        return Response(status=401)
    rows = connection().execute(LIVE_ROWS, (user_id,)).fetchall()
    return Response(json.dumps([item(*row) for row in rows]), mimetype="application/json")


@app.post("/")
def create() -> Response:
    user_id = owner()
    if user_id is None:
        return Response(status=401)
    text = request.form.get("text", "")
    folded = " ".join(text.lower().split())
    terms = set(folded) | set(map(operator.add, folded, folded[1:]))
    now = datetime.now(UTC)
    db = connection()
    with db.transaction():
        (entry_id,) = db.execute(INSERT_ENTRY, (user_id, text, now, now)).fetchone()
        db.execute(INSERT_TERMS, (user_id, sorted(t for t in terms if not t.isspace()), entry_id))
    return Response(json.dumps(item(entry_id, now, now, text, None)), mimetype="application/json")
