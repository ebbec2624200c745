"""change notices: NOTIFY diary_changes with the user's id when their timeline or tokens change

Each gunicorn worker listens (diary/change_feed.py) and keeps trusting a token
it checked a moment ago, and the timeline_version read with it, until a
notice for the token's owner arrives. PostgreSQL delivers notices when the
transaction commits, and several identical ones of one transaction once.

- users.timeline_version is raised by the triggers of migration 0005 on every
  change to entries and photos, so one trigger on it covers all of those;
- api_tokens: a revocation, a deleted token (also when its account is deleted,
  through ON DELETE CASCADE), or a token moved to another hash or owner.
  last_used_at, written once a minute per token, sends none.

SQLite has no LISTEN/NOTIFY; there every request reads the token and version.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHANNEL = "diary_changes"

# (trigger and function name, table, event, the changed row's owner)
_TRIGGERS = [
    ("users_timeline_version_sends_notice", "users", "UPDATE OF timeline_version", "NEW.id"),
    (
        "api_tokens_update_sends_notice",
        "api_tokens",
        "UPDATE OF revoked_at, token_hash, user_id",
        "OLD.user_id",
    ),
    ("api_tokens_delete_sends_notice", "api_tokens", "DELETE", "OLD.user_id"),
]


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, event, owner in _TRIGGERS:
        # A token moved to another user concerns both; NEW is NULL on DELETE.
        also_new = (
            f" PERFORM pg_notify('{CHANNEL}', NEW.user_id::text);"
            if table == "api_tokens" and event.startswith("UPDATE")
            else ""
        )
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN"
            f" PERFORM pg_notify('{CHANNEL}', {owner}::text);{also_new}"
            " RETURN NULL;"
            " END $$"
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION {name}()"
        )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
        op.execute(f"DROP FUNCTION {name}()")
