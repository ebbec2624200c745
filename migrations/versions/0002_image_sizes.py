"""image sizes: display size and thumbnail beside each original

Each photo gains a display size and a thumbnail stored beside the original.
Photos stored before this have none until `flask --app diary storage backfill`.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SIZES = ("display", "thumb")


def upgrade():
    with op.batch_alter_table("images", schema=None) as batch_op:
        for size in SIZES:
            batch_op.add_column(sa.Column(f"{size}_key", sa.String(length=512), nullable=True))
            batch_op.add_column(sa.Column(f"{size}_width", sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column(f"{size}_height", sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column(f"{size}_bytes", sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table("images", schema=None) as batch_op:
        for size in reversed(SIZES):
            for column in ("bytes", "height", "width", "key"):
                batch_op.drop_column(f"{size}_{column}")
