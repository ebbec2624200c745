"""Full-text search that works for Japanese (no spaces) and English, on any database.

Each entry's text is cut into overlapping character pairs ("bigrams") and
single characters, stored in `entry_terms` keyed by (user_id, term, entry_id).
A query is cut the same way; the entries holding every one of its terms are
the candidates, read from that B-tree for this user only, and a substring
match on the text confirms them (a bigram index cannot tell "abc" from
"ab ... bc"). This needs no extension: pg_trgm cannot index queries shorter
than three characters, and two-character words (朝食, 日記) are everyday
Japanese. SQLite uses the same table.
"""

from __future__ import annotations

import operator
import re
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from . import tags
from .errors import InvalidInput
from .extensions import db
from .models import Entry, EntryTag, EntryTerm, User

MAX_QUERY_CHARS = 100
# Enough pairs to make a candidate set small; the substring check does the rest.
MAX_QUERY_TERMS = 12

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The form both texts and queries are indexed in: lower case, single spaces.

    Deliberately no further folding (such as NFKC): the substring check that
    confirms a candidate compares lower-cased text, and both must agree.
    """
    return _SPACES.sub(" ", text.lower()).strip()


def text_terms(text: str) -> set[str]:
    """Every single character and every adjacent pair of `text` (spaces alone are skipped)."""
    folded = normalise(text)
    # Built with set and map rather than a loop per character: a long entry has
    # thousands of characters, and this runs on every save.
    terms = set(folded)
    terms.update(map(operator.add, folded, folded[1:]))
    return {term for term in terms if not term.isspace()}


def query_terms(query: str) -> list[str]:
    """The terms a query needs: its pairs, or the character itself for a one-character query."""
    folded = normalise(query)
    if len(folded) == 1:
        return [folded]
    pairs = dict.fromkeys(
        pair for pair in (folded[i : i + 2] for i in range(len(folded) - 1)) if pair.strip()
    )
    return list(pairs)[:MAX_QUERY_TERMS]


def parse_query(raw: str | None) -> str | None:
    """A `q=` parameter: None when absent or blank, else the trimmed query."""
    if raw is None or not raw.strip():
        return None
    query = raw.strip()
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput("q", "The search is longer than %(n)s characters.", n=MAX_QUERY_CHARS)
    if "\x00" in query or "\ufffd" in query:
        raise InvalidInput("q", "The search contains characters that cannot be searched for.")
    return query


def _insert_unnested(table: sa.Table, column: str, entry_id: sa.ColumnElement[int]) -> sa.Insert:
    """One row per element of the array `:terms` (or `:tags`) for `:user_id`'s entry."""
    return sa.insert(table).from_select(
        ["user_id", column, "entry_id"],
        sa.select(
            sa.bindparam("user_id", type_=sa.Integer),
            sa.func.unnest(sa.bindparam(f"{column}s", type_=postgresql.ARRAY(sa.String))),
            entry_id,
        ),
    )


_TERMS = EntryTerm.__table__
_TAGS = EntryTag.__table__
_ENTRIES = Entry.__table__
# PostgreSQL: each kind of index row in one statement with one array, not one
# per row: an entry has tens to thousands of terms, and each row of an
# executemany is its own round of the driver's Python.
_INSERT_TERMS_PG = _insert_unnested(_TERMS, "term", sa.bindparam("entry_id", type_=sa.Integer))
_INSERT_TAGS_PG = _insert_unnested(_TAGS, "tag", sa.bindparam("entry_id", type_=sa.Integer))
_INSERT_ENTRY = sa.insert(_ENTRIES).returning(_ENTRIES.c.id)


def _insert_indexed_entry_pg() -> sa.Select[tuple[int]]:
    """A new entry's row, its terms and its tags in one statement; selects the new id.

    The index rows take the id from the row inserted beside them (data-modifying
    WITH queries run in the same snapshot and all commit or none), so a text
    entry is stored in one round trip instead of three.
    """
    new_entry = (
        sa.insert(_ENTRIES)
        .values(
            user_id=sa.bindparam("user_id", type_=sa.Integer),
            text=sa.bindparam("text", type_=sa.Text),
            created_at=sa.bindparam("now", type_=_ENTRIES.c.created_at.type),
            updated_at=sa.bindparam("now", type_=_ENTRIES.c.updated_at.type),
        )
        .returning(_ENTRIES.c.id)
        .cte("new_entry")
    )
    terms = _insert_unnested(_TERMS, "term", new_entry.c.id).cte("new_terms")
    tags = _insert_unnested(_TAGS, "tag", new_entry.c.id).cte("new_tags")
    return sa.select(new_entry.c.id).add_cte(terms, tags)


