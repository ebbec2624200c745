"""account preferences: time zone, language, session epoch

Reserved in the revision chain so parallel work never makes two heads;
adds the user's time zone, language and session epoch.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("time_zone", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("language", sa.String(length=8), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")
        batch_op.drop_column("language")
        batch_op.drop_column("time_zone")
