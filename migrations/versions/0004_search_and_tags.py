"""search and tags (issue 6: diary features)

Reserved in the revision chain so parallel work never makes two heads;
the issue's owner fills in upgrade() and downgrade().

Revision ID: 0004
Revises: 0003
"""

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