_INSERT_INDEXED_ENTRY_PG = _insert_indexed_entry_pg()


def insert_entry(user_id: int, text: str, now: datetime) -> int:
    """Insert a new entry with its search terms and tags, not yet committed; its id."""
    connection = db.session.connection()
    terms = sorted(text_terms(text))
    entry_tags = tags.extract_tags(text)
    if connection.dialect.name == "postgresql":
        return connection.execute(
            _INSERT_INDEXED_ENTRY_PG,
            {"user_id": user_id, "text": text, "now": now, "terms": terms, "tags": entry_tags},
        ).scalar_one()
    entry_id = connection.execute(
        _INSERT_ENTRY, {"user_id": user_id, "text": text, "created_at": now, "updated_at": now}
    ).scalar_one()
    _insert_index(connection, user_id, entry_id, terms, entry_tags)
    return entry_id


def index_entry(entry: Entry) -> None:
    """Bring the entry's search terms and tags in step with its text.

    Call before committing any change to an entry's text; the rows go in the
    same transaction, so the index is never out of step with a committed text.
    """
    if entry.id is None:
        db.session.flush()  # a new entry: it has an id now, and no rows to replace yet
    else:
        db.session.execute(sa.delete(EntryTerm).where(EntryTerm.entry_id == entry.id))
        db.session.execute(sa.delete(EntryTag).where(EntryTag.entry_id == entry.id))
    # Core inserts on the session's connection: plain rows, no ORM bookkeeping.
    _insert_index(
        db.session.connection(),
        entry.user_id,
        entry.id,
        sorted(text_terms(entry.text)),
        tags.extract_tags(entry.text),
    )


def _insert_index(
    connection: sa.Connection, user_id: int, entry_id: int, terms: list[str], entry_tags: list[str]
) -> None:
    """The terms and tag rows of an entry that has none (yet, or any more)."""
    if connection.dialect.name == "postgresql":
        for statement, name, values in (
            (_INSERT_TERMS_PG, "terms", terms),
            (_INSERT_TAGS_PG, "tags", entry_tags),
        ):
            if values:
                connection.execute(
                    statement, {"user_id": user_id, "entry_id": entry_id, name: values}
                )
        return
    for table, column, values in ((_TERMS, "term", terms), (_TAGS, "tag", entry_tags)):
        if values:
            connection.execute(
                sa.insert(table),
                [{"user_id": user_id, column: value, "entry_id": entry_id} for value in values],
            )


def matching(user: User, query: str) -> sa.ColumnElement[bool]:
    """A WHERE clause on Entry: the user's entries whose text contains `query`.

    The candidates come from entry_terms (index only, this user only); the
    case-insensitive substring test then confirms each candidate.
    """
    terms = query_terms(query)
    if not terms:
        return sa.false()
    candidates = (
        sa.select(EntryTerm.entry_id)
        .where(EntryTerm.user_id == user.id, EntryTerm.term.in_(terms))
        .group_by(EntryTerm.entry_id)
        .having(sa.func.count() == len(terms))
    )
    return sa.and_(
        Entry.id.in_(candidates),
        sa.func.lower(Entry.text).contains(query.lower(), autoescape=True),
    )


def reindex_all(batch_size: int = 200) -> int:
    """Rebuild the terms and tags of every entry (after the migration adds the tables)."""
    done = 0
    last_id = 0
    while True:
        batch = list(
            db.session.scalars(
                sa.select(Entry).where(Entry.id > last_id).order_by(Entry.id).limit(batch_size)
            )
        )
        if not batch:
            return done
        for entry in batch:
            index_entry(entry)
        db.session.commit()
        done += len(batch)
        last_id = batch[-1].id
        db.session.expunge_all()


def highlight_spans(text: str, query: str | None) -> list[tuple[str, bool]]:
    """`text` cut into (piece, is_match) pieces for the page to mark up; case-insensitive."""
    if not query:
        return [(text, False)]
    pattern = re.compile(re.escape(query.strip()), re.IGNORECASE)
    pieces: list[tuple[str, bool]] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            pieces.append((text[position : match.start()], False))
        pieces.append((match.group(0), True))
        position = match.end()
    if position < len(text):
        pieces.append((text[position:], False))
    return pieces


def excerpt(text: str, query: str | None, radius: int = 80) -> list[tuple[str, bool]]:
    """A window of `text` around the first match, cut into highlight pieces."""
    if query:
        found = text.lower().find(query.strip().lower())
        if found >= 0 and len(text) > 2 * radius:
            start = max(found - radius, 0)
            end = min(found + len(query) + radius, len(text))
            text = ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
    elif len(text) > 2 * radius:
        text = text[: 2 * radius] + "…"
    return highlight_spans(text, query)
