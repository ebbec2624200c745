"""search and tags: entry terms, entry tags, import keys

Adds entry_terms (character bigrams for search), entry_tags (#tags) and
entry_imports (idempotent imports), and fills the first two for the entries
that already exist. `flask --app diary reindex` rebuilds them at any time.

Revision ID: 0004
Revises: 0003
"""

import re
import unicodedata

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "entry_terms",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=8), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["entries.id"],
            name=op.f("fk_entry_terms_entry_id_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_entry_terms_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "term", "entry_id", name=op.f("pk_entry_terms")),
    )
    with op.batch_alter_table("entry_terms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_entry_terms_entry_id"), ["entry_id"], unique=False)

    op.create_table(
        "entry_tags",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["entries.id"],
            name=op.f("fk_entry_tags_entry_id_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_entry_tags_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "tag", "entry_id", name=op.f("pk_entry_tags")),
    )
    with op.batch_alter_table("entry_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_entry_tags_entry_id"), ["entry_id"], unique=False)

    op.create_table(
        "entry_imports",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("import_key", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["entries.id"],
            name=op.f("fk_entry_imports_entry_id_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_entry_imports_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "import_key", name=op.f("pk_entry_imports")),
    )
    with op.batch_alter_table("entry_imports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_entry_imports_entry_id"), ["entry_id"], unique=False)

    _backfill()


# Frozen copies of diary.search.text_terms and diary.tags.extract_tags as they
# were when this revision was written: a migration must not change with the app.
_SPACES = re.compile(r"\s+")
_TAG = re.compile(r"(?<![\w#&/])#(\w[\w\-]*)")


def _terms(text):
    folded = _SPACES.sub(" ", text.lower()).strip()
    terms = {char for char in folded if not char.isspace()}
    terms.update(
        pair for pair in (folded[i : i + 2] for i in range(len(folded) - 1)) if pair.strip()
    )
    return terms


def _tags(text):
    seen = {}
    for match in _TAG.finditer(unicodedata.normalize("NFKC", text or "")):
        tag = unicodedata.normalize("NFKC", match.group(1)).lower().strip("-_")
        if tag and not tag.isdigit() and len(tag) <= 100:
            seen.setdefault(tag, None)
    return list(seen)


def _backfill():
    if context.is_offline_mode():
        # `flask db upgrade --sql` writes SQL without a database: there are no rows
        # to read here, and the terms are computed in Python, not in SQL.
        op.execute(
            "-- entries written before revision 0004 are not searchable until"
            " `flask --app diary reindex` runs"
        )
        return
    connection = op.get_bind()
    entries = sa.table(
        "entries", sa.column("id"), sa.column("user_id"), sa.column("text", sa.Text)
    )
    terms = sa.table("entry_terms", sa.column("user_id"), sa.column("term"), sa.column("entry_id"))
    tags = sa.table("entry_tags", sa.column("user_id"), sa.column("tag"), sa.column("entry_id"))
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(entries.c.id, entries.c.user_id, entries.c.text)
            .where(entries.c.id > last_id)
            .order_by(entries.c.id)
            .limit(500)
        ).all()
        if not rows:
            return
        for entry_id, user_id, text in rows:
            term_rows = [
                {"user_id": user_id, "term": term, "entry_id": entry_id}
                for term in sorted(_terms(text or ""))
            ]
            if term_rows:
                connection.execute(terms.insert(), term_rows)
            tag_rows = [
                {"user_id": user_id, "tag": tag, "entry_id": entry_id} for tag in _tags(text)
            ]
            if tag_rows:
                connection.execute(tags.insert(), tag_rows)
        last_id = rows[-1][0]


def downgrade():
    with op.batch_alter_table("entry_imports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entry_imports_entry_id"))
    op.drop_table("entry_imports")
    with op.batch_alter_table("entry_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entry_tags_entry_id"))
    op.drop_table("entry_tags")
    with op.batch_alter_table("entry_terms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entry_terms_entry_id"))
    op.drop_table("entry_terms")
